"""`cg`: classifier guidance (Dhariwal & Nichol, "Diffusion Models Beat GANs", NeurIPS 2021, Algorithm 2).

    eps_hat = eps(x_t) - s sqrt(1 - a_t) grad_{x_t} log p(y | x0_hat(x_t)),    x_{t-1} = DDIM(x_t, eps_hat)

The paper trains a classifier on noisy x_t; without one, the clean classifier reads the
one-step estimate `x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)` (the "one-step baseline" of
DOODL and FreeDoM), and the gradient goes through it and the network. With
`loss_fn = ClassifierLoss(...)` = -log p(y | x0) (summed over the batch), the step is
unnormalised: s = 1 is Bayes' rule. Any other loss works too (it is then `-log p` up to scale).
Costs per pass: one evaluation whose graph serves one VJP. Shapes: x (any).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...method_registry import CGSettings
from ..adjoint import gradient
from ..ddim import ddim_step, predict_x0
from ..evals import CheckedEps, FiniteGuard, GradientCost
from ..loop import (
    GuidedStep, GuidedStepRecord, RecordCallback, SAGParams, SampleResult, StepCallback, check_inputs,
    first_evaluation, run_loop, shares_first_evaluation, travel,
)
from ..protocols import EpsFn, LossFn


def sample_cg(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], *, loss_fn: LossFn,
              params: SAGParams, settings: CGSettings | None = None, generator: torch.Generator | None = None,
              grad_eps_fn: EpsFn | None = None, on_step: StepCallback | None = None,
              on_record: RecordCallback | None = None) -> SampleResult:
    """Classifier guidance on the steps `params` guides, `params.passes` each (default 1; `params.strength` unused)."""
    settings = check_inputs(x_T, alphas_cumprod, timesteps, settings, CGSettings, loss_fn)
    timesteps = list(timesteps)
    with_graph = shares_first_evaluation(eps_fn, grad_eps_fn)

    def guided(i: int, t: int, x_t: Tensor, a_t: float, a_prev: float) -> GuidedStep:
        scale = settings.scale * math.sqrt(1.0 - a_t)

        def one_pass(x: Tensor, r: int):
            cost, guard = GradientCost(), FiniteGuard()
            first, _ = first_evaluation(eps_fn, x, t, with_graph, cost, guard)
            result = gradient(CheckedEps(grad_eps_fn or eps_fn, cost, guard), x, t, alphas_cumprod, loss_fn, n=1,
                              method="symplectic", scheme="euler", first=first if grad_eps_fn is None else None)
            guard.check()
            eps_hat = first.eps.detach() + scale * result.grad  # loss = -log p, so +grad E = -grad log p
            record = GuidedStepRecord(i, t, r, 1, float(result.loss), scale, dict(cost.as_dict(), loss_grads=1))
            return ddim_step(x, eps_hat, a_t, a_prev), predict_x0(x, eps_hat, a_t), record

        return travel(x_t, params.passes_for("cg"), one_pass, a_t, a_prev, generator, on_record)

    return run_loop(eps_fn, x_T, alphas_cumprod, timesteps, set(params.guided_indices(len(timesteps))), guided,
                    on_step)
