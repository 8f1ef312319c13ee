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
from .evals import CheckedEps, GradientCost, vjp


def heun_forward(
    eps: CheckedEps, x: Tensor, grid: EstimateGrid, first_eps: Tensor | None = None
) -> tuple[Tensor, list[tuple[Tensor, Tensor | None]]]:
    """Heun steps from `x_{s_0}` to the clean end; returns `(x0_hat, stages)`.

    `stages[k] = (x_{s_k}, x_pred)` with the Euler predictor state of step k (None on the last
    step, which is plain Euler). Tensors are shaped like x.
    """
    stages: list[tuple[Tensor, Tensor | None]] = []
    for k in range(grid.n):
        a, a_next = grid.alphas[k], grid.alphas[k + 1]
        d1 = first_eps if (k == 0 and first_eps is not None) else eps(x, grid.timesteps[k], f"Heun step {k} stage 1")
        if k == grid.n - 1:
            stages.append((x, None))
            x = ddim_step(x, d1, a, a_next)
            continue
        x_pred = ddim_step(x, d1, a, a_next)
        d2 = eps(x_pred, grid.timesteps[k + 1], f"Heun step {k} stage 2")
        stages.append((x, x_pred))
        x = ddim_step(x, 0.5 * (d1 + d2), a, a_next)
    return x, stages


def heun_backward(
    eps: CheckedEps,
    stages: list[tuple[Tensor, Tensor | None]],
    grid: EstimateGrid,
    lam: Tensor,
    cost: GradientCost,
) -> Tensor:
    """Symplectic RK adjoint of `heun_forward`: dE/dx_{s_0} from `lam` = dE/dx0_hat."""
    for k in reversed(range(grid.n)):
        x, x_pred = stages[k]
        coef_x, coef_eps = ddim_coefficients(grid.alphas[k], grid.alphas[k + 1])
        t = grid.timesteps[k]
        if x_pred is None:
            where = f"Heun step {k} (Euler)"
            lam = vjp(lambda z: ddim_step(z, eps(z, t, where), grid.alphas[k], grid.alphas[k + 1]), x, lam, cost, where)
            continue
        t_next = grid.timesteps[k + 1]
        w2 = f"Heun step {k} stage 2"
        mu = vjp(lambda z: eps(z, t_next, w2), x_pred, 0.5 * coef_eps * lam, cost, w2)
        w1 = f"Heun step {k} stage 1"
        lam = coef_x * (lam + mu) + vjp(
            lambda z: eps(z, t, w1), x, coef_eps * (0.5 * lam + mu), cost, w1
        )
    return lam
