"""The sampler a run steps with (`sampling.scheduler`): DDIM, Euler (the Lightning sampler) or LCM.

Each is written as what the guidance needs: its timesteps, the deterministic part of a step as
an affine map of the state and the noise prediction, `x' = A x + B eps` (`coefficients`), and
the whole step (LCM adds fresh noise). Nothing keeps state, so a step can be repeated (time
travel) or re-run for a VJP.

- `ddim`: DDIM with eta = 0 (`ddim.ddim_coefficients`).
- `euler`: diffusers' Euler (epsilon prediction) steps `y' = y + (sigma' - sigma) eps` in
  `y = x / sqrt(a)`, `sigma = sqrt((1 - a) / a)`; written in x this is the DDIM step, term for
  term, and its last step to sigma = 0 is DDIM's step to alpha-bar 1. So `euler` runs the DDIM
  step; it differs from `ddim` only in the timesteps it allows (integer ones: Euler's "linspace"
  spacing falls between training timesteps).
- `lcm`: the latent consistency model step: the boundary-condition denoiser
  `D = c_out x0_hat + c_skip x` (x0_hat Tweedie's estimate), then `x' = sqrt(a') D + sqrt(1 - a') xi`
  with fresh noise xi (none on the last step). Its deterministic part, with xi replaced by the
  prediction eps itself (eta = 0, as DDIM is of DDPM), is affine in (x, eps): that chain is the
  n-step clean estimate SAG differentiates under LCM. With c_skip = 0, c_out = 1 it is DDIM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..defaults import SCHEDULERS  # noqa: F401 (re-exported)
from .ddim import ddim_coefficients, ddim_timesteps, noise_like

# LCMScheduler's settings for SD 1.5 LCMs (AnimateLCM): the distillation schedule's length, the
# timestep scaling of the boundary condition and the data standard deviation.
LCM_ORIGINAL_STEPS = 50
LCM_TIMESTEP_SCALING = 10.0
LCM_SIGMA_DATA = 0.5


def lcm_boundary(t: int) -> tuple[float, float]:
    """(c_skip, c_out) of the consistency parameterisation at timestep t (c_skip -> 0 away from t = 0)."""
    scaled = t * LCM_TIMESTEP_SCALING
    denominator = scaled**2 + LCM_SIGMA_DATA**2
    return LCM_SIGMA_DATA**2 / denominator, scaled / math.sqrt(denominator)


def lcm_timesteps(num_train_timesteps: int, num_steps: int) -> list[int]:
    """LCM's timesteps, high to low: `num_steps` evenly indexed points of its distillation
    schedule `k i - 1` (i = 1..50, k = T // 50)."""
    if not 1 <= num_steps <= LCM_ORIGINAL_STEPS:
        raise ValueError(f"the lcm scheduler takes 1 to {LCM_ORIGINAL_STEPS} steps (its distillation schedule), "
                         f"got {num_steps}.")
    k = num_train_timesteps // LCM_ORIGINAL_STEPS
    origin = [i * k - 1 for i in range(LCM_ORIGINAL_STEPS, 0, -1)]
    return [origin[math.floor(j * LCM_ORIGINAL_STEPS / num_steps)] for j in range(num_steps)]


@dataclass(frozen=True)
class Sampler:
    """One of `SCHEDULERS`: timesteps, step coefficients and the step (see the module docstring)."""

    name: str = "ddim"

    def __post_init__(self) -> None:
        if self.name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.name!r}; use one of {', '.join(SCHEDULERS)}.")

    @property
    def steps_like_ddim(self) -> bool:
        """Whether its step is DDIM's (so every DDIM-based method and estimate applies as it is)."""
        return self.name != "lcm"

    @property
    def adds_noise(self) -> bool:
        """Whether a step draws fresh noise (LCM), beyond its affine part."""
        return self.name == "lcm"

    def timesteps(self, num_train_timesteps: int, num_steps: int, spacing: str = "leading") -> list[int]:
        """The sampling timesteps, high to low (`spacing` as diffusers' `timestep_spacing`; LCM has its own)."""
        if self.name == "lcm":
            return lcm_timesteps(num_train_timesteps, num_steps)
        if self.name == "euler" and spacing == "linspace":
            raise ValueError("the euler scheduler's linspace spacing falls between training timesteps; use trailing "
                             "(the Lightning recipe) or leading.")
        return ddim_timesteps(num_train_timesteps, num_steps, spacing=spacing)

    def coefficients(self, t: int, a: float, a_next: float) -> tuple[float, float]:
        """(A, B) of the step's deterministic part `A x + B eps` from timestep t (alpha-bar a) to a_next."""
        if self.name != "lcm":
            return ddim_coefficients(a, a_next)
        c_skip, c_out = lcm_boundary(t)
        root_next = math.sqrt(a_next)
        coef_x = root_next * (c_out / math.sqrt(a) + c_skip)
        return coef_x, math.sqrt(1.0 - a_next) - root_next * c_out * math.sqrt((1.0 - a) / a)

    def clean(self, x: Tensor, eps: Tensor, t: int, a: float) -> Tensor:
        """The sampler's own one-step clean estimate at (x, t) (shape of x): Tweedie's, or LCM's D."""
        coef_x, coef_eps = self.coefficients(t, a, 1.0)
        return coef_x * x + coef_eps * eps

    def step(self, x: Tensor, eps: Tensor, t: int, a: float, a_next: float,
             generator: torch.Generator | None = None) -> Tensor:
        """One sampling step from (x, t) to alpha-bar a_next (1: the clean end); x, eps: any shape.

        LCM's fresh noise comes from `generator` (a seeded run repeats); none when a_next = 1.
        """
        coef_x, coef_eps = self.coefficients(t, a, a_next if not self.adds_noise else 1.0)
        if not self.adds_noise:
            return coef_x * x + coef_eps * eps
        denoised = coef_x * x + coef_eps * eps
        if a_next >= 1.0:
            return denoised
        return math.sqrt(a_next) * denoised + math.sqrt(1.0 - a_next) * noise_like(x, generator)


DDIM = Sampler("ddim")
