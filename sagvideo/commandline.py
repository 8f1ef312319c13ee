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
                        help="YAML config or a name in configs/ (video, image, tiny, 12gb, 8gb, lightning, lcm, "
                             "tiny-lightning, tiny-lcm); repeatable")
    parser.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                        help=f"override any config key{applies_to}, e.g. --set guidance.n=8 video.size=768")


# the base model's noise schedule: an image keeps its own (see config_from_flags)
OWN_SCHEDULE_KEYS = ("beta_schedule", "beta_start", "beta_end", "timestep_spacing")


def config_from_flags(args: argparse.Namespace, overrides: dict[str, Any] | None = None,
                      base: str | None = None):
    """Defaults <- `base` (the command's own config, e.g. "image") <- --config files <- --set pairs
    <- `overrides` (e.g. explicit flags).

    The base stays under any --config layering: `image --config 12gb` keeps the image schedule and
    steps, with 12gb's memory settings on top. An image runs the base model alone, so its noise
    schedule (`OWN_SCHEDULE_KEYS`) stays the base's even under a video config that sets the motion
    module's (`image --config lightning`: Lightning's sampler and steps on SD 1.5's betas); --set
    still changes it."""
    from .config import load_config, parse_set_items

    merged = {**parse_set_items(getattr(args, "set", None)), **(overrides or {})}
    files = [base] if base else []
    files += [name for name in getattr(args, "config", None) or [] if name not in files]
    if base == "image" and len(files) > 1:
        own = load_config(base).sampling
        merged = {**{f"sampling.{key}": getattr(own, key) for key in OWN_SCHEDULE_KEYS}, **merged}
    return load_config(files, merged)


def known_failure(exc: BaseException) -> int | None:
    """Print the message for an out-of-memory or disk-full error and return its exit code; None for others.

    torch is never imported here: when it is not loaded yet, the error cannot be torch's (and
    importing it while an interrupt unwinds a half-done `import torch` fails with "duplicate
    registrations")."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        print(f"sagvideo: error: out of GPU memory ({out_of_memory_line(exc)}). {OUT_OF_MEMORY_FIX}", file=sys.stderr)
        return 1
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        print(f"sagvideo: error: cannot write '{exc.filename or 'an output'}': {exc.strerror} (the disk or a quota "
              f"is full, or a file size limit was hit). Nothing partial was kept. To fix: free space, or write to "
              f"another disk (-o).", file=sys.stderr)
        return 1
    return None


def run_command(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """`handler(args)` with failures told on stderr: 2 bad input, 1 out of memory or a full disk,
    130 / 143 interrupted (SIGINT / SIGTERM, see `signals.py`). Other errors propagate (a bug
    shows its traceback)."""
    from .signals import Interrupted, exit_code_of, interrupt_message

    try:
        return int(handler(args) or 0)
    except SagVideoError as exc:
        print(f"sagvideo: error: {exc}", file=sys.stderr, flush=True)
        return getattr(exc, "exit_code", 2)  # 2: bad input; a failed rank of a distributed run says 1
    except (Interrupted, KeyboardInterrupt) as exc:
        print(interrupt_message(exit_code_of(exc) - 128), file=sys.stderr)
        return exit_code_of(exc)
    except Exception as exc:
        code = known_failure(exc)
        if code is None:
            raise
        return code


def out_of_memory_line(exc: BaseException) -> str:
    """The first line of torch's out-of-memory message (the rest is allocator advice)."""
    text = str(exc)
    return text.splitlines()[0] if text else ""


def console_entry(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """A console command: the signal policy (`signals.py`) first, then `main(argv)`, then exit
    with its code. An interrupt anywhere, even while `main` is still importing, ends with one line
    and 130 / 143, leaving at once through `exit_now` (everything is cleaned up by then)."""
    from .signals import Interrupted, exit_code_of, exit_now, install, interrupt_message

    install()
    try:
        code = main(argv)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(interrupt_message(exit_code_of(exc) - 128), file=sys.stderr)
        code = exit_code_of(exc)
    if code >= 128:
        exit_now(code)
    sys.exit(code)
