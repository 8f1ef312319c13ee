"""The starting noise of a clip, drawn from a seed on the CPU so every device starts the same.

Two schemes (`video.noise`):

* `independent`: every frame its own Gaussian noise;
* `shuffled`: the first window's frames are drawn, and every later block of `window - overlap`
  frames reuses them in a seeded random order (the repeated-and-shuffled noise of FreeNoise,
  Qiu et al. 2023). Windows then start from the same frames of noise in other orders, which
  helps them agree on one look across the clip.

Noise is drawn frame by frame, so frame k's noise does not depend on the clip's length and the
first window is the same under both schemes (with one window, frames <= window, the tensors are
equal).
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def initial_noise(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu", *,
                  scheme: str = "independent", window: int = 0, overlap: int = 0) -> Tensor:
    """Noise of `shape` = (B, C, F, h, w) (or 4-D for images), float32 on `device`."""
    gen = torch.Generator().manual_seed(seed)
    if len(shape) != 5:
        return torch.randn(shape, generator=gen, dtype=torch.float32).to(device)
    frames = shape[2]
    if scheme == "independent" or window <= 0 or frames <= window:
        return _frame_major_randn(shape, gen).to(device)
    if scheme != "shuffled":
        raise ValueError(f"unknown noise scheme {scheme!r}; use 'independent' or 'shuffled'.")
    base = _frame_major_randn((*shape[:2], window, *shape[3:]), gen)
    parts, filled, block = [base], window, max(1, window - overlap)
    while filled < frames:
        order = torch.randperm(window, generator=gen)[: min(block, frames - filled)]
        parts.append(base[:, :, order])
        filled += len(order)
    return torch.cat(parts, dim=2).to(device)


def _frame_major_randn(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """(B, C, F, h, w) noise drawn frame after frame, so a prefix of frames is length-independent."""
    b, c, f, h, w = shape
    return torch.randn((b, f, c, h, w), generator=gen, dtype=torch.float32).permute(0, 2, 1, 3, 4).contiguous()
