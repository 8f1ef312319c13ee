"""The starting noise of a clip, drawn from a seed on the CPU so every device starts the same.

Two schemes (`video.noise`):

* `independent`: every frame its own Gaussian noise;
* `shuffled`: the first window's frames are drawn, and every later block of `window - overlap`
  frames reuses them in a seeded random order (the repeated-and-shuffled noise of FreeNoise,
  Qiu et al. 2023). Windows then start from the same frames of noise in other orders, which
  helps them agree on one look across the clip.

With one window (frames <= window) both schemes give exactly the same tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def initial_noise(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu", *,
                  scheme: str = "independent", window: int = 0, overlap: int = 0) -> Tensor:
    """Noise of `shape` = (B, C, F, h, w) (or 4-D for images), float32 on `device`."""
    gen = torch.Generator().manual_seed(seed)
    frames = shape[2] if len(shape) == 5 else 1
    if scheme == "independent" or window <= 0 or frames <= window:
        return torch.randn(shape, generator=gen, dtype=torch.float32).to(device)
    if scheme != "shuffled":
        raise ValueError(f"unknown noise scheme {scheme!r}; use 'independent' or 'shuffled'.")
    base = torch.randn((*shape[:2], window, *shape[3:]), generator=gen, dtype=torch.float32)
    parts, filled, block = [base], window, max(1, window - overlap)
    while filled < frames:
        order = torch.randperm(window, generator=gen)[: min(block, frames - filled)]
        parts.append(base[:, :, order])
        filled += len(order)
    return torch.cat(parts, dim=2).to(device)
