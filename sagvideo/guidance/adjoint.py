"""The guidance gradient `g = dE/dx_t` through the n-step clean estimate, three ways.

- `symplectic`: forward without a graph keeping only the states, then one VJP per network
  evaluation in reverse (exact; one graph alive at a time; memory flat in n).
- `direct`: autograd through all steps (exact; n graphs alive; the reference).
- `adjoint`: the continuous adjoint (Chen et al. 2018), states re-integrated backward instead of
  stored (approximate; for comparison).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..defaults import GRADIENT_METHODS, SCHEMES
from .ddim import EstimateGrid, estimate_grid
from .euler import euler_backward, euler_forward
from .evals import CheckedEps, FiniteGuard, GradientCost
from .heun import heun_backward, heun_forward
from .protocols import EpsFn, Evaluation, LossFn, LossWithGradient
from .schedulers import Sampler

METHODS = GRADIENT_METHODS
_FORWARD = {"euler": euler_forward, "heun": heun_forward}
_BACKWARD = {"euler": euler_backward, "heun": heun_backward}


@dataclass
class GradientResult:
    """One guidance gradient: `grad` = dE/dx_t (shape of x_t), the loss (0-d), the clean estimate."""

    grad: Tensor
    loss: Tensor
    x0: Tensor


def _check_inputs(x_t: Any, t: Any, alphas_cumprod: Any, loss_fn: Any, n: Any, method: str, scheme: str) -> int:
    """Validate at the door; returns t as an int."""
    if not isinstance(x_t, Tensor) or not x_t.is_floating_point():
        raise TypeError(f"x_t must be a floating-point torch.Tensor, got {type(x_t).__name__}.")
    if not isinstance(alphas_cumprod, Tensor) or alphas_cumprod.dim() != 1 or len(alphas_cumprod) == 0:
        raise TypeError(
            "alphas_cumprod must be a non-empty 1-D torch.Tensor (the scheduler's alphas_cumprod), "
            f"got {type(alphas_cumprod).__name__}"
            + (f" of shape {tuple(alphas_cumprod.shape)}" if isinstance(alphas_cumprod, Tensor) else "")
            + "."
        )
    if isinstance(t, Tensor) and t.numel() == 1 and not t.is_floating_point():
        t = int(t.item())
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"t must be an integer timestep, got {t!r}.")
    if not 0 <= t < len(alphas_cumprod):
        raise ValueError(
            f"t={t} is outside the schedule: timesteps run from 0 to {len(alphas_cumprod) - 1} "
            f"(len(alphas_cumprod) - 1). Pass a timestep of the schedule."
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (noise-prediction evaluations in the clean estimate), got {n!r}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}.")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}.")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(x0_hat) -> scalar, got {type(loss_fn).__name__}.")
    return t


def _scalar_loss(loss: Any, guard: FiniteGuard) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1 or loss.dim() > 1:
        got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(
            f"loss_fn must return a scalar tensor, got {got}. Reduce it, e.g. with .mean() or .sum()."
        )
    guard.watch(loss, "the guidance loss")
    return loss.reshape(())


def loss_and_lambda(loss_fn: LossFn, x0: Tensor, guard: FiniteGuard | None = None) -> tuple[Tensor, Tensor]:
    """`(E(x0), dE/dx0)` for a clean estimate x0 (any shape).

    A `LossWithGradient` (e.g. one that decodes frames in chunks) computes both itself; a plain
    callable is differentiated with autograd. Non-finite values are flagged on `guard` (checked
    at once here when no guard is given).
    """
    own_guard = guard is None
    guard = FiniteGuard() if guard is None else guard
    x0 = x0.detach()
    if isinstance(loss_fn, LossWithGradient):
        loss, lam = loss_fn.value_and_grad(x0)
        loss = _scalar_loss(loss, guard)
    else:
        leaf = x0.requires_grad_(True)
        with torch.enable_grad():
            loss = _scalar_loss(loss_fn(leaf), guard)
            if not loss.requires_grad:
                raise ValueError("loss_fn's result does not depend on x0_hat (no gradient); check the loss.")
            (lam,) = torch.autograd.grad(loss, leaf)
    if lam.shape != x0.shape:
        raise ValueError(f"the loss gradient has shape {tuple(lam.shape)}, expected {tuple(x0.shape)}.")
    guard.watch(lam, "the loss gradient dE/dx0_hat")
    if own_guard:
        guard.check()
    return loss.detach(), lam.to(x0.dtype)


def symplectic_gradient(eps: CheckedEps, x_t: Tensor, grid: EstimateGrid, loss_fn: LossFn, scheme: str = "euler",
                        first: Evaluation | None = None, backward: CheckedEps | None = None) -> GradientResult:
    """dE/dx_t through the steps of `grid` from x_t (any shape): a graph-free forward keeping the
    states, then one VJP per evaluation in reverse. `backward` (default `eps`) is the network the
    VJPs differentiate; the forward's last evaluation keeps its graph for the first VJP only when
    the two are the same."""
    backward = eps if backward is None else backward
    with torch.no_grad():
        x0, saved, kept = _FORWARD[scheme](eps, x_t.detach(), grid, first, keep_last_graph=backward is eps)
    loss, lam = loss_and_lambda(loss_fn, x0, eps.guard)
    return GradientResult(_BACKWARD[scheme](backward, saved, grid, lam, kept), loss, x0)


def direct_gradient(eps: CheckedEps, x_t: Tensor, grid: EstimateGrid, loss_fn: LossFn, scheme: str = "euler",
                    first: Evaluation | None = None) -> GradientResult:
    """dE/dx_t by autograd through every step of `grid` (all graphs alive at once: the reference)."""
    shared = first is not None and first.has_graph
    leaf = first.x if shared else x_t.detach().requires_grad_(True)
    with torch.enable_grad():
        x0, _, _ = _FORWARD[scheme](eps, leaf, grid, first if shared else None)
        loss, lam = loss_and_lambda(loss_fn, x0, eps.guard)
        (grad,) = torch.autograd.grad(x0, leaf, lam)
    eps.cost.vjps += 1
    eps.guard.watch(grad, "the gradient back-propagated through the estimate")
    return GradientResult(grad, loss, x0.detach())


def _sigma(a: float) -> float:
    return math.sqrt((1.0 - a) / a)


def _continuous_adjoint(eps: CheckedEps, x_t, grid: EstimateGrid, loss_fn, scheme, first) -> GradientResult:
    """Euler integration of `da/dsigma = -a^T d eps/dy` and of y backward from the clean end.

    In `y = x / sqrt(alpha)`: state and adjoint go from sigma = 0 back to sigma_0 together, the
    network evaluated at the end of each interval on the re-integrated state (at the clean end
    it is evaluated at timestep 0, the nearest the network knows). Approximate: the error is
    O(h), so it shrinks as n grows.
    """
    with torch.no_grad():
        x0, _, _ = _FORWARD[scheme](eps, x_t.detach(), grid, first)
    loss, lam = loss_and_lambda(loss_fn, x0, eps.guard)
    y, adj = x0, lam  # alpha = 1 at the clean end, so y = x and dE/dy = dE/dx there
    for k in reversed(range(grid.n)):
        c_end = math.sqrt(grid.alphas[k + 1])
        t_end = grid.timestep(k + 1)
        t_end = 0 if t_end is None else t_end
        h = _sigma(grid.alphas[k + 1]) - _sigma(grid.alphas[k])  # negative: sigma falls forward
        where = f"continuous-adjoint step {k}"
        # eps(c * y) as a function of y: its VJP is c times the VJP at x = c * y
        f, kept = eps.predict(c_end * y, t_end, where, keep_graph=True)
        adj_jac = c_end * eps.vjp(c_end * y, t_end, adj, where, kept)
        y = (y - h * f).detach()
        adj = adj + h * adj_jac
    return GradientResult(adj / math.sqrt(grid.alphas[0]), loss, x0)


def sampler_grid(t: int, n: int, alphas_cumprod: Tensor, sampler: Sampler | None) -> EstimateGrid:
    """The estimate's grid from timestep t: DDIM steps, or `sampler`'s own when its step is not DDIM's."""
    own = sampler is not None and not sampler.steps_like_ddim
    return estimate_grid(t, n, alphas_cumprod, sampler.coefficients if own else None)


def gradient(
    eps: CheckedEps, x_t: Tensor, t: int, alphas_cumprod: Tensor, loss_fn: LossFn, *,
    n: int, method: str, scheme: str, first: Evaluation | None = None, sampler: Sampler | None = None,
) -> GradientResult:
    """`sag_gradient` for callers that hold a `CheckedEps` (and so its costs and finiteness flags).

    The estimate chains `sampler`'s deterministic steps (default DDIM; LCM's boundary-condition
    steps under `lcm`, Euler only). Nothing is checked for finiteness here: the caller runs
    `eps.guard.check()` once per pass.
    """
    grid = sampler_grid(t, n, alphas_cumprod, sampler)
    if grid.coefficients and (scheme != "euler" or method == "adjoint"):
        raise ValueError(f"the {sampler.name} sampler's clean estimate has Euler steps and an exact gradient only: "
                         f"use scheme='euler' and method 'symplectic' or 'direct' (got {scheme!r}, {method!r}).")
    if first is not None and first.eps.shape != x_t.shape:
        raise ValueError(f"the first prediction has shape {tuple(first.eps.shape)}, expected x_t's {tuple(x_t.shape)}.")
    run = {"symplectic": symplectic_gradient, "direct": direct_gradient, "adjoint": _continuous_adjoint}[method]
    result = run(eps, x_t, grid, loss_fn, scheme, first)
    result.grad = result.grad.to(x_t.dtype)
    return result


def sag_gradient(
    eps_fn: EpsFn,
    x_t: Tensor,
    t: int,
    alphas_cumprod: Tensor,
    loss_fn: LossFn,
    *,
    n: int = 4,
    method: str = "symplectic",
    scheme: str = "euler",
    first: Evaluation | Tensor | None = None,
    cost: GradientCost | None = None,
    sampler: Sampler | None = None,
) -> tuple[Tensor, Tensor]:
    """Gradient of `loss_fn(x0_hat)` w.r.t. `x_t`, x0_hat the n-step clean estimate from `(x_t, t)`.

    Args:
        eps_fn: `eps_fn(x, t) -> eps`, same shape as x (any shape, e.g. (B, C, F, H, W)); an
            `EpsWithVJP` differentiates itself (e.g. window by window).
        x_t: the noisy sample at timestep `t`.
        t: integer timestep, 0 <= t < len(alphas_cumprod).
        alphas_cumprod: 1-D tensor of the scheduler's alpha-bar.
        loss_fn: `loss_fn(x0_hat) -> scalar tensor`, or a `LossWithGradient`.
        n: noise-prediction evaluations (Euler; n = 1 is the one-step estimate) or Heun steps.
        method: "symplectic" (exact, memory flat in n), "direct" (autograd), "adjoint" (approximate).
        scheme: "euler" (DDIM) or "heun" (second order).
        first: the prediction at (x_t, t) if the caller already has it: a tensor, or an
            `Evaluation` whose graph (if any) the first VJP reuses. Saves one evaluation.
        cost: a `GradientCost` to add the evaluation and VJP counts to.
        sampler: whose steps the estimate chains (default DDIM; see `guidance.schedulers`).

    Cost (symplectic, Euler): 2n - 1 evaluations and n VJPs; the last evaluation of the forward
    keeps its graph for the first VJP, so one graph is alive at a time. An `EpsWithVJP` keeps
    no graph between calls: 2n evaluations.

    Returns:
        `(grad, loss)`: grad shaped like x_t, loss a detached 0-d tensor.
    """
    t = _check_inputs(x_t, t, alphas_cumprod, loss_fn, n, method, scheme)
    eps = CheckedEps(eps_fn, cost if cost is not None else GradientCost())
    if isinstance(first, Tensor):
        first = Evaluation(x_t, first.detach())
    result = gradient(eps, x_t, t, alphas_cumprod, loss_fn, n=n, method=method, scheme=scheme, first=first,
                      sampler=sampler)
    eps.guard.check()
    return result.grad, result.loss


def clean_estimate(
    eps_fn: EpsFn, x_t: Tensor, t: int, alphas_cumprod: Tensor, *, n: int = 1, scheme: str = "euler",
    sampler: Sampler | None = None,
) -> Tensor:
    """The n-step clean estimate x0_hat from `(x_t, t)` (shape of x_t); differentiable under grad."""
    t = _check_inputs(x_t, t, alphas_cumprod, lambda x: x, n, "direct", scheme)
    eps = CheckedEps(eps_fn, GradientCost())
    x0, _, _ = _FORWARD[scheme](eps, x_t, sampler_grid(t, n, alphas_cumprod, sampler))
    eps.guard.check()
    return x0
