"""What reaches the terminal: sagvideo's own lines, not third-party chatter (unless --verbose).

Quiet by default:

* warnings: sagvideo's own (a tiny style image, a pickle checkpoint) print as one line,
  `sagvideo: warning: ...`, without Python's source-line format; third-party warnings
  (deprecations, Lightning's "does not have many workers", ...) are dropped;
* Lightning's INFO lines (tips, "GPU available", "TPU available", ...) are dropped: its
  warnings and errors still show;
* the native video decoder's lines (ffmpeg's `[mov,mp4,...] ...`, decord's
  `av_read_frame failed with ...`) are caught around each decoder call (`native_stderr_to_notes`)
  and turned into one `sagvideo: note:` line, or dropped when the frames decoded anyway.

`--verbose` (or `configure_output(verbose=True)`) leaves every source as it is. Libraries calling
sagvideo keep their own settings: only the command line calls `configure_output`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterator

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
DECODER_NOISE = ("av_read_frame failed", "/github/workspace/src/", "[mov,mp4", "[h264 @", "[aac @")
_state = {"verbose": True}  # a library user sees everything, as without sagvideo


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"sagvideo: warning: {str(message).strip().splitlines()[0]}", file=file or sys.stderr)


def configure_output(verbose: bool = False) -> None:
    """Filter third-party warnings and INFO logs, and format ours as one line (see the module docstring)."""
    _state["verbose"] = verbose
    if verbose:
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"sagvideo(\.|$)")
    warnings.showwarning = _one_line_warning
    quiet_lightning()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def quiet_lightning() -> None:
    """Lightning's INFO lines off unless verbose. Call again after `import pytorch_lightning`:
    its import sets its loggers back to INFO."""
    if not _state["verbose"]:
        for name in LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def verbose() -> bool:
    return _state["verbose"]


@contextlib.contextmanager
def native_stderr_to_notes(what: str) -> Iterator[None]:
    """Around a decoder call: lines native code writes to stderr (fd 2) are collected, then the
    decoder's chatter becomes one note naming `what` (other lines pass through unchanged)."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode(errors="replace").splitlines()
            noise = [line for line in lines if any(mark in line for mark in DECODER_NOISE)]
            rest = [line for line in lines if line not in noise and line.strip()]
            for line in rest:
                print(line, file=sys.stderr)
            if noise:
                last = noise[-1].split("] ", 1)[-1].strip()
                print(f"sagvideo: note: the video decoder reported {len(noise)} problem(s) reading {what} "
                      f"(last: {last}); --verbose shows them all.", file=sys.stderr)
