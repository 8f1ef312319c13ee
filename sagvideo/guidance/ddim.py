"""Stateless DDIM (eta = 0) and the sub-grid of the n-step clean estimate.

With `y = x / sqrt(a)` and `sigma = sqrt((1 - a) / a)`, a DDIM step from `a` to `a_next` is one
explicit Euler step of the probability-flow ODE `dy/dsigma = eps` (DDIM paper, eq. 14). Nothing
here keeps state, so a step can be repeated (time travel) or re-run for a VJP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


def ddim_coefficients(a: float, a_next: float) -> tuple[float, float]:
    """(A, B) with `ddim_step(x, eps) = A x + B eps`.

    From `x0 = (x - sqrt(1-a) eps) / sqrt(a)` and `x' = sqrt(a') x0 + sqrt(1-a') eps`.
    """
    scale = math.sqrt(a_next / a)
    return scale, math.sqrt(1.0 - a_next) - scale * math.sqrt(1.0 - a)


def ddim_step(x: Tensor, eps: Tensor, a: float, a_next: float) -> Tensor:
    """One DDIM (eta = 0) step from alpha-bar `a` to `a_next`; `a_next = 1` gives the clean x0.

    x, eps: any shape, e.g. (B, C, F, H, W); returns the same shape.
    """
    coef_x, coef_eps = ddim_coefficients(a, a_next)
    return coef_x * x + coef_eps * eps


def predict_x0(x: Tensor, eps: Tensor, a: float) -> Tensor:
    """Tweedie's one-step clean estimate `(x - sqrt(1-a) eps) / sqrt(a)` (shape of x)."""
    return ddim_step(x, eps, a, 1.0)


def renoise(x_prev: Tensor, a_t: float, a_prev: float, generator: torch.Generator | None) -> Tensor:
    """Time travel: `x_t = sqrt(a_t/a_prev) x_prev + sqrt(1 - a_t/a_prev) xi`, xi ~ N(0, I).

    The noise comes from the caller's `generator` (drawn on its device, then moved), so a
    seeded run repeats bit for bit.
    """
    ratio = a_t / a_prev
    return math.sqrt(ratio) * x_prev + math.sqrt(1.0 - ratio) * noise_like(x_prev, generator)


def noise_like(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """xi ~ N(0, I) shaped like `like`, drawn in float32 on the generator's device, then moved to
    `like`'s device and dtype (so a seed gives the same noise on every device and precision)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    xi = torch.randn(like.shape, generator=generator, device=gen_device, dtype=torch.float32)
    return xi.to(like.device, like.dtype)


def alpha_at(alphas_cumprod: Tensor, t: int | None) -> float:
    """alpha-bar at timestep `t`; `None` is the clean end, where alpha-bar is exactly 1."""
    return 1.0 if t is None else float(alphas_cumprod[t])


@dataclass(frozen=True)
class EstimateGrid:
    """The sub-grid `t = s_0 > s_1 > ... > s_{n-1} >= 0`, then the clean end (alpha-bar 1).

    `timesteps[k]` is where the k-th noise prediction is evaluated; `alphas` has one more entry
    than `timesteps`, ending with 1.0.
    """

    timesteps: tuple[int, ...]
    alphas: tuple[float, ...]
    coefficients: tuple[tuple[float, float], ...] = ()  # (A_k, B_k) of step k: x' = A_k x + B_k eps

    def step_coefficients(self, k: int) -> tuple[float, float]:
        """(A, B) of step k of the estimate: the sampler's, else DDIM's."""
        return self.coefficients[k] if self.coefficients else ddim_coefficients(self.alphas[k], self.alphas[k + 1])

    @property
    def n(self) -> int:
        return len(self.timesteps)

    def timestep(self, k: int) -> int | None:
        """Timestep of grid point k (None for the clean end)."""
        return self.timesteps[k] if k < self.n else None


# coefficients(t, a, a_next) -> (A, B): a sampler's step `A x + B eps` (guidance/schedulers.py)
StepCoefficients = Callable[[int, float, float], "tuple[float, float]"]


def estimate_grid(t: int, n: int, alphas_cumprod: Tensor, coefficients: StepCoefficients | None = None) -> EstimateGrid:
    """Evenly spaced evaluation timesteps `round(t (n - k) / n)`, k = 0..n-1, then the clean end.

    `coefficients` (default DDIM's) are the steps of the chain between them, e.g. LCM's.

    We count evaluations (n = 1 is the one-step estimate) and end at the clean image; the
    authors' code counts grid points and stops at t = 10. When t is too small for n distinct
    points (n > t + 1), repeated points are dropped, so fewer than n evaluations run.
    """
    points: list[int] = []
    for k in range(n):
        s = int(round(t * (n - k) / n))
        if not points or s < points[-1]:
            points.append(s)
    alphas = tuple(float(alphas_cumprod[s]) for s in points) + (1.0,)
    coefs = () if coefficients is None else tuple(
        coefficients(s, alphas[k], alphas[k + 1]) for k, s in enumerate(points))
    return EstimateGrid(tuple(points), alphas, coefs)


def ddim_timesteps(num_train_timesteps: int, num_steps: int, offset: int = 1, spacing: str = "leading") -> list[int]:
    """Sampling timesteps, high to low, spaced as diffusers' DDIM `timestep_spacing` does.

    "leading": every T // steps from `offset` (SD 1.5's default, with its offset of 1);
    "linspace": evenly from 0 to T - 1 (the AnimateDiff recipe); "trailing": evenly down from T - 1.
    """
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(
            f"num_steps must be between 1 and {num_train_timesteps} (the model's training "
            f"timesteps), got {num_steps}."
        )
    if spacing == "leading":
        ratio = num_train_timesteps // num_steps
        return [min(i * ratio + offset, num_train_timesteps - 1) for i in range(num_steps)][::-1]
    if spacing == "linspace":
        points = torch.linspace(0, num_train_timesteps - 1, num_steps, dtype=torch.float64).round()
        return [int(t) for t in points.flip(0)]
    if spacing == "trailing":
        step = num_train_timesteps / num_steps
        return [int(round(num_train_timesteps - i * step)) - 1 for i in range(num_steps)]
    raise ValueError(f"unknown timestep spacing {spacing!r}; use leading, linspace or trailing.")
