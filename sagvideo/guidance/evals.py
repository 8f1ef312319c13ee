"""Counted, checked noise-prediction calls and vector-Jacobian products.

Every evaluation goes through `CheckedEps`, which verifies the shape of what `eps_fn` returns
and counts it, so the costs a benchmark reports are measured, not derived. Finiteness is
watched without a host synchronisation per call: `FiniteGuard` keeps one device-side flag per
tensor and checks them all in one fused reduction when asked (once per guided pass), naming
the first tensor that went wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from ..errors import NonFiniteError
from .protocols import EpsFn, EpsWithVJP, Evaluation
from .vjp import input_vjp

NON_FINITE_FIX = ("Lower the guidance strength, use float32 (model.dtype: float32), or check the model "
                  "and loss for overflow.")


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


@dataclass
class FiniteGuard:
    """Device-side finiteness flags, checked together: one host sync per `check()`."""

    _flags: list[tuple[str, Tensor]] = field(default_factory=list)

    def watch(self, tensor: Tensor, what: str) -> None:
        """Remember whether `tensor` is all finite, without waiting for the device."""
        self._flags.append((what, torch.isfinite(tensor.detach()).all()))

    def check(self) -> None:
        """Raise `NonFiniteError` naming the first watched tensor with NaN or inf; then forget all."""
        if not self._flags:
            return
        names, flags = zip(*self._flags)
        self._flags.clear()
        device = flags[0].device
        ok = torch.stack([f.to(device, non_blocking=True) for f in flags])
        if bool(ok.all()):  # the one synchronisation
            return
        first = int((~ok).nonzero()[0])
        raise NonFiniteError(f"{names[first]} contains NaN or inf. {NON_FINITE_FIX}")


class CheckedEps:
    """Wraps `eps_fn(x, t)`: same-shape check, counting, and NaN/inf flags naming the step."""

    def __init__(self, eps_fn: EpsFn, cost: GradientCost, guard: FiniteGuard | None = None):
        if not callable(eps_fn):
            raise TypeError(f"eps_fn must be callable as eps_fn(x, t) -> eps, got {type(eps_fn).__name__}.")
        self.eps_fn = eps_fn
        self.cost = cost
        self.guard = guard if guard is not None else FiniteGuard()

    @property
    def differentiates_itself(self) -> bool:
        """True for an `EpsWithVJP` (e.g. windowed): its graphs cannot be kept between calls."""
        return isinstance(self.eps_fn, EpsWithVJP)

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
        self.guard.watch(eps, f"the noise prediction at {where} (timestep {t})")
        return eps

    def with_graph(self, x: Tensor, t: int, where: str) -> Evaluation:
        """Evaluate at `x` keeping the graph, for a VJP later (`vjp(..., kept=...)`)."""
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            return Evaluation(leaf, self(leaf, t, where))

    def predict(self, x: Tensor, t: int, where: str, *, keep_graph: bool = False,
                first: Evaluation | None = None) -> tuple[Tensor, Evaluation | None]:
        """(prediction, kept evaluation or None): reuse `first` when given, keep a graph when asked.

        A prediction carrying a graph is used as it is: under `no_grad` (a graph-free forward)
        what is built from it records nothing; under grad (the direct method) it extends the graph.
        An `EpsWithVJP` never keeps a graph (it differentiates itself later).
        """
        keep_graph = keep_graph and not self.differentiates_itself
        if first is not None:
            return first.eps, (first if keep_graph and first.has_graph else None)
        if keep_graph:
            kept = self.with_graph(x, t, where)
            return kept.eps, kept
        return self(x, t, where), None

    def vjp(self, x: Tensor, t: int, v: Tensor, where: str, kept: Evaluation | None = None) -> Tensor:
        """`(d eps(x, t) / d x)^T v` (shape of x): from the `kept` graph, or by one re-run with a graph.

        An `EpsWithVJP` computes it itself (counted as one evaluation with a graph).
        """
        if kept is not None and kept.has_graph:
            (grad,) = torch.autograd.grad(kept.eps, kept.x, v)
        elif self.differentiates_itself:
            grad = self.eps_fn.vjp(x.detach(), t, v)
            self.cost.eps_evals_graph += 1
        else:
            grad = input_vjp(lambda leaf: self(leaf, t, where), x, v)
        self.cost.vjps += 1
        self.guard.watch(grad, f"the adjoint after the VJP of {where}")
        return grad
