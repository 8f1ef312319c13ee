"""Where a batch keeps its bookkeeping inside OUTDIR, and how it writes it.

Layout (one job = one id):

    OUTDIR/<id>.mp4, <id>.json, <id>.contact.png   outputs, written by the pipeline
    OUTDIR/summary.json                            the last run's summary (rank 0)
    OUTDIR/.sagvideo/plan.json                     the last run's pending jobs, in dataset order; then its shared ones
    OUTDIR/.sagvideo/status/<id>.json              outcome of the job's latest execution
    OUTDIR/.sagvideo/failed/<id>.json              present while the job's latest execution failed
    OUTDIR/.sagvideo/lock                          held (flock) by rank 0 while a run is going

Every JSON file is written through `atomic_path` (temporary `.<stem>.tmp-*` file, then
`os.replace`), so a killed process never leaves a truncated record; the temporary files such
a kill strands are removed by `clean_stale_temps` at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import atomic_write_json
from ..outputs.names import DEPTH_CACHE_DIR

STATE_DIR = ".sagvideo"


class BatchState:
    """Paths of the bookkeeping files of one output folder, plus atomic JSON I/O."""

    def __init__(self, outdir: str | os.PathLike):
        self.outdir = Path(outdir).expanduser().absolute()
        self.root = self.outdir / STATE_DIR
        self.status_dir = self.root / "status"
        self.failed_dir = self.root / "failed"

    def status_path(self, job_id: str) -> Path:
        return self.status_dir / f"{job_id}.json"

    def failure_path(self, job_id: str) -> Path:
        return self.failed_dir / f"{job_id}.json"

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def summary_path(self) -> Path:
        return self.outdir / "summary.json"

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    def create(self) -> None:
        """Make OUTDIR and the bookkeeping folders; an unusable OUTDIR is an InputError."""
        try:
            for folder in (self.outdir, self.status_dir, self.failed_dir):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the output folder {self.outdir} ({exc.strerror}). "
                f"To fix: pass an -o folder you can write to."
            ) from exc

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        """Write `data` to `path` atomically (readers see the old file or the new one, never half)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)

    @staticmethod
    def read_json(path: Path) -> dict[str, Any] | None:
        """The JSON object at `path`, or None when it is missing or unreadable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def is_stale_temp(name: str) -> bool:
    """Temporary names the project's atomic writers use: `.<stem>.tmp-XXXX<suffix>` (files and
    folders) and the `.sagvideo-write-check-*` probe of `check_output_path`."""
    return name.startswith(".") and (".tmp" in name or name.startswith(".sagvideo-write-check-"))


def clean_stale_temps(state: BatchState) -> list[Path]:
    """Remove temporary files and folders a killed run left in OUTDIR and its bookkeeping folders.

    Only call this while no other process writes to OUTDIR (rank 0, holding the run lock,
    before any job starts). Returns what was removed.
    """
    removed = []
    folders = (state.outdir, state.outdir / DEPTH_CACHE_DIR, state.root, state.status_dir, state.failed_dir)
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not is_stale_temp(entry.name):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class RunLock:
    """An exclusive advisory lock on OUTDIR/.sagvideo/lock, held by rank 0 for the whole run.

    Two batches writing one OUTDIR would clean each other's temporary files and run the same
    jobs twice; the second one fails fast instead. The kernel drops the lock when the holder
    dies, so a SIGKILLed run never leaves OUTDIR locked.
    """

    def __init__(self, state: BatchState):
        self.state = state
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.state.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(
                f"another batch (pid {holder}) is running with output folder {self.state.outdir}. "
                f"To fix: wait for it to finish, or pass another -o folder."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
