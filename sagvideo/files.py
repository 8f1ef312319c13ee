"""Atomic file output and up-front output-path checks.

Every file sagvideo writes goes to a temporary name in the destination folder and is renamed
into place only when complete, so a crash or Ctrl-C never leaves a half-written output.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError


def _fs_error(folder: Path, exc: OSError) -> InputError:
    if folder.exists() and not folder.is_dir():
        return InputError(f"Output folder '{folder}' is a file, not a folder. "
                          f"To fix: choose an output path inside an existing folder.")
    if not folder.exists():
        return InputError(f"Output folder '{folder}' does not exist. "
                          f"To fix: create it (mkdir -p '{folder}') or choose another output path.")
    return InputError(f"Output folder '{folder}' is not writable ({exc.strerror or exc}). "
                      f"To fix: choose a folder you can write to, or change its permissions.")


def current_umask() -> int:
    """The process umask, read without changing it (Linux /proc; else a probe file's mode).

    `os.umask(0)` then back would briefly change it for every thread of the process.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with tempfile.TemporaryDirectory() as folder:  # a new entry gets 0o777 & ~umask
        probe = Path(folder) / "probe"
        probe.mkdir(mode=0o777)
        return 0o777 & ~probe.stat().st_mode


def _publish_mode(path: Path, directory: bool = False) -> None:
    # mkstemp/mkdtemp create 0600/0700 entries; give the result the permissions a plain
    # open() would have (0666/0777 minus umask) so other users can read the output.
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` only if the block succeeds.

    The temporary file (`.<stem>.tmp-XXXX<suffix>`, same folder, so the final `os.replace` is
    atomic) is deleted on any exception, KeyboardInterrupt included; an OSError that names no
    file (a full disk fails a write) is raised again naming `path`. An existing `path` is
    replaced: callers that must not overwrite check first with `check_output_path`.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise _fs_error(path.parent, exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _publish_mode(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:  # e.g. EFBIG from a write: name the file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like `atomic_path` for a folder: yield a temporary folder, rename it to `path` on success.

    An existing folder at `path` is swapped out and deleted only after the new one is in place.
    """
    path = Path(path)
    tmp = _temp_dir(path.parent, path.name)
    try:
        yield tmp
        _publish_mode(tmp, directory=True)
        publish(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def staging_pattern(path: Path) -> str:
    """Glob of the staging folders of `path` (see `staging_dir`), special characters escaped."""
    return f"{glob.escape(f'.{path.name}.tmp-')}*"


def temp_file_pattern(path: Path) -> str:
    """Glob of the temporary files `atomic_path(path)` makes beside `path`, special characters escaped."""
    return f"{glob.escape(f'.{path.stem}.tmp-')}*{glob.escape(path.suffix)}"


def _temp_dir(parent: Path, name: str) -> Path:
    """A new hidden `.<name>.tmp-XXXX` folder in `parent` (InputError naming the folder if impossible)."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))
    except OSError as exc:
        raise _fs_error(parent, exc) from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file in the same folder, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """`data` as indented JSON (UTF-8, non-ASCII kept) at `path`, atomically: readers see the old
    file or the new one, never half."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_output_path(path: str | os.PathLike, overwrite: bool = False, *, folder_output: bool = False) -> Path:
    """Check, before any expensive work, that `path` can be written; return it absolute.

    Raises InputError when the folder is missing, is a file, or refuses new files (tested by
    creating and removing a temporary file, which also catches read-only mounts and works as
    root), when `path` exists and `overwrite` is False, or when it is a folder where a file is
    expected (`folder_output=False`).
    """
    path = Path(path).expanduser().absolute()
    folder = path.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".sagvideo-write-check-", dir=folder)
    except OSError as exc:
        raise _fs_error(folder, exc) from exc
    os.close(fd)
    os.unlink(probe)
    if path.is_dir() and not folder_output:
        raise InputError(f"Output '{path}' is a folder. To fix: give a file path, e.g. '{path / 'out.mp4'}'.")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise InputError(f"Output '{path}' already exists. To fix: pass --overwrite to replace it, "
                         f"or choose another output path.")
    return path


@contextmanager
def staging_dir(near: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary folder beside `near` (same file system, so renames out of it are atomic).

    It is removed on exit, success or not; named `.<name>.tmp-XXXX` (`staging_pattern`) so a later
    run on the same output can spot and remove one left by a killed process.
    """
    near = Path(near)
    folder = _temp_dir(near.parent, near.name)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(staged: Path, final: Path) -> Path:
    """Move a finished file or folder onto `final` (same file system), replacing what is there.

    An existing folder is moved aside first (os.replace cannot replace a non-empty folder) and
    deleted only once the new one is in place.
    """
    old = None
    if final.is_dir() and not final.is_symlink():
        old = _temp_dir(final.parent, f"{final.name}.old")
        os.replace(final, old / final.name)
    elif final.is_symlink() or (final.exists() and staged.is_dir()):
        final.unlink()
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final
