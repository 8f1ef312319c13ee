"""`freedom`: FreeDoM (Yu et al., ICCV 2023, Algorithm 1 with time travel), SAG with n = 1.

The guidance gradient is taken through the one-step (Tweedie) estimate
`x0_hat = (x_t - sqrt(1 - a_t) eps(x_t)) / sqrt(a_t)`, then `x_{t-1} = DDIM(x_t, eps) - rho g` with
SAG's normalised rho, `params.passes` times with re-noising (time travel). Running
SAG's own code with n = 1 makes the two equal bit for bit by construction, which is the point:
any difference between the `sag` and `freedom` rows of a benchmark is the n-step estimate.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ...method_registry import FreeDoMSettings
from ..loop import RecordCallback, SAGParams, SampleResult, StepCallback, check_inputs
from ..protocols import EpsFn, LossFn
from .sag import sample


def sample_freedom(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], *, loss_fn: LossFn,
                   params: SAGParams, settings: FreeDoMSettings | None = None,
                   generator: torch.Generator | None = None, grad_eps_fn: EpsFn | None = None,
                   on_step: StepCallback | None = None, on_record: RecordCallback | None = None) -> SampleResult:
    """FreeDoM from x_T (any shape): `params` with n = 1 (and no adaptive n); `params.gradient` is kept."""
    check_inputs(x_T, alphas_cumprod, timesteps, settings, FreeDoMSettings, loss_fn)
    one_step = dataclasses.replace(params, n=1, adaptive_n=False, passes=params.passes_for("freedom"))
    return sample(eps_fn, x_T, alphas_cumprod, list(timesteps), loss_fn=loss_fn, params=one_step, generator=generator,
                  grad_eps_fn=grad_eps_fn, on_step=on_step, on_record=on_record)
