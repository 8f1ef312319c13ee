"""Read the frames a run needs from a video (writing is in `write.py`).

Reading uses decord with random access (`get_batch`) and decoder-side resizing, so only the
selected frames are decoded, already at model size and in chunks: a long 4K input is never held
whole in memory. Stream facts (size, audio, duration, display rotation) come from the `ffmpeg -i`
banner of the imageio-ffmpeg binary; the exact rational frame rate is recovered from decord's
float average rate (see `_exact_fps`).
"""

from __future__ import annotations

import math
import operator
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..console import native_stderr_to_notes
from ..errors import InputError
from .ffmpeg import ffmpeg_banner
from .frames import restore_size


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a video file, gathered without decoding its frames."""

    path: Path
    frame_count: int
    fps: Fraction
    width: int
    height: int
    has_audio: bool
    duration: float  # seconds, container duration (falls back to frame_count / fps)
    display: Any = None  # orientation.Display: rotation and sample aspect; width/height are as displayed


@dataclass
class Clip:
    """Frames selected from a video and resized for the model.

    `frames` is uint8 (F, H, W, 3) at `model_size` = (W, H). `fps` is the exact source rate;
    with `stride` > 1 write the result at `output_fps` (= fps / stride) so it plays at real
    speed and stays in sync with the audio span [`start_time`, `end_time`).
    """

    frames: np.ndarray
    fps: Fraction
    indices: list[int]
    source_size: tuple[int, int]
    model_size: tuple[int, int]
    start_time: float
    end_time: float
    has_audio: bool
    path: Path
    stride: int = 1
    display: Any = None  # orientation.Display of the source: the frames are already upright and unsqueezed

    @property
    def output_fps(self) -> Fraction:
        """Frame rate that plays the selected frames at the source's real speed."""
        return self.fps / self.stride

    @property
    def audio_span(self) -> tuple[float, float]:
        """(start_s, end_s) of the source covered by the clip, for `write_video(audio_span=...)`."""
        return (self.start_time, self.end_time)


def _not_a_video(path: Path, why: str) -> InputError:
    return InputError(f"'{path}' cannot be read as a video ({why}). To fix: pass a video file such as an "
                      f"H.264 .mp4; convert others with "
                      f"`ffmpeg -i '{path.name}' -c:v libx264 -pix_fmt yuv420p out.mp4`.")


def _exact_fps(avg_fps: float, banner_fps: str | None) -> Fraction:
    """The source frame rate as an exact fraction.

    decord reports `av_q2d(avg_frame_rate)`, a float; the fraction with denominator <= 1001
    nearest to it is the exact rate for every rate with such a denominator (25, 24000/1001,
    30000/1001, 2997/125, ...), because two distinct such fractions differ by more than 1e-6
    and the float is accurate to ~1e-15. The banner's rounded "29.97 fps" is a fallback only.
    """
    if math.isfinite(avg_fps) and avg_fps > 0:
        return Fraction(avg_fps).limit_denominator(1001)
    if banner_fps:
        value = float(banner_fps[:-1]) * 1000 if banner_fps.endswith("k") else float(banner_fps)
        ntsc = round(value * 1.001)
        # "29.97", "23.98", "59.94" are the banner's rounding of N*1000/1001.
        if abs(value - round(value)) > 0.005 and abs(value - ntsc * 1000 / 1001) < 0.006:
            return Fraction(ntsc * 1000, 1001)
        return Fraction(value).limit_denominator(1001)
    raise InputError("The video reports no frame rate. To fix: re-encode it with ffmpeg (`-r 25`).")


# ffmpeg's AVERROR codes as decord reports them ("av_read_frame failed with N"), in words
_AV_ERRORS = {1094995529: "invalid data: the file is damaged or cut short",
              -1094995529: "invalid data: the file is damaged or cut short",
              541478725: "the file ends early", -541478725: "the file ends early"}


def decoder_reason(exc: BaseException) -> str:
    """decord's error as one readable clause: its source-file prefix dropped, ffmpeg codes in words."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[\d:]+\] \S+:\d+: (Error: )?", "", text)  # "[00:20:10] /src/...cc:486: Error: "
    code = re.search(r"av_read_frame failed with (-?\d+)", text)
    if code and int(code.group(1)) in _AV_ERRORS:
        return f"reading frames failed, {_AV_ERRORS[int(code.group(1))]}"
    return text[:200]


def _open_reader(path: Path, **kwargs):
    import decord

    try:
        with native_stderr_to_notes(f"'{path.name}'"):
            return decord.VideoReader(str(path), ctx=decord.cpu(0), **kwargs)
    except Exception as exc:  # decord raises DECORDError (not a RuntimeError) or RuntimeError
        raise _not_a_video(path, f"decord: {decoder_reason(exc)}") from exc


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, exact fps, size, audio presence and duration of a video, without decoding it."""
    return _probe(path)[0]


def _display_of(path: Path, banner: str, video_line: str):
    """The stream's display geometry, or None when the banner gives no frame size."""
    from .orientation import parse_display

    if re.search(r", (\d+)x(\d+)\b", video_line) is None:
        return None
    return parse_display(banner, name=path.name)


def _probe(path: str | os.PathLike, short_side: int | None = None):
    """(VideoInfo, decord reader, whether the reader resizes to `model_size_for(..., short_side)`).

    Sizes are as displayed: a phone clip's display rotation and an anamorphic sample aspect are
    applied (`orientation.py`). decord indexes the whole file when a reader opens, so read_clip
    reuses this one reader.
    """
    from .orientation import Display, decoder_size_for

    path = Path(path).expanduser()
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative paths start at '{Path.cwd()}')"
        raise InputError(f"Video file '{path}' not found. To fix: check the path{where}.")
    if not path.is_file():
        raise InputError(f"'{path}' is not a file. To fix: pass the path of a video file.")
    banner = ffmpeg_banner(path)
    fmt = re.search(r"Input #0, ([\w,]+), from", banner)
    if fmt is None:
        reason = banner.strip().splitlines()[-1] if banner.strip() else "ffmpeg cannot open it"
        raise _not_a_video(path, reason)
    if fmt.group(1) == "image2" or fmt.group(1).endswith("_pipe"):
        raise _not_a_video(path, f"it is a still image ({fmt.group(1)}), not a video")
    video_line = re.search(r"Stream #\d+:\d+.*?: Video: (.*)", banner)
    if video_line is None:
        raise _not_a_video(path, "it has no video stream")
    banner_fps = re.search(r"([\d.]+k?) (?:fps|tbr)", video_line.group(1))
    display = _display_of(path, banner, video_line.group(1))
    sized = display is not None and short_side is not None
    if display is not None:
        width, height = display.display_size
        request = decoder_size_for(display, model_size_for(width, height, short_side)) if sized else (-1, -1)
        reader = _open_reader(path, width=request[0], height=request[1])  # -1: decord keeps its own size
    else:  # banner without a size: decode one frame to learn it
        reader = _open_reader(path)
        height, width = reader[0].shape[:2]
        display = Display(stored_size=(width, height))
    frame_count = len(reader)
    fps = _exact_fps(reader.get_avg_fps(), banner_fps.group(1) if banner_fps else None)
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", banner)
    hms = [float(x) for x in dur.groups()] if dur else None
    duration = hms[0] * 3600 + hms[1] * 60 + hms[2] if hms else float(frame_count / fps)
    has_audio = re.search(r"Stream #\d+:\d+.*?: Audio: ", banner) is not None
    return VideoInfo(path, frame_count, fps, width, height, has_audio, duration, display), reader, sized


def _positive_int(value, name: str, flag: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise InputError(f"{name} must be a whole number, got {value!r}. To fix: pass e.g. {flag} 16.")
    value = operator.index(value)
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}. To fix: pass {flag} {minimum} or more.")
    return value


def model_size_for(width: int, height: int, size: int) -> tuple[int, int]:
    """(W, H) with the short side `size` and the aspect kept, both rounded to multiples of 8.

    `size` itself is rounded to the nearest multiple of 8 (e.g. 500 -> 504); no side is below 8.
    """
    def to8(x: float) -> int:
        return max(8, int(math.floor(x / 8 + 0.5)) * 8)

    short = to8(size)
    scale = short / min(width, height)
    return to8(width * scale), to8(height * scale)


def frame_indices(frame_count: int, frames: int, stride: int, start: int, name: str = "The video") -> list[int]:
    """Source indices start, start+stride, ... (`frames` of them); InputError if they do not fit."""
    last = start + (frames - 1) * stride
    if last < frame_count:
        return list(range(start, last + 1, stride))
    room, fixes = frame_count - 1 - start, []  # room: frames after `start`
    if room >= 0:
        fixes.append(f"--frames {room // stride + 1}")
        if frames > 1 and room // (frames - 1) >= 1:
            fixes.append(f"--stride {room // (frames - 1)}")
    if frame_count - 1 - (frames - 1) * stride >= 0:
        fixes.append(f"--start {frame_count - 1 - (frames - 1) * stride}")
    fix = " or ".join(fixes) if fixes else f"--frames {frame_count} --stride 1 --start 0"
    raise InputError(f"{name} has {frame_count} frames (indices 0-{frame_count - 1}), but frames={frames}, "
                     f"stride={stride}, start={start} needs frame {last}. To fix: use {fix}.")


def _decode_and_resize(info: VideoInfo, indices: list[int], size: tuple[int, int]) -> np.ndarray:
    """Decode `indices` at the decoder's own size, one frame at a time (bounded memory), upright, resized to `size`."""
    from .orientation import apply_display

    reader = _open_reader(info.path)
    out = np.empty((len(indices), size[1], size[0], 3), dtype=np.uint8)
    try:
        with native_stderr_to_notes(f"'{info.path.name}'"):
            for k, index in enumerate(indices):
                out[k] = restore_size(apply_display(reader.get_batch([index]).asnumpy(), info.display), size)[0]
    except Exception as exc:  # DECORDError on a damaged stream
        raise InputError(f"Could not decode frames {indices[0]}-{indices[-1]} of '{info.path}' ({decoder_reason(exc)}). "
                         f"To fix: re-encode the video with ffmpeg, or pick other frames with --start.") from exc
    return out


READ_CHUNK = 32  # frames decoded per decord call: bounded working memory for long clips


def select_span(info: VideoInfo, frames: int | None, stride: int, start: int, *,
                start_time: float | None = None, duration: float | None = None) -> list[int]:
    """Source frame indices to stylize: `frames` of them (None: all to the end) every `stride`
    from `start`; `start_time`/`duration` in seconds replace `start`/`frames` when given."""
    if start_time is not None:
        start = int(round(start_time * info.fps))
        if start >= info.frame_count:
            raise InputError(f"'{info.path.name}' lasts {float(info.frame_count / info.fps):.2f} s, but --start-time is "
                             f"{start_time} s. To fix: pass a start time before the end.")
    if duration is not None:
        frames = max(1, math.ceil(duration * info.fps / stride))
        frames = min(frames, max(1, (info.frame_count - 1 - start) // stride + 1))  # a duration may run past the end
    if frames is None:
        if start >= info.frame_count:
            raise InputError(f"'{info.path.name}' has {info.frame_count} frames, but --start is {start}. "
                             f"To fix: use --start {info.frame_count - 1} or less.")
        frames = (info.frame_count - 1 - start) // stride + 1
    return frame_indices(info.frame_count, frames, stride, start, name=f"'{info.path.name}'")


def _decode_chunked(reader, info: VideoInfo, indices: list[int], size: tuple[int, int], resized: bool) -> np.ndarray:
    """uint8 (len(indices), H, W, 3) upright at `size`, decoded `READ_CHUNK` frames at a time into one array."""
    from .orientation import apply_display

    out = np.empty((len(indices), size[1], size[0], 3), dtype=np.uint8)
    try:
        if not resized:
            raise ValueError("reader decodes at source size")
        for i in range(0, len(indices), READ_CHUNK):
            with native_stderr_to_notes(f"'{info.path.name}'"):
                batch = reader.get_batch(indices[i:i + READ_CHUNK]).asnumpy()
            if batch.ndim != 4 or batch.shape[-1] != 3:  # decord mis-shapes some resized rotated frames
                raise ValueError(f"decoder returned frames of shape {batch.shape}")
            batch = apply_display(batch, info.display)
            if batch.shape[1:3] != (size[1], size[0]):  # decoder ignored the size: resize here
                batch = restore_size(batch, size)
            out[i:i + len(batch)] = batch
    except Exception:
        # decord's resizer rejects some small widths (8, 16, 24, 48, 72 px: "DECORDArrayCopyFromTo:
        # The size must exactly match"); decode at its own size one frame at a time instead.
        out = _decode_and_resize(info, indices, size)
    return out


def read_clip(path: str | os.PathLike, *, frames: int | None = 16, stride: int = 1, start: int = 0, size: int = 512,
              start_time: float | None = None, duration: float | None = None,
              check: Callable[[int], None] | None = None) -> Clip:
    """Decode frames start, start+stride, ... (`frames` of them, None: to the end), resized for the model.

    Returns a Clip whose `frames` are uint8 (frames, H, W, 3) with min(H, W) = `size` rounded
    to a multiple of 8, the source aspect kept within rounding, and W, H multiples of 8. Only
    the selected frames are decoded, at model size (decord `width`/`height`), in chunks: the
    full-resolution clip is never held. `check(frame_count)` runs after probing, before decoding.
    """
    frames = None if frames is None else _positive_int(frames, "frames", "--frames")
    stride = _positive_int(stride, "stride", "--stride")
    start = _positive_int(start, "start", "--start", minimum=0)
    size = _positive_int(size, "size", "--size", minimum=1)
    info, reader, sized = _probe(path, size)
    if info.frame_count == 0:
        raise InputError(f"'{info.path}' has no decodable video frames. To fix: pass another video, or re-encode it.")
    indices = select_span(info, frames, stride, start, start_time=start_time, duration=duration)
    if check is not None:
        check(len(indices))
    model_w, model_h = model_size_for(info.width, info.height, size)
    batch = _decode_chunked(reader, info, indices, (model_w, model_h), sized)
    first, end = indices[0], min(indices[-1] + stride, info.frame_count)  # the span played at fps / stride
    return Clip(frames=batch, fps=info.fps, indices=indices,
                source_size=(info.width, info.height), model_size=(model_w, model_h),
                start_time=float(first / info.fps), end_time=float(end / info.fps),
                has_audio=info.has_audio, path=info.path, stride=stride, display=info.display)


