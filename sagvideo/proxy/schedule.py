"""The proxy model's noise schedule: DDPM linear betas 1e-4 .. 0.02 over 1000 steps (Ho et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 1e-4
BETA_END = 0.02


def proxy_alphas_cumprod() -> Tensor:
    """alpha-bar_t = prod_{s<=t} (1 - beta_s) for the linear betas: float64, shape (1000,)."""
    betas = torch.linspace(BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def add_noise(x0: Tensor, noise: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """q(x_t | x0): `sqrt(a_t) x0 + sqrt(1 - a_t) noise` (Ho et al. eq. 4).

    x0, noise: (B, C, H, W); t: (B,) integer timesteps; alphas_cumprod: (T,). Returns x0's dtype.
    """
    a = alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise
