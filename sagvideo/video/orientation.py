"""How a video stream is meant to be shown: display rotation (phone clips) and sample aspect (anamorphic).

Phones store portrait footage as landscape pixels plus a display matrix in the container; players,
and ffmpeg's default autorotation, turn the picture before showing it. Anamorphic sources store
non-square pixels (sample aspect ratio, SAR) that players stretch horizontally. Both facts are read
from the `ffmpeg -i` banner of the imageio-ffmpeg binary, and ffmpeg's autorotated decode is the
reference for what "as displayed" means.

Sign convention, checked against that binary: the banner's `Display Matrix: rotation of A degrees`
(`displaymatrix: ...` in older builds) gives the angle counter-clockwise, so the picture is turned
(-A) mod 360 degrees clockwise: -90 (an iPhone portrait clip) means 90 clockwise, i.e. the stored
top-left corner is shown top-right. The legacy `rotate : 90` tag that old ffmpeg builds print for
the same file is already the clockwise angle.

decord is not neutral here: decord 0.6 (with its bundled libavformat 58) turns frames itself, by a
stream `rotate` tag in any letter case when one is nonzero (e.g. an MKV `ROTATE` tag, which ffmpeg
ignores), else by the display matrix of MP4/MOV files only (it ignores an MKV display matrix,
which ffmpeg applies). `Display.decoder_rotation` records that, and `apply_display` turns decord's
frames by the difference, so the result matches ffmpeg in every case.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError
from .ffmpeg import ffmpeg_banner

_VIDEO = re.compile(r"^[ \t]*Stream #\d+:\d+.*?: Video: (.*)$", re.M)
_NEXT_STREAM = re.compile(r"^[ \t]*Stream #", re.M)
_MATRIX = re.compile(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", re.I)
_ROTATE_TAG = re.compile(r"^[ \t]+(rotate)[ \t]*: (-?\d+(?:\.\d+)?)[ \t]*$", re.M | re.I)
_SAR = re.compile(r"SAR (\d+):(\d+) DAR \d+:\d+")
_SIZE = re.compile(r", (\d+)x(\d+)\b")
_FORMAT = re.compile(r"Input #0, ([\w,]+), from")


@dataclass(frozen=True)
class Display:
    """Display geometry of a video stream.

    rotation: degrees (0/90/180/270) the viewer turns the stored picture clockwise.
    sample_aspect: pixel width / pixel height (SAR); Fraction(1) for square pixels.
    stored_size: (W, H) of the coded pictures.
    decoder_rotation: degrees clockwise decord has already turned the frames it returns
        (see the module docstring); `apply_display` turns them by the rest.
    """

    rotation: int = 0
    sample_aspect: Fraction = Fraction(1)
    stored_size: tuple[int, int] = (0, 0)
    decoder_rotation: int = 0

    @property
    def display_size(self) -> tuple[int, int]:
        """(W, H) as shown: the stored width stretched by the SAR (rounded), then rotated."""
        w, h = self.stored_size
        w = max(1, int(w * self.sample_aspect + Fraction(1, 2)))
        return (h, w) if self.rotation in (90, 270) else (w, h)

    @property
    def decoded_size(self) -> tuple[int, int]:
        """(W, H) of the frames decord returns when no size is requested (stored size after its own turn)."""
        w, h = self.stored_size
        return (h, w) if self.decoder_rotation in (90, 270) else (w, h)


def _quarter_turn(degrees: float, name: str) -> int:
    """Clockwise degrees -> 0/90/180/270; InputError for angles more than 1 degree off a quarter turn."""
    turn = round(degrees / 90) * 90
    if abs(degrees - turn) > 1:
        raise InputError(
            f"Video '{name}' asks to be shown rotated by {degrees:g} degrees, which is not a quarter turn. "
            f"To fix: re-encode it upright with ffmpeg, which applies the rotation "
            f"(`ffmpeg -i '{name}' -c:v libx264 -pix_fmt yuv420p upright.mp4`).")
    return int(turn) % 360


def _video_section(banner: str) -> tuple[str, str] | None:
    """(Video: line, the stream's metadata and side data lines) of the first real video stream."""
    for line in _VIDEO.finditer(banner):
        if "(attached pic)" in line.group(1):  # cover art is not the clip
            continue
        after = _NEXT_STREAM.search(banner, line.end())
        return line.group(1), banner[line.end():after.start() if after else len(banner)]
    return None


def parse_display(banner: str, name: str = "IN.mp4") -> Display:
    """Display of the first video stream in an `ffmpeg -hide_banner -i FILE` banner (stderr text).

    `name` is the file named in errors and their ffmpeg commands. The display matrix sets the rotation; a lowercase
    `rotate` tag (what ffmpeg <= 4 printed for MP4/MOV rotation) is used only when there is no
    matrix. The SAR is the last one on the Video line: the container's, printed after the
    codec's bracketed one when they differ, is the one ffmpeg applies.
    """
    found = _video_section(banner)
    if found is None:
        raise InputError(f"'{name}' has no video stream. To fix: pass a video file such as an H.264 .mp4.")
    line, section = found
    size = _SIZE.search(line)
    if size is None:
        raise InputError(f"ffmpeg reports no frame size for '{name}'. To fix: re-encode it with "
                         f"`ffmpeg -i '{name}' -c:v libx264 -pix_fmt yuv420p out.mp4`.")
    matrix = _MATRIX.search(section)
    tags = {m.group(1): float(m.group(2)) for m in _ROTATE_TAG.finditer(section)}
    if matrix is not None:
        rotation = _quarter_turn(-float(matrix.group(1)) % 360, name)
    else:
        rotation = _quarter_turn(tags.get("rotate", 0.0) % 360, name)
    # decord: any nonzero rotate tag first (case-insensitive lookup), else the MP4/MOV matrix only.
    tag = next((v for v in tags.values() if v % 360), 0.0)
    fmt = _FORMAT.search(banner)
    is_mov = fmt is not None and fmt.group(1).startswith("mov,")
    if tag:
        decoder = round(tag) % 360
    else:
        decoder = rotation if matrix is not None and is_mov else 0
    sars = _SAR.findall(line)
    num, den = (int(sars[-1][0]), int(sars[-1][1])) if sars else (1, 1)
    sar = Fraction(num, den) if num > 0 and den > 0 else Fraction(1)  # 0:1 means unknown: square
    return Display(rotation=rotation, sample_aspect=sar, stored_size=(int(size.group(1)), int(size.group(2))),
                   decoder_rotation=decoder if decoder in (90, 180, 270) else 0)


def probe_display(path: str | os.PathLike) -> Display:
    """Display rotation, SAR, stored and display size of a video, from the ffmpeg banner (no decoding)."""

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"Video file '{path}' not found (or not a file). To fix: check the path.")
    return parse_display(ffmpeg_banner(path), name=str(path))


def decoder_size_for(display: Display, size: tuple[int, int]) -> tuple[int, int]:
    """(W, H) to ask decord for (`width`, `height`) so that `apply_display` yields `size` = (W, H).

    decord scales after its own turn, so the request is `size` turned back by the rest of the
    rotation; scaling to an aspect of `display.display_size` also removes the SAR squeeze.
    """
    turn = (display.rotation - display.decoder_rotation) % 360
    return (size[1], size[0]) if turn in (90, 270) else (size[0], size[1])


def apply_display(frames: np.ndarray, display: Display) -> np.ndarray:
    """Frames as decord returns them, (F, H, W, C) -> (F, H', W', C) turned upright as ffmpeg shows them.

    Turns by `display.rotation - display.decoder_rotation` clockwise (returns `frames` itself when
    that is 0). It does not resample for the SAR: resize the result to `display.display_size`
    (or a size with its aspect) to remove the anamorphic squeeze.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise InputError(f"Frames must be (F, H, W, C), got shape {frames.shape}. To fix: stack single "
                         f"frames with frames[None].")
    turn = (display.rotation - display.decoder_rotation) % 360
    if turn == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=-turn // 90, axes=(1, 2)))  # k < 0: clockwise
