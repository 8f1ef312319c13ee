"""A second-order (Heun) clean estimate and its paired symplectic Runge-Kutta backward.

In the ODE variables a Heun step is `y' = y + h (d1 + d2) / 2` with `d1 = eps(y)` and
`d2 = eps(y + h d1)`; in x it is a DDIM step with the averaged prediction. The last step,
onto the clean end where the network cannot be evaluated, is an Euler step. `n` counts steps,
so a Heun estimate costs 2n - 1 evaluations.

The backward (Matsubara et al., NeurIPS 2021) differentiates each stage separately from the
stage states kept by the forward, holding one network graph at a time, and is exact for the
discrete scheme: with `x' = A x + B (d1 + d2)/2` and `x_p = A x + B d1`,
`mu = J2^T (B/2 lam')` and `lam = A (lam' + mu) + J1^T (B/2 lam' + B mu)`.
"""

from __future__ import annotations

from torch import Tensor

from .ddim import EstimateGrid, ddim_coefficients, ddim_step
from .evals import CheckedEps
from .protocols import Evaluation

Stage = tuple[Tensor, "Tensor | None"]


def heun_forward(
    eps: CheckedEps, x: Tensor, grid: EstimateGrid, first: Evaluation | None = None, keep_last_graph: bool = False
) -> tuple[Tensor, list[Stage], Evaluation | None]:
    """Heun steps from `x_{s_0}` to the clean end; returns `(x0_hat, stages, kept)`.

    `stages[k] = (x_{s_k}, x_pred)` with the Euler predictor state of step k (None on the last
    step, which is plain Euler). Tensors are shaped like x. `first` and `keep_last_graph` work
    as in `euler_forward` (the kept graph is the last, Euler, step's evaluation).
    """
    stages: list[Stage] = []
    kept = None
    for k in range(grid.n):
        a, a_next = grid.alphas[k], grid.alphas[k + 1]
        last = k == grid.n - 1
        where = f"Heun step {k} (Euler)" if last else f"Heun step {k} stage 1"
        d1, held = eps.predict(x, grid.timesteps[k], where, keep_graph=keep_last_graph and last,
                               first=first if k == 0 else None)
        if last:
            stages.append((x, None))
            kept = held
            x = ddim_step(x, d1, a, a_next)
            continue
        x_pred = ddim_step(x, d1, a, a_next)
        d2 = eps(x_pred, grid.timesteps[k + 1], f"Heun step {k} stage 2")
        stages.append((x, x_pred))
        x = ddim_step(x, 0.5 * (d1 + d2), a, a_next)
    return x, stages, kept


def heun_backward(
    eps: CheckedEps, stages: list[Stage], grid: EstimateGrid, lam: Tensor, kept: Evaluation | None = None
) -> Tensor:
    """Symplectic RK adjoint of `heun_forward`: dE/dx_{s_0} from `lam` = dE/dx0_hat."""
    for k in reversed(range(grid.n)):
        x, x_pred = stages[k]
        coef_x, coef_eps = ddim_coefficients(grid.alphas[k], grid.alphas[k + 1])
        t = grid.timesteps[k]
        if x_pred is None:
            lam = coef_x * lam + eps.vjp(x, t, coef_eps * lam, f"Heun step {k} (Euler)", kept)
            continue
        mu = eps.vjp(x_pred, grid.timesteps[k + 1], 0.5 * coef_eps * lam, f"Heun step {k} stage 2")
        lam = coef_x * (lam + mu) + eps.vjp(x, t, coef_eps * (0.5 * lam + mu), f"Heun step {k} stage 1")
    return lam
