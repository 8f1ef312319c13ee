"""One signal policy for every command: SIGINT and SIGTERM end a run cleanly, at any moment.

The handler raises `Interrupted`, a `BaseException` that is not a `KeyboardInterrupt`, so:

* every `finally` and `except BaseException` on the way out runs: staging folders and temporary
  files are removed, output locks released, a batch writes its summary;
* Lightning re-raises it (its `KeyboardInterrupt` branch would call `sys.exit(1)` instead);
* SIGTERM (what `timeout`, schedulers and `kill` send) takes the same path as Ctrl-C.

While the run unwinds, further SIGINT/SIGTERM are ignored, so a second Ctrl-C cannot cut the
cleanup short (SIGKILL still ends the process; the next run on the output cleans up then).
The command exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), the shell
convention, through `exit_now` so that CPython does not re-raise the signal at shutdown.
"""

from __future__ import annotations

import os
import signal
import sys

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The process received SIGINT or SIGTERM; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_interrupted(signum: int, frame: object) -> None:
    for sig in HANDLED:  # ignore the next ones: the unwinding below must finish its cleanup
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def install() -> None:
    """Route SIGINT and SIGTERM to `Interrupted` (call first thing in a command's entry point).

    A signal the parent set to be ignored stays ignored, as Python itself does for SIGINT: a
    shell script's `cmd &` ignores Ctrl-C on purpose, and `nohup` ignores hang-ups the same way.
    """
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _raise_interrupted)


def interrupt_message(signum: int) -> str:
    """The one line a command prints when a signal ended it."""
    return f"sagvideo: interrupted ({signal.Signals(signum).name}); no partial output was kept."


def exit_code_of(exc: BaseException) -> int:
    """130 for a KeyboardInterrupt, 128 + signal for `Interrupted`."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def exit_now(code: int) -> None:
    """Flush and leave with `code`, skipping interpreter shutdown.

    After an interrupt, CPython may end the process by re-raising SIGINT at shutdown (when a C
    extension saw the KeyboardInterrupt), which would replace the exit code with a signal; and
    half-finished imports (an interrupt during `import torch`) must not run their atexit hooks.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
