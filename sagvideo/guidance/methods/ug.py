"""`ug`: Universal Guidance (Bansal et al., "Universal Guidance for Diffusion Models", ICLR 2024, Algorithm 1).

Per guided step, k = `params.passes` passes (self-recurrence; default 6), each:

1. forward guidance (their eq. 6): `eps_hat = eps(x_t) + s(t) grad_{x_t} E(x0_hat(x_t))` with the
   one-step estimate `x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)` and, as in the official
   code, `s(t) = s sqrt(1 - a_t)`. The paper's s is in its loss's units; here the term is
   normalised like SAG's step: it moves x_{t-1} by `forward_scale sqrt(1 - a_t) rho g`, with
   `rho = strength RMS(eps_c - eps_u) / RMS(g)` (method_registry.UGSettings);
2. backward guidance (their eq. 8-9): m = `backward_steps` Adam steps (lr `backward_lr`, the
   official code's optimiser) on `Delta` minimising `E(x0_hat + Delta)`, x0_hat taken from
   eps_hat, then `eps_hat -= sqrt(a_t / (1 - a_t)) Delta`, which moves the clean estimate by
   exactly Delta;
3. `x_{t-1} = DDIM(x_t, eps_hat)`; between passes `x_t = sqrt(a_t/a_{t-1}) x_{t-1} + sqrt(1 - a_t/a_{t-1}) xi`.

Costs per pass: one evaluation (its graph serves the one VJP) and `backward_steps` loss
gradients, which never touch the network. Shapes: x (any, e.g. (B, C, F, h, w)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...method_registry import UGSettings
from ..adjoint import gradient, loss_and_lambda
from ..ddim import ddim_coefficients, ddim_step, predict_x0
from ..evals import CheckedEps, FiniteGuard, GradientCost
from ..loop import (
    GuidedStep, GuidedStepRecord, RecordCallback, SAGParams, SampleResult, StepCallback, check_inputs,
    first_evaluation, run_loop, shares_first_evaluation, step_size, travel,
)
from ..protocols import EpsFn, LossFn

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which the official code uses
ADAM_EPS = 1e-8


def backward_guidance(loss_fn: LossFn, x0: Tensor, steps: int, lr: float, guard: FiniteGuard | None = None) -> Tensor:
    """Delta (shape of x0) after `steps` Adam steps on `E(x0 + Delta)` from Delta = 0 (UG eq. 8)."""
    delta = torch.zeros_like(x0)
    m, v = torch.zeros_like(x0), torch.zeros_like(x0)
    b1, b2 = ADAM_BETAS
    for k in range(1, steps + 1):
        _, g = loss_and_lambda(loss_fn, x0 + delta, guard)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        delta = delta - lr * (m / (1 - b1**k)) / ((v / (1 - b2**k)).sqrt() + ADAM_EPS)
    return delta


def _ug_pass(eps_fn: EpsFn, grad_eps_fn: EpsFn | None, x_t: Tensor, t: int, a_t: float, a_prev: float,
             alphas_cumprod: Tensor, loss_fn: LossFn, params: SAGParams, settings: UGSettings,
             with_graph: bool) -> tuple[Tensor, Tensor, float, float, dict]:
    """One pass: (x_{t-1}, the guided clean estimate, loss at x0_hat, rho, cost)."""
    cost, guard = GradientCost(), FiniteGuard()
    first, reference = first_evaluation(eps_fn, x_t, t, with_graph, cost, guard)
    result = gradient(CheckedEps(grad_eps_fn or eps_fn, cost, guard), x_t, t, alphas_cumprod, loss_fn, n=1,
                      method="symplectic", scheme="euler", first=first if grad_eps_fn is None else None)
    eps = first.eps.detach()
    _, coef_eps = ddim_coefficients(a_t, a_prev)  # < 0: more predicted noise lowers x_{t-1}
    rho = step_size(reference, result.grad, params.strength)
    push = settings.forward_scale * math.sqrt(1.0 - a_t) * rho  # how far x_{t-1} moves along -g
    eps_hat = eps + (push / -coef_eps) * result.grad
    x0_hat = predict_x0(x_t, eps_hat, a_t)
    if settings.backward_steps:
        delta = backward_guidance(loss_fn, x0_hat, settings.backward_steps, settings.backward_lr, guard)
        eps_hat = eps_hat - math.sqrt(a_t / (1.0 - a_t)) * delta
        x0_hat = x0_hat + delta
    guard.check()  # the pass's one synchronisation for NaN/inf
    costs = dict(cost.as_dict(), loss_grads=1 + settings.backward_steps)
    return ddim_step(x_t, eps_hat, a_t, a_prev), x0_hat, float(result.loss), rho, costs


def sample_ug(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], *, loss_fn: LossFn,
              params: SAGParams, settings: UGSettings | None = None, generator: torch.Generator | None = None,
              grad_eps_fn: EpsFn | None = None, on_step: StepCallback | None = None,
              on_record: RecordCallback | None = None) -> SampleResult:
    """Universal Guidance on the steps `params` guides, `params.passes` self-recurrence passes each (default 6)."""
    settings = check_inputs(x_T, alphas_cumprod, timesteps, settings, UGSettings, loss_fn)
    timesteps = list(timesteps)
    # the one evaluation keeps its graph for the VJP unless the network differentiates itself
    with_graph = shares_first_evaluation(eps_fn, grad_eps_fn)

    def guided(i: int, t: int, x_t: Tensor, a_t: float, a_prev: float) -> GuidedStep:
        def one_pass(x: Tensor, r: int):
            x_prev, x0_hat, loss, rho, cost = _ug_pass(eps_fn, grad_eps_fn, x, t, a_t, a_prev, alphas_cumprod,
                                                       loss_fn, params, settings, with_graph)
            return x_prev, x0_hat, GuidedStepRecord(i, t, r, 1, loss, rho, cost)

        return travel(x_t, params.passes_for("ug"), one_pass, a_t, a_prev, generator, on_record)

    return run_loop(eps_fn, x_T, alphas_cumprod, timesteps, set(params.guided_indices(len(timesteps))), guided,
                    on_step)
