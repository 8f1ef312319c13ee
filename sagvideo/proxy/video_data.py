"""Clips with known motion for the video proxy: an 8x8 handwritten digit (scikit-learn's
`load_digits`, no download) on a 16x16 canvas, shifted by a constant velocity every frame.

The shift is circular (`torch.roll`), so the true motion is exact at every pixel: frame t+1 is
frame t rolled by v = (dy, dx) in {-1, 0, 1}^2, nothing is occluded, and a generated clip's
motion error is measured against that roll with no flow estimate in between.

The video model is conditioned, frame by frame, on a blurred copy of the clip (`structure_maps`),
as the real pipeline's ControlNet is on depth maps: the control says where the shape is in each
frame, not what its strokes look like. The blur is circular too, so the control moves exactly
with the clip and every sample's intended motion is known.

Digits are split once: the first `TRAIN_DIGITS` train the model, the rest make the bench's clips.
"""

from __future__ import annotations

import torch
from torch import Tensor

CLIP_SIZE = 16
VELOCITIES = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # label k -> (dy, dx) px per frame
TRAIN_DIGITS = 1500  # of scikit-learn's 1797: the rest are held out for the bench
STRUCTURE_SIGMA = 1.0  # px: the control's blur (a coarse shape, as a depth map is)


def small_digits() -> Tensor:
    """The 1797 digits at their native 8x8 in [-1, 1] (background -1): (N, 8, 8) float32."""
    from .data import load_digit_images

    return load_digit_images(size=8)[0][:, 0]


def roll_clip(first: Tensor, velocity: tuple[int, int], frames: int) -> Tensor:
    """(H, W) first frame -> (frames, H, W): frame t is `first` rolled by t * velocity."""
    dy, dx = velocity
    return torch.stack([torch.roll(first, shifts=(t * dy, t * dx), dims=(0, 1)) for t in range(frames)])


def digit_split(part: str) -> Tensor:
    """The training digits (`part="train"`) or the held-out ones (`"test"`): (N, 8, 8) in [-1, 1]."""
    digits = small_digits()
    return digits[:TRAIN_DIGITS] if part == "train" else digits[TRAIN_DIGITS:]


def structure_maps(clips: Tensor, sigma: float = STRUCTURE_SIGMA) -> Tensor:
    """The control: each frame blurred by a circular Gaussian. (B, 1, F, H, W) -> same shape, same range.

    Circular, so `structure_maps(roll(x)) == roll(structure_maps(x))`: the control moves as the clip."""
    radius = max(1, int(3 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=clips.dtype) ** 2 / (2 * sigma ** 2))
    taps = taps / taps.sum()
    out = clips
    for dim in (-1, -2):  # separable: rows, then columns
        out = sum(w * torch.roll(out, shifts=k, dims=dim) for k, w in zip(range(-radius, radius + 1), taps))
    return out


def moving_digit_clips(count: int, frames: int, gen: torch.Generator, digits: Tensor | None = None,
                       labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`count` random clips: (count, 1, frames, 16, 16) in [-1, 1] and velocity labels (count,) in 0..8.

    Each clip: a random digit of `digits` (default: the training split) at a random place on the
    canvas, moving at a random velocity (or at `labels`' velocities when given).
    """
    digits = digit_split("train") if digits is None else digits
    idx = torch.randint(0, len(digits), (count,), generator=gen)
    drawn = torch.randint(0, len(VELOCITIES), (count,), generator=gen)
    labels = drawn if labels is None else labels
    corners = torch.randint(0, CLIP_SIZE, (count, 2), generator=gen)
    canvas = torch.full((count, CLIP_SIZE, CLIP_SIZE), -1.0)
    canvas[:, :8, :8] = digits[idx]
    # frame t is the canvas rolled by corner + t * v; roll(c, s)[y] = c[(y - s) mod size], as one gather
    shifts = corners[:, None] + torch.arange(frames)[None, :, None] * torch.tensor(VELOCITIES)[labels][:, None]
    grid = torch.arange(CLIP_SIZE)
    rows = (grid[None, None, :] - shifts[..., :1]) % CLIP_SIZE  # (count, frames, 16)
    cols = (grid[None, None, :] - shifts[..., 1:]) % CLIP_SIZE
    clips = canvas[torch.arange(count)[:, None, None, None], rows[..., :, None], cols[..., None, :]]
    return clips.unsqueeze(1), labels
