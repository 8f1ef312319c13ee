"""The guided sampling step (normalised step size, time travel, adaptive n) and a DDIM sampler.

Model-agnostic: it knows `eps_fn(x, t)` and tensors. An `eps_fn` that also offers
`eps_with_reference(x, t) -> (eps, eps_c - eps_u)` (classifier-free guidance) gets the paper's
step size `rho = strength * RMS(eps_c - eps_u) / RMS(g)`; a plain `eps_fn` uses RMS(eps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from .adjoint import METHODS, SCHEMES, LossFn, sag_gradient
from .ddim import alpha_at, ddim_step, estimate_grid, renoise
from .evals import EpsFn, GradientCost, require_finite


@dataclass(frozen=True)
class SAGParams:
    """Where and how hard to guide. Fractions make a config transfer across step counts."""

    strength: float = 1.5
    start: float = 0.3
    end: float = 0.7
    n: int = 4
    adaptive_n: bool = False
    repeats: int = 2
    method: str = "symplectic"
    scheme: str = "euler"

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"need 0 <= start <= end <= 1 for the guided range, got start={self.start}, end={self.end}.")
        if self.n < 1 or self.repeats < 1:
            raise ValueError(f"n and repeats must be >= 1, got n={self.n}, repeats={self.repeats}.")
        if self.method not in METHODS or self.scheme not in SCHEMES:
            raise ValueError(f"method must be one of {METHODS} and scheme one of {SCHEMES}.")

    def guided_indices(self, num_steps: int) -> range:
        """Step indices i (0 = noisiest) with start <= i / num_steps < end."""
        return range(math.ceil(self.start * num_steps - 1e-9), math.ceil(self.end * num_steps - 1e-9))

    def n_at(self, i: int, num_steps: int) -> int:
        """n for step index i: constant, or with adaptive_n linear from n (first) down to 1 (last)."""
        steps = self.guided_indices(num_steps)
        if not self.adaptive_n or len(steps) < 2:
            return self.n
        frac = (steps[-1] - i) / (steps[-1] - steps[0])
        return max(1, round(1 + (self.n - 1) * frac))


def rms(x: Tensor) -> Tensor:
    """Root mean square over the whole tensor, in float32 or better (fp16 would overflow)."""
    return x.to(torch.promote_types(x.dtype, torch.float32)).pow(2).mean().sqrt()


def step_size(reference: Tensor, grad: Tensor, strength: float) -> float:
    """`rho = strength * RMS(reference) / RMS(grad)`; 0 when the gradient vanishes."""
    g = float(rms(grad))
    return 0.0 if g == 0.0 else strength * float(rms(reference)) / g


def eps_and_reference(eps_fn: EpsFn, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
    """(eps, reference for rho): `eps_with_reference` when offered, else (eps, eps)."""
    if hasattr(eps_fn, "eps_with_reference"):
        return eps_fn.eps_with_reference(x, t)
    eps = eps_fn(x, t)
    return eps, eps


@dataclass
class GuidedStepRecord:
    """What one guided pass did: for the report and the benchmarks."""

    index: int
    timestep: int
    repeat: int
    n: int
    loss: float
    rho: float
    cost: dict[str, int] = field(default_factory=dict)


def guided_step(
    eps_fn: EpsFn,
    x_t: Tensor,
    t: int,
    a_prev: float,
    alphas_cumprod: Tensor,
    loss_fn: LossFn,
    params: SAGParams,
    *,
    n: int,
    index: int = 0,
    generator: torch.Generator | None = None,
    grad_eps_fn: EpsFn | None = None,
    on_record: Callable[[GuidedStepRecord], Any] | None = None,
) -> tuple[Tensor, list[GuidedStepRecord]]:
    """`x_{t-1} = DDIM(x_t, eps(x_t)) - rho g`, repeated `params.repeats` times with re-noising.

    x_t: (any shape, e.g. (B, C, F, H, W)); returns x_{t-1} of the same shape and one record per
    pass. `grad_eps_fn` (default eps_fn) is the network differentiated for g, e.g. the
    conditional branch only. Noise for time travel comes from `generator`. `on_record` is
    called after each pass (e.g. to show progress).
    """
    a_t = alpha_at(alphas_cumprod, t)
    records = []
    for r in range(params.repeats):
        with torch.no_grad():
            eps, reference = eps_and_reference(eps_fn, x_t, t)
        require_finite(eps, f"the noise prediction at sampling timestep {t}")
        cost = GradientCost(eps_evals=1)
        grad, loss = sag_gradient(
            grad_eps_fn or eps_fn, x_t, t, alphas_cumprod, loss_fn,
            n=n, method=params.method, scheme=params.scheme,
            first_eps=eps if grad_eps_fn is None else None, cost=cost,
        )
        rho = step_size(reference, grad, params.strength)
        x_prev = ddim_step(x_t, eps, a_t, a_prev) - rho * grad
        evaluated = estimate_grid(t, n, alphas_cumprod).n  # fewer than n when t is too small
        records.append(GuidedStepRecord(index, t, r, evaluated, float(loss), rho, cost.as_dict()))
        if on_record is not None:
            on_record(records[-1])
        if r < params.repeats - 1:
            x_t = renoise(x_prev, a_t, a_prev, generator)
    return x_prev, records


@dataclass
class SampleResult:
    x0: Tensor
    records: list[GuidedStepRecord]


def sample(
    eps_fn: EpsFn,
    x_T: Tensor,
    alphas_cumprod: Tensor,
    timesteps: list[int],
    *,
    loss_fn: LossFn | None = None,
    params: SAGParams | None = None,
    generator: torch.Generator | None = None,
    grad_eps_fn: EpsFn | None = None,
    callback: Callable[[int, int, Tensor], Any] | None = None,
    on_record: Callable[[GuidedStepRecord], Any] | None = None,
) -> SampleResult:
    """A whole DDIM (eta = 0) trajectory over `timesteps` (high to low), guided where `params` says.

    x_T: initial noise (any shape). Returns the clean sample (the last step goes to alpha-bar 1)
    and the guided-step records. `callback(i, t, x)` is called after every step, `on_record(record)`
    after every guided pass.
    """
    guided = set(params.guided_indices(len(timesteps))) if (params and loss_fn is not None) else set()
    records: list[GuidedStepRecord] = []
    x = x_T
    for i, t in enumerate(timesteps):
        a_prev = alpha_at(alphas_cumprod, timesteps[i + 1] if i + 1 < len(timesteps) else None)
        if i in guided:
            n = params.n_at(i, len(timesteps))
            x, recs = guided_step(
                eps_fn, x, t, a_prev, alphas_cumprod, loss_fn, params,
                n=n, index=i, generator=generator, grad_eps_fn=grad_eps_fn, on_record=on_record,
            )
            records.extend(recs)
        else:
            with torch.no_grad():
                eps = eps_fn(x, t)
            require_finite(eps, f"the noise prediction at sampling timestep {t}")
            x = ddim_step(x, eps, alpha_at(alphas_cumprod, t), a_prev)
        if callback is not None:
            callback(i, t, x)
    return SampleResult(x, records)
