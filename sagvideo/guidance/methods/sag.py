"""`sag`: Symplectic Adjoint Guidance (Pan et al., 2023), one method beside the others.

Per guided pass the network is evaluated at `x_t` once: that prediction makes the DDIM step,
sets the step size and starts the n-step clean estimate (with its graph when it is the
estimate's only evaluation, n = 1). The exact gradient `g` of the loss through the estimate
comes from `adjoint.gradient` (symplectic adjoint: one graph alive at a time), then
`x_{t-1} = DDIM(x_t, eps) - rho g`, `params.passes` times with re-noising (time travel).
`sample` is also the plain DDIM sampler when no loss is given. See README: Guidance methods.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...method_registry import SAGSettings
from ..adjoint import gradient, sampler_grid
from ..ddim import alpha_at
from ..evals import CheckedEps, FiniteGuard, GradientCost
from ..loop import (
    GuidedStep, GuidedStepRecord, RecordCallback, SAGParams, SampleResult, StepCallback, check_inputs,
    first_evaluation, run_loop, shares_first_evaluation, step_size, travel,
)
from ..protocols import EpsFn, LossFn
from ..schedulers import DDIM, Sampler


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
    on_record: RecordCallback | None = None,
    sampler: Sampler = DDIM,
) -> GuidedStep:
    """`x_{t-1} = DDIM(x_t, eps(x_t)) - rho g`, `passes` times with re-noising in between.

    With another `sampler` its step replaces DDIM's, and the estimate chains its steps (LCM).

    x_t: (any shape, e.g. (B, C, F, H, W)). `grad_eps_fn` (default eps_fn) is the network
    differentiated for g, e.g. the conditional branch only. Noise for time travel comes from
    `generator`. `on_record` is called after each pass (e.g. to show progress). Per pass the
    network runs 2n - 1 times with n VJPs (Euler, symplectic, one window; see `sag_gradient`).
    """
    a_t = alpha_at(alphas_cumprod, t)
    grad_fn = grad_eps_fn or eps_fn
    evaluated = sampler_grid(t, n, alphas_cumprod, sampler).n  # fewer than n when t is too small
    with_graph = shares_first_evaluation(eps_fn, grad_eps_fn) and (
        params.gradient == "direct" or (params.gradient == "symplectic" and evaluated == 1))

    def one_pass(x: Tensor, r: int) -> tuple[Tensor, Tensor, GuidedStepRecord]:
        cost, guard = GradientCost(), FiniteGuard()
        first, reference = first_evaluation(eps_fn, x, t, with_graph, cost, guard)
        result = gradient(CheckedEps(grad_fn, cost, guard), x, t, alphas_cumprod, loss_fn, n=n,
                          method=params.gradient, scheme=params.scheme, first=first if grad_eps_fn is None else None,
                          sampler=sampler)
        guard.check()  # the pass's one synchronisation for NaN/inf
        rho = step_size(reference, result.grad, params.strength)
        x_prev = sampler.step(x, first.eps.detach(), t, a_t, a_prev, generator) - rho * result.grad
        return x_prev, result.x0, GuidedStepRecord(index, t, r, evaluated, float(result.loss), rho, cost.as_dict())

    return travel(x_t, params.passes_for("sag"), one_pass, a_t, a_prev, generator, on_record)


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
    on_step: StepCallback | None = None,
    on_record: RecordCallback | None = None,
    sampler: Sampler = DDIM,
) -> SampleResult:
    """A whole DDIM (eta = 0) trajectory, or `sampler`'s, over `timesteps` (high to low), guided where `params` says.

    x_T: initial noise (any shape). Returns the clean sample (the last step goes to alpha-bar 1)
    and the guided-step records; `on_step` as in `run_loop` (on guided steps it sees the n-step
    estimate), `on_record(record)` after every guided pass.
    """
    ns = params.guided_ns(len(timesteps)) if (params and loss_fn is not None) else {}

    def sag_step(i: int, t: int, x_t: Tensor, a_t: float, a_prev: float) -> GuidedStep:
        return guided_step(eps_fn, x_t, t, a_prev, alphas_cumprod, loss_fn, params, n=ns[i], index=i, generator=generator,
                           grad_eps_fn=grad_eps_fn, on_record=on_record, sampler=sampler)

    return run_loop(eps_fn, x_T, alphas_cumprod, timesteps, set(ns), sag_step, on_step, sampler, generator)


def sample_sag(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], *, loss_fn: LossFn,
               params: SAGParams, settings: SAGSettings | None = None, generator: torch.Generator | None = None,
               grad_eps_fn: EpsFn | None = None, on_step: StepCallback | None = None,
               on_record: RecordCallback | None = None, sampler: Sampler = DDIM) -> SampleResult:
    """SAG over `timesteps` (high to low) from x_T (any shape, e.g. (B, C, F, h, w)); see `sample`."""
    check_inputs(x_T, alphas_cumprod, timesteps, settings, SAGSettings, loss_fn)
    return sample(eps_fn, x_T, alphas_cumprod, list(timesteps), loss_fn=loss_fn, params=params, generator=generator,
                  grad_eps_fn=grad_eps_fn, on_step=on_step, on_record=on_record, sampler=sampler)
