"""The DDIM/Euler n-step clean estimate and its symplectic (exact, one-graph) backward.

Any chain of steps `x' = A_k x + B_k eps(x, s_k)` runs here: DDIM's, or another sampler's
(`EstimateGrid.coefficients`, e.g. LCM's); the backward is exact for whichever it is.
"""

from __future__ import annotations

from torch import Tensor

from .ddim import EstimateGrid
from .evals import CheckedEps
from .protocols import Evaluation


def euler_forward(
    eps: CheckedEps, x: Tensor, grid: EstimateGrid, first: Evaluation | None = None, keep_last_graph: bool = False
) -> tuple[Tensor, list[Tensor], Evaluation | None]:
    """Run the n DDIM steps from `x = x_{s_0}` to the clean end.

    Returns `(x0_hat, checkpoints, kept)` where `checkpoints[k] = x_{s_k}` (k = 0..n-1), all
    shaped like x. Under `torch.no_grad` nothing but these states is kept, except with
    `keep_last_graph`: the last evaluation then keeps its graph (`kept`) for the first VJP of
    the backward, which saves re-running it. `first`, when given, is the prediction at
    `x_{s_0}` already made by the caller (with or without its graph) and is not repeated.
    """
    checkpoints, kept = [], None
    for k in range(grid.n):
        checkpoints.append(x)
        last = keep_last_graph and k == grid.n - 1
        e, held = eps.predict(x, grid.timesteps[k], f"estimate step {k}", keep_graph=last,
                              first=first if k == 0 else None)
        kept = held if last else kept
        coef_x, coef_eps = grid.step_coefficients(k)
        x = coef_x * x + coef_eps * e
    return x, checkpoints, kept


def euler_backward(
    eps: CheckedEps, checkpoints: list[Tensor], grid: EstimateGrid, lam: Tensor, kept: Evaluation | None = None
) -> Tensor:
    """Symplectic-Euler adjoint: `lambda_k = A_k lambda_{k+1} + J_k^T (B_k lambda_{k+1})`, k = n-1..0.

    With `step_k(x) = A_k x + B_k eps(x, s_k)` (`grid.step_coefficients`). Each step is re-run from its
    checkpoint with a graph and differentiated once (the last one from `kept` when the forward
    kept it), so one network graph is alive at a time, and the result equals backprop through
    the discrete steps up to round-off. `lam` is dE/dx0_hat; returns dE/dx_{s_0} (shapes of x).
    """
    for k in reversed(range(grid.n)):
        coef_x, coef_eps = grid.step_coefficients(k)
        reuse = kept if k == grid.n - 1 else None
        lam = coef_x * lam + eps.vjp(checkpoints[k], grid.timesteps[k], coef_eps * lam, f"estimate step {k}", reuse)
    return lam
