"""Write results atomically: H.264 video with the source's audio span, GIF, a folder of PNG frames.

Frames are piped as raw RGB into the imageio-ffmpeg binary; a `ResizedFrames` is resized chunk
by chunk as it is encoded, so a long clip is never held at full resolution.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import InputError
from ..files import atomic_dir, atomic_path, check_output_path
from ..defaults import VIDEO_SUFFIXES
from .ffmpeg import FFmpegError, ffmpeg_exe
from .frames import ResizedFrames
from .io import probe_video


def _even_frames(frames: np.ndarray) -> np.ndarray:
    # yuv420p needs even width and height: repeat the last row/column (less visible than black).
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def _frame_bytes(frame: np.ndarray) -> bytes:
    return np.ascontiguousarray(frame).tobytes()


def _pipe_to_ffmpeg(cmd: list[str], frames: ResizedFrames, output: Path, progress: bool = False) -> None:
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty ffmpeg cannot block us
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        try:
            try:
                with tqdm(total=len(frames), desc="encoding", unit="frame", disable=not progress, leave=False) as bar:
                    for chunk in frames.chunks():
                        for frame in _even_frames(chunk):
                            proc.stdin.write(_frame_bytes(frame))
                        bar.update(len(chunk))
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg exited early; its exit code and stderr below say why
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if rc != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", errors="replace").strip()[-1500:]
            raise FFmpegError(f"ffmpeg failed (exit code {rc}) writing '{output}':\n{tail}")


def _as_fraction(fps: Fraction | int | float) -> Fraction:
    fps = Fraction(fps).limit_denominator(1001) if isinstance(fps, float) else Fraction(fps)
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}. To fix: pass the source rate, e.g. 25.")
    return fps


def write_video(frames: np.ndarray | ResizedFrames, path: str | os.PathLike, fps: Fraction | int | float, *,
                audio_from: str | os.PathLike | None = None, audio_span: tuple[float, float] | None = None,
                crf: int = 18, overwrite: bool = False, preset: str = "medium", progress: bool = False) -> Path:
    """Encode uint8 (F, H, W, 3) RGB frames (or `ResizedFrames`) to H.264/yuv420p at the exact rate `fps`.

    Audio from `audio_from` (seconds `audio_span`, or from 0) is re-encoded to AAC when that
    file has audio, trimmed to the video's length. Odd H or W gets one repeated edge row/column
    (yuv420p needs even sizes). The file appears only when complete (atomic rename).
    """
    frames = ResizedFrames.of(frames)
    path = check_output_path(path, overwrite)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"Cannot write video '{path.name}': use one of {', '.join(VIDEO_SUFFIXES)}.")
    fps = _as_fraction(fps)
    n, w, h = len(frames), frames.size[0] + frames.size[0] % 2, frames.size[1] + frames.size[1] % 2
    rate = f"{fps.numerator}/{fps.denominator}"
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", rate, "-i", "pipe:0"]
    audio = audio_from is not None and probe_video(audio_from).has_audio
    if audio:
        start, end = audio_span if audio_span is not None else (0.0, math.inf)
        length = min(end - start, float(n / fps))
        if start < 0 or length <= 0:
            raise InputError(f"audio_span {audio_span} is empty or negative. To fix: pass (start_s, end_s), end > start >= 0.")
        cmd += ["-ss", f"{start:.6f}", "-t", f"{length:.6f}", "-i", str(Path(audio_from).expanduser())]
    cmd += ["-map", "0:v:0"] + (["-map", "1:a:0"] if audio else [])
    cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-r", rate]
    cmd += (["-c:a", "aac", "-b:a", "192k"] if audio else []) + ["-movflags", "+faststart"]
    with atomic_path(path) as tmp:
        _pipe_to_ffmpeg(cmd + [str(tmp)], frames, path, progress)
    return path


def _gif_durations_ms(n: int, fps: Fraction) -> list[int]:
    # GIF stores delays in 1/100 s; spread the rounding so the total length stays exact.
    ticks = [round(Fraction(100 * i) / fps) for i in range(n + 1)]
    return [max(1, b - a) * 10 for a, b in zip(ticks, ticks[1:])]


def write_gif(frames: np.ndarray | ResizedFrames, path: str | os.PathLike, fps: Fraction | int | float,
              overwrite: bool = False) -> Path:
    """Write uint8 (F, H, W, 3) frames (or `ResizedFrames`) as a looping GIF (per-frame palettes); atomic."""
    frames = ResizedFrames.of(frames)
    path = check_output_path(path, overwrite)
    fps = _as_fraction(fps)
    images = [Image.fromarray(f) for chunk in frames.chunks() for f in chunk]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=_gif_durations_ms(len(images), fps), loop=0)
    return path


def write_frames_dir(frames: np.ndarray | ResizedFrames, folder: str | os.PathLike, overwrite: bool = False,
                     prefix: str = "frame") -> Path:
    """Write uint8 (F, H, W, 3) frames as folder/<prefix>_00000.png, ...; the folder appears whole."""
    frames = ResizedFrames.of(frames)
    folder = check_output_path(folder, overwrite, folder_output=True)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"'{folder}' is a file, not a folder. To fix: choose another output folder name.")
    with atomic_dir(folder) as tmp:
        index = 0
        for chunk in frames.chunks():
            for frame in chunk:
                Image.fromarray(frame).save(tmp / f"{prefix}_{index:05d}.png")
                index += 1
    return folder
