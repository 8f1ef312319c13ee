"""What every command shares: the config flags, and how a failure is told and turned into an exit code.

`sagvideo stylize | image | depth | batch | bench` (cli.py) and `python -m sagvideo.batch`
(batch/run.py) both use these, so a flag or a message is written once. Torch is imported only
once a command runs (keeps `--help` fast).
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Any, Callable

from .errors import SagVideoError

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
OUT_OF_MEMORY_FIX = ("To fix: use a smaller-GPU config (--config 12gb or 8gb), fewer frames, a smaller video.size, "
                     "or guidance.n: 2.")


def add_config_flags(parser: argparse.ArgumentParser, applies_to: str = "") -> None:
    """--config NAME|FILE (repeatable) and --set KEY=VALUE ... (`applies_to`: e.g. " to every job")."""
    parser.add_argument("--config", action="append", metavar="NAME|FILE",
                        help="YAML config or a name in configs/ (video, image, tiny, 12gb, 8gb); repeatable")
    parser.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                        help=f"override any config key{applies_to}, e.g. --set guidance.n=8 video.size=768")


def config_from_flags(args: argparse.Namespace, overrides: dict[str, Any] | None = None,
                      default: str | None = None):
    """Defaults <- --config files (or `default`) <- --set pairs <- `overrides` (e.g. explicit flags)."""
    from .config import load_config, parse_set_items

    merged = {**parse_set_items(getattr(args, "set", None)), **(overrides or {})}
    return load_config(args.config or ([default] if default else []), merged)


def run_command(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """`handler(args)` with failures told on stderr: 2 bad input, 1 out of memory or a full disk,
    130 interrupted. Other errors propagate (a bug shows its traceback)."""
    import torch

    try:
        return int(handler(args) or 0)
    except SagVideoError as exc:
        print(f"sagvideo: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except torch.OutOfMemoryError as exc:
        print(f"sagvideo: error: out of GPU memory ({out_of_memory_line(exc)}). {OUT_OF_MEMORY_FIX}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sagvideo: interrupted; no partial output was kept.", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(f"sagvideo: error: cannot write '{exc.filename or 'an output'}': {exc.strerror} (the disk or a quota "
              f"is full, or a file size limit was hit). Nothing partial was kept. To fix: free space, or write to "
              f"another disk (-o).", file=sys.stderr)
        return 1


def out_of_memory_line(exc: BaseException) -> str:
    """The first line of torch's out-of-memory message (the rest is allocator advice)."""
    text = str(exc)
    return text.splitlines()[0] if text else ""
