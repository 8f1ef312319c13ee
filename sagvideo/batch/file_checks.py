"""The checks a job's input files get while a job file is validated, run once per file."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from ..errors import SagVideoError


class FileChecks:
    """The video probe and style decode a job would do first, cached per file: jobs share files."""

    def __init__(self) -> None:
        self._videos: dict[Path, Any] = {}
        self._styles: dict[Path, str | None] = {}

    def video(self, path: Path):
        """VideoInfo, or the InputError message."""
        from ..video.io import probe_video

        if path not in self._videos:
            try:
                self._videos[path] = probe_video(path)
            except SagVideoError as exc:
                self._videos[path] = str(exc)
            except (OSError, subprocess.SubprocessError) as exc:  # ffmpeg missing or hung
                self._videos[path] = f"cannot probe video {path}: {exc}. To fix: check the file and ffmpeg."
        return self._videos[path]

    def style(self, path: Path) -> str | None:
        """None when the image decodes, else the InputError message."""
        from ..images import read_style_image

        if path not in self._styles:
            try:
                read_style_image(path)
                self._styles[path] = None
            except SagVideoError as exc:
                self._styles[path] = str(exc)
        return self._styles[path]
