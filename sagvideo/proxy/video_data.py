"""Clips with known motion for the video proxy: an 8x8 handwritten digit (scikit-learn's
`load_digits`, no download) on a 16x16 canvas, shifted by a constant velocity every frame.

The shift is circular (`torch.roll`), so the true motion is exact at every pixel: frame t+1 is
frame t rolled by v = (dy, dx) in {-1, 0, 1}^2, nothing is occluded, and a generated clip's
motion error is measured against that roll with no flow estimate in between. The velocity is
the clip's label (0..8), which the video model is conditioned on, so every sample's intended
motion is known.
"""

from __future__ import annotations

import torch
from torch import Tensor

CLIP_SIZE = 16
VELOCITIES = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # label k -> (dy, dx) px per frame


def small_digits() -> Tensor:
    """The 1797 digits at their native 8x8 in [-1, 1] (background -1): (N, 8, 8) float32."""
    from sklearn.datasets import load_digits

    return torch.as_tensor(load_digits().images, dtype=torch.float32) / 8.0 - 1.0


def roll_clip(first: Tensor, velocity: tuple[int, int], frames: int) -> Tensor:
    """(H, W) first frame -> (frames, H, W): frame t is `first` rolled by t * velocity."""
    dy, dx = velocity
    return torch.stack([torch.roll(first, shifts=(t * dy, t * dx), dims=(0, 1)) for t in range(frames)])


def moving_digit_clips(count: int, frames: int, gen: torch.Generator,
                       digits: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`count` random clips: (count, 1, frames, 16, 16) in [-1, 1] and velocity labels (count,) in 0..8.

    Each clip: a random digit at a random place on the canvas, moving at a random velocity.
    """
    digits = small_digits() if digits is None else digits
    idx = torch.randint(0, len(digits), (count,), generator=gen)
    labels = torch.randint(0, len(VELOCITIES), (count,), generator=gen)
    corners = torch.randint(0, CLIP_SIZE, (count, 2), generator=gen)
    clips = []
    for i in range(count):
        canvas = torch.full((CLIP_SIZE, CLIP_SIZE), -1.0)
        canvas[:8, :8] = digits[idx[i]]
        first = torch.roll(canvas, shifts=(int(corners[i, 0]), int(corners[i, 1])), dims=(0, 1))
        clips.append(roll_clip(first, VELOCITIES[int(labels[i])], frames))
    return torch.stack(clips).unsqueeze(1), labels
