"""The DDIM/Euler n-step clean estimate and its symplectic (exact, one-graph) backward."""

from __future__ import annotations

from torch import Tensor

from .ddim import EstimateGrid, ddim_step
from .evals import CheckedEps, GradientCost, vjp


def euler_forward(
    eps: CheckedEps, x: Tensor, grid: EstimateGrid, first_eps: Tensor | None = None
) -> tuple[Tensor, list[Tensor]]:
    """Run the n DDIM steps from `x = x_{s_0}` to the clean end.

    Returns `(x0_hat, checkpoints)` where `checkpoints[k] = x_{s_k}` (k = 0..n-1), all shaped
    like x. Under `torch.no_grad` nothing but these states is kept. `first_eps`, when given, is
    the prediction at `x_{s_0}` already computed by the caller and is not evaluated again.
    """
    checkpoints = []
    for k in range(grid.n):
        checkpoints.append(x)
        e = first_eps if (k == 0 and first_eps is not None) else eps(x, grid.timesteps[k], f"estimate step {k}")
        x = ddim_step(x, e, grid.alphas[k], grid.alphas[k + 1])
    return x, checkpoints


def euler_backward(
    eps: CheckedEps, checkpoints: list[Tensor], grid: EstimateGrid, lam: Tensor, cost: GradientCost
) -> Tensor:
    """Symplectic-Euler adjoint: `lambda_k = (d step_k / d x)^T lambda_{k+1}`, k = n-1..0.

    Each step is re-run from its checkpoint with a graph and differentiated once, so one network
    graph is alive at a time, and the result equals backprop through the discrete steps up to
    round-off. `lam` is dE/dx0_hat; returns dE/dx_{s_0} (shapes of x).
    """
    for k in reversed(range(grid.n)):
        t, a, a_next = grid.timesteps[k], grid.alphas[k], grid.alphas[k + 1]
        where = f"estimate step {k}"
        lam = vjp(lambda x: ddim_step(x, eps(x, t, where), a, a_next), checkpoints[k], lam, cost, where)
    return lam
