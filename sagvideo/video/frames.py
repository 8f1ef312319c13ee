"""Frame arrays: checks, resizing, and frames resized lazily a chunk at a time for writers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from PIL import Image

from ..errors import InputError


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0 or frames.dtype != np.uint8:
        raise InputError(f"Frames must be a non-empty uint8 array (F, H, W, 3), got {frames.dtype} {frames.shape}. "
                         f"To fix: convert with (x.clip(0, 1) * 255).round().astype(np.uint8).")
    return frames


def restore_size(frames: np.ndarray, source_size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 (F, h, w, 3) frames to `source_size` = (W, H): returns (F, H, W, 3).

    The model size keeps the source aspect up to rounding to multiples of 8, so a plain
    (bicubic) resize restores the original geometry with at most a few pixels of stretch.
    """
    frames = check_frames(frames)
    width, height = source_size
    if frames.shape[1:3] == (height, width):
        return frames.copy()
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))
    return out


@dataclass(frozen=True)
class ResizedFrames:
    """Frames uint8 (F, h, w, 3) to write at `size` = (W, H), resized `chunk` frames at a time.

    Writers take one of these (or a plain array, written as it is) so a long clip is never held
    at full resolution: each chunk is resized just before it is encoded.
    """

    frames: np.ndarray
    size: tuple[int, int]
    chunk: int = 16

    @classmethod
    def of(cls, frames: "np.ndarray | ResizedFrames") -> "ResizedFrames":
        if isinstance(frames, ResizedFrames):
            return frames
        frames = check_frames(frames)
        return cls(frames, (frames.shape[2], frames.shape[1]))

    def __len__(self) -> int:
        return len(self.frames)

    def chunks(self) -> Iterable[np.ndarray]:
        """uint8 (<= chunk, H, W, 3) pieces in order."""
        for i in range(0, len(self.frames), self.chunk):
            yield restore_size(self.frames[i:i + self.chunk], self.size)
