"""Input checks and resizing shared by the metrics: clips are uint8 RGB (F, H, W, 3) numpy arrays."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError


def check_clip(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Return `frames` as a uint8 array (F, H, W, 3) with F >= 1, or raise InputError saying how to fix it."""
    array = np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or min(array.shape) == 0:
        raise InputError(
            f"{name} must be uint8 RGB frames of shape (F, H, W, 3) with F >= 1, got {array.dtype} "
            f"{array.shape}. To fix: stack the frames along axis 0 and convert floats in [0, 1] with "
            f"(x * 255).round().astype(np.uint8).")
    return array


def check_same_length(frames: np.ndarray, other: np.ndarray, other_name: str) -> None:
    """InputError unless both clips have the same number of frames."""
    if len(frames) != len(other):
        raise InputError(f"frames has {len(frames)} frames but {other_name} has {len(other)}. "
                         f"To fix: pass the {other_name} of exactly the frames that were stylized.")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image to size = (h, w): area averaging to shrink, bilinear to enlarge."""
    height, width = image.shape[:2]
    if (height, width) == tuple(size):
        return image
    shrink = height * width > size[0] * size[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (int(size[1]), int(size[0])), interpolation=interpolation)
