"""`doodl`: End-to-End Diffusion Latent Optimization (Wallace et al., ICCV 2023, section 3; official `gen()`).

DOODL optimises the starting noise x_T through the whole deterministic sampler: each iteration
runs the DDIM chain x_T -> x_0 over `timesteps`, takes g = dE(x_0)/dx_T, and steps

    step = clip(-lr g, -clip, clip)                 (element-wise)
    v    = step (first iteration), else momentum v + step
    x_T  = (x_T + v + perturbation xi) * ||x_T^0|| / ||.||     (norm kept as at the start, per sample)

then the final sample is the plain chain from the optimised x_T. DOODL gets constant memory
from an invertible sampler (EDICT). Here the gradient is the SYMPLECTIC ADJOINT through the
full chain: the sampling timesteps are the grid of `euler_forward` / `euler_backward` (the same
code as SAG's n-step estimate, ending at the clean sample), so g is the exact gradient of the
plain DDIM chain while one network graph is alive at a time: network memory is flat in the
number of steps; only the S states (|x| each) are stored. `params.gradient="direct"`
back-propagates through all S graphs instead (the reference; memory grows with S).

Costs per iteration: 2S - 1 evaluations (S - 1 without a graph; the last forward one keeps its
graph for the first VJP) and S VJPs; the final pass S more.
The shared knobs strength / start / end / passes / n / scheme do not apply: DOODL guides no
single step, and its chain is the DDIM (Euler) sampler itself.
Shapes: x_T (any, e.g. (B, C, F, h, w)); B is the first dimension, norms are per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dataclasses import dataclass, field

from ...method_registry import DOODLSettings
from ..adjoint import direct_gradient, symplectic_gradient
from ..ddim import EstimateGrid, alpha_at, noise_like
from ..evals import CheckedEps, FiniteGuard, GradientCost
from ..loop import RecordCallback, SAGParams, SampleResult, StepCallback, check_inputs, ddim_sample
from ..protocols import EpsFn, LossFn

CHAIN_GRADIENTS = ("symplectic", "direct")


def chain_grid(timesteps: list[int], alphas_cumprod: Tensor) -> EstimateGrid:
    """The whole sampler as one estimate grid: the sampling timesteps, then the clean end."""
    return EstimateGrid(tuple(timesteps), tuple(alpha_at(alphas_cumprod, t) for t in timesteps) + (1.0,))


def chain_gradient(forward: CheckedEps, backward: CheckedEps, x_T: Tensor, grid: EstimateGrid, loss_fn: LossFn,
                   method: str = "symplectic") -> tuple[Tensor, Tensor, Tensor]:
    """`(E(x_0), dE/dx_T, x_0)` through the DDIM chain from x_T (shapes of x_T; the loss 0-d).

    The chain is one estimate grid, so this is SAG's gradient over it (`adjoint`): "symplectic"
    runs a graph-free forward and one VJP per step in reverse (`backward` differentiates);
    "direct" back-propagates through the whole chain.
    """
    if method == "direct":
        result = direct_gradient(forward, x_T.detach(), grid, loss_fn)
    else:
        result = symplectic_gradient(forward, x_T, grid, loss_fn, backward=backward)
    return result.loss, result.grad, result.x0


def _per_sample_norm(x: Tensor) -> Tensor:
    """||x_b|| over all but the first dimension, shaped (B, 1, ..., 1) to broadcast against x."""
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


@dataclass
class DOODLRecord:
    """What one DOODL iteration did: the loss at the chain's end, the learning rate, the chain's
    steps (each an evaluation of the forward and one VJP), and the counts."""

    iteration: int
    loss: float
    lr: float
    chain_steps: int
    cost: dict[str, int] = field(default_factory=dict)


def sample_doodl(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], *, loss_fn: LossFn,
                 params: SAGParams, settings: DOODLSettings | None = None, generator: torch.Generator | None = None,
                 grad_eps_fn: EpsFn | None = None, on_step: StepCallback | None = None,
                 on_record: RecordCallback | None = None) -> SampleResult:
    """Optimise x_T for `settings.iterations`, then sample from it; one record per iteration.

    `on_step` watches the final pass only. `grad_eps_fn` (default eps_fn) is the network the
    VJPs differentiate; the chain itself always runs `eps_fn`.
    """
    settings = check_inputs(x_T, alphas_cumprod, timesteps, settings, DOODLSettings, loss_fn)
    if params.gradient not in CHAIN_GRADIENTS:
        raise ValueError(f"DOODL takes its gradient 'symplectic' (exact, one graph) or 'direct' (autograd), "
                         f"got {params.gradient!r}. Set guidance.gradient to one of those.")
    timesteps = list(timesteps)
    grid = chain_grid(timesteps, alphas_cumprod)
    x = x_T.detach().clone()
    start_norm = _per_sample_norm(x)
    velocity: Tensor | None = None
    records: list[DOODLRecord] = []
    for it in range(settings.iterations):
        cost, guard = GradientCost(), FiniteGuard()
        forward = CheckedEps(eps_fn, cost, guard)
        backward = forward if grad_eps_fn is None else CheckedEps(grad_eps_fn, cost, guard)
        loss, grad, _ = chain_gradient(forward, backward, x, grid, loss_fn, params.gradient)
        guard.check()  # the iteration's one synchronisation for NaN/inf
        step = (-settings.lr * grad).clamp(-settings.clip, settings.clip)
        velocity = step if velocity is None else settings.momentum * velocity + step
        x = x + velocity
        if settings.perturbation:
            x = x + settings.perturbation * noise_like(x, generator)
        x = x * (start_norm / _per_sample_norm(x))
        records.append(DOODLRecord(it, float(loss), settings.lr, grid.n, cost.as_dict()))
        if on_record is not None:
            on_record(records[-1])
    final = ddim_sample(eps_fn, x, alphas_cumprod, timesteps, on_step=on_step)
    return SampleResult(final.x0, records, final.stopped_at)
