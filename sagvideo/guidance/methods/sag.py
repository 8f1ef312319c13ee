"""`sag`: Symplectic Adjoint Guidance, exactly `sagvideo.guidance.sample` in the shared sampler signature.

The n-step clean estimate with the exact (symplectic-adjoint) gradient, normalised step
`x_{t-1} = DDIM(x_t, eps) - rho g`, time travel; see `sagvideo.guidance.sag` and DESIGN section 2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...method_settings import SAGSettings
from ..protocols import EpsFn, LossFn
from ..sag import SAGParams, SampleResult, StepCallback, sample
from .common import RecordCallback, check_inputs


def sample_sag(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], *, loss_fn: LossFn,
               params: SAGParams, settings: SAGSettings | None = None, generator: torch.Generator | None = None,
               grad_eps_fn: EpsFn | None = None, on_step: StepCallback | None = None,
               on_record: RecordCallback | None = None) -> SampleResult:
    """SAG over `timesteps` (high to low) from x_T (any shape, e.g. (B, C, F, h, w)); see `sample`."""
    check_inputs(x_T, alphas_cumprod, timesteps, settings, SAGSettings, loss_fn)
    return sample(eps_fn, x_T, alphas_cumprod, list(timesteps), loss_fn=loss_fn, params=params, generator=generator,
                  grad_eps_fn=grad_eps_fn, on_step=on_step, on_record=on_record)
