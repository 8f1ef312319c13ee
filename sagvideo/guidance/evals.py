"""Counted, checked noise-prediction calls and vector-Jacobian products.

Every evaluation goes through `CheckedEps`, which verifies the shape and finiteness of what
`eps_fn` returns and counts it, so the costs a benchmark reports are measured, not derived.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import NonFiniteError

EpsFn = Callable[[Tensor, int], Tensor]


@dataclass
class GradientCost:
    """What one guidance gradient cost: noise predictions without / with a graph, and VJPs."""

    eps_evals: int = 0
    eps_evals_graph: int = 0
    vjps: int = 0

    @property
    def total_evals(self) -> int:
        return self.eps_evals + self.eps_evals_graph

    def add(self, other: "GradientCost") -> None:
        self.eps_evals += other.eps_evals
        self.eps_evals_graph += other.eps_evals_graph
        self.vjps += other.vjps

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def require_finite(tensor: Tensor, what: str) -> None:
    """Raise `NonFiniteError` naming `what` when `tensor` holds NaN or inf."""
    if not bool(torch.isfinite(tensor).all()):
        raise NonFiniteError(
            f"{what} contains NaN or inf. Lower the guidance strength, use float32 "
            f"(model.dtype: float32), or check the model and loss for overflow."
        )


class CheckedEps:
    """Wraps `eps_fn(x, t)`: same-shape check, NaN/inf check naming the step, counting."""

    def __init__(self, eps_fn: EpsFn, cost: GradientCost):
        if not callable(eps_fn):
            raise TypeError(f"eps_fn must be callable as eps_fn(x, t) -> eps, got {type(eps_fn).__name__}.")
        self.eps_fn = eps_fn
        self.cost = cost

    def __call__(self, x: Tensor, t: int, where: str) -> Tensor:
        eps = self.eps_fn(x, t)
        if not isinstance(eps, Tensor) or eps.shape != x.shape:
            got = tuple(eps.shape) if isinstance(eps, Tensor) else type(eps).__name__
            raise ValueError(
                f"eps_fn returned {got} for x of shape {tuple(x.shape)} at timestep {t}; it must "
                f"return the noise prediction with the same shape as x."
            )
        if torch.is_grad_enabled() and eps.requires_grad:
            self.cost.eps_evals_graph += 1
        else:
            self.cost.eps_evals += 1
        require_finite(eps, f"the noise prediction at {where} (timestep {t})")
        return eps


def vjp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor, cost: GradientCost, where: str) -> Tensor:
    """`(d fn / d x)^T v` with a graph that lives only for this call. Shapes: x, v like fn(x)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x)
        (grad,) = torch.autograd.grad(out, x, v)
    cost.vjps += 1
    require_finite(grad, f"the adjoint after the VJP of {where}")
    return grad
