"""`mpgd`: Manifold Preserving Guided Diffusion (He et al., ICLR 2024; Algorithm "MPGD w/o projection").

Per guided pass, with one graph-free evaluation and no backprop through the network:

    eps = eps(x_t);  x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    x0' = x0 - c_t dE/dx0                       (the gradient w.r.t. the clean estimate only)
    x_{t-1} = sqrt(a_{t-1}) x0' + sqrt(1 - a_{t-1}) eps      (DDIM, eta = 0)

with `c_t = scale * strength * RMS(eps_c - eps_u) / RMS(dE/dx0)`, the normalisation of the
official Stable Diffusion style code (method_registry.MPGDSettings says how its rho = 15 maps
onto `scale`). `params.passes` per guided step (default 1), re-noised in between.
Costs per pass: one network evaluation without a graph, zero VJPs, one loss gradient.
Shapes: x (any, e.g. (B, C, F, h, w)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...method_registry import MPGDSettings
from ..adjoint import loss_and_lambda
from ..ddim import predict_x0
from ..evals import FiniteGuard, GradientCost
from ..loop import (
    GuidedStep, GuidedStepRecord, RecordCallback, SAGParams, SampleResult, StepCallback, check_inputs,
    first_evaluation, run_loop, step_size, travel,
)
from ..protocols import EpsFn, LossFn


def _mpgd_pass(eps_fn: EpsFn, x_t: Tensor, t: int, a_t: float, a_prev: float, loss_fn: LossFn,
               strength: float) -> tuple[Tensor, Tensor, float, float, dict]:
    """One pass: (x_{t-1}, the updated clean estimate x0', loss at x0, c_t, cost)."""
    cost, guard = GradientCost(), FiniteGuard()
    first, reference = first_evaluation(eps_fn, x_t, t, False, cost, guard)
    eps = first.eps
    x0 = predict_x0(x_t, eps, a_t)
    loss, lam = loss_and_lambda(loss_fn, x0, guard)
    guard.check()  # the pass's one synchronisation for NaN/inf
    c = step_size(reference, lam, strength)
    x0_new = x0 - c * lam
    x_prev = math.sqrt(a_prev) * x0_new + math.sqrt(1.0 - a_prev) * eps
    return x_prev, x0_new, float(loss), c, dict(cost.as_dict(), loss_grads=1)


def sample_mpgd(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], *, loss_fn: LossFn,
                params: SAGParams, settings: MPGDSettings | None = None, generator: torch.Generator | None = None,
                grad_eps_fn: EpsFn | None = None, on_step: StepCallback | None = None,
                on_record: RecordCallback | None = None) -> SampleResult:
    """MPGD on the steps `params` guides. `grad_eps_fn` is unused: nothing is differentiated through the network."""
    settings = check_inputs(x_T, alphas_cumprod, timesteps, settings, MPGDSettings, loss_fn)
    timesteps = list(timesteps)
    strength = settings.scale * params.strength

    def guided(i: int, t: int, x_t: Tensor, a_t: float, a_prev: float) -> GuidedStep:
        def one_pass(x: Tensor, r: int):
            x_prev, x0_new, loss, c, cost = _mpgd_pass(eps_fn, x, t, a_t, a_prev, loss_fn, strength)
            return x_prev, x0_new, GuidedStepRecord(i, t, r, 1, loss, c, cost)

        return travel(x_t, params.passes_for("mpgd"), one_pass, a_t, a_prev, generator, on_record)

    return run_loop(eps_fn, x_T, alphas_cumprod, timesteps, set(params.guided_indices(len(timesteps))), guided,
                    on_step)
