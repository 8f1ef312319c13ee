"""Guards around a job's outputs: never one of its inputs, one run at a time, no leftovers.

* `check_not_inputs`: an output must not be a file the run reads (video, style image, depth
  maps), however it is spelled: paths are compared as files (device and inode), so a relative
  path, a symlink or a hard link to an input is caught, with or without `--overwrite`.
* `OutputLock`: an exclusive `flock` on `.sagvideo/locks/<name>.lock` beside the output, held for
  the run. The kernel drops it when the process ends, however it ends. A second run on the same
  output fails at once naming the first; with `--overwrite` it waits for the first to finish.
  A run removes its lock file (and the folders, when empty) as it finishes; a killed run's
  file stays, unlocked, and is reused.
* `clean_stale_temporaries`: the staging folders and temporary files a killed run left beside
  the output (only ever removed while holding that output's lock, so never a live run's).
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from ..files import staging_pattern, temp_file_pattern
from .names import OutputLayout

LOCK_DIR = ".sagvideo/locks"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()  # follows symlinks: a link to an input is that input
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the file now at `path`."""
    st = os.fstat(fd)
    return _identity(path) == (st.st_dev, st.st_ino)


def check_not_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]) -> None:
    """InputError when an output path is (a link to) an input file or folder."""
    sources = {}
    for path in inputs:
        ident = _identity(Path(path).expanduser())
        if ident is not None:
            sources[ident] = Path(path)
    for out in outputs:
        ident = _identity(Path(out).expanduser())
        if ident in sources:
            raise InputError(f"the output '{out}' is the input '{sources[ident]}' (the same file, by another name "
                             f"or a link). Writing it would destroy the input, so nothing was run, --overwrite or not. "
                             f"To fix: choose another output path (-o).")


def input_files(*paths: str | os.PathLike | None, folder: str | os.PathLike | None = None) -> list[Path]:
    """The files a run reads: the given paths, plus the folder and every file in it (e.g. depth maps)."""
    found = [Path(p).expanduser() for p in paths if p is not None]
    if folder is not None and Path(folder).expanduser().is_dir():
        folder = Path(folder).expanduser()
        found += [folder, *(p for p in folder.iterdir() if p.is_file())]
    return found


class OutputLock:
    """An OS-level lock on one output (see the module docstring); a context manager."""

    def __init__(self, layout: OutputLayout, *, wait: bool = False):
        self.layout = layout
        self.path = layout.main.parent / LOCK_DIR / f"{layout.main.name}.lock"
        self.wait = wait
        self._fd: int | None = None
        self._holder = ""

    def _open_locked(self, blocking: bool) -> int | None:
        """An fd holding the flock on the lock file at `self.path`, or None if another run holds it.

        A holder unlinks the file when it is done, so after locking, check that the file we hold is
        still the one at the path (else we locked an orphan: try again with the new file).
        """
        import fcntl

        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:
                continue  # the folder was removed by a finishing run between mkdir and open
            except OSError as exc:
                raise InputError(f"cannot create the lock for '{self.layout.main}' in {self.path.parent} "
                                 f"({exc.strerror}). To fix: write the output to a folder you can write to.") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                self._holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                return None
            if _same_file(fd, self.path):
                return fd
            os.close(fd)

    def acquire(self) -> "OutputLock":
        fd = self._open_locked(blocking=False)
        if fd is None and not self.wait:
            raise InputError(f"'{self.layout.main}' is being written by another sagvideo run ({self._holder}). To fix: "
                             f"wait for it to finish, choose another -o, or pass --overwrite to wait for it "
                             f"and then replace its result.")
        if fd is None:
            fd = self._open_locked(blocking=True)  # --overwrite: wait for the other run, then go on
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file (still holding the lock, so no other run holds that file), then unlock."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        for folder in (self.path.parent, self.path.parent.parent):  # .sagvideo/locks, .sagvideo: if empty
            try:
                folder.rmdir()
            except OSError:
                break
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def clean_stale_temporaries(layout: OutputLayout, paths: Iterable[Path] | None = None) -> list[Path]:
    """Remove staging folders and temporary files of this output's files (or of `paths`) left by
    killed runs.

    Call only while holding the output's `OutputLock`: then no live run owns them.
    """
    removed = []
    if paths is None:
        paths = (layout.main, layout.report, layout.contact_sheet, layout.plot, layout.gif, layout.frames_dir,
                 layout.preview)
    for path in paths:
        candidates = [*path.parent.glob(staging_pattern(path)), *path.parent.glob(temp_file_pattern(path))]
        for leftover in candidates:
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed
