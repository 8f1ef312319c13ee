"""The ffmpeg binary shipped with imageio-ffmpeg (there may be no system ffmpeg), and its banner."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import SagVideoError


class FFmpegError(SagVideoError, RuntimeError):
    """The ffmpeg binary failed; the message carries the end of its error output."""

def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with imageio-ffmpeg (there may be no system ffmpeg)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_banner(path: Path) -> str:
    """The stream summary `ffmpeg -i FILE` prints (stderr text), without decoding anything."""
    # `ffmpeg -i FILE` with no output prints the container/stream summary and exits 1.
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return proc.stderr.decode("utf-8", errors="replace")
