"""The optional capabilities the guidance core looks for, declared.

A noise predictor is any callable `eps_fn(x, t) -> eps` (same shape as x). Some offer more,
and the core uses it when they do (checked with `isinstance`, never with `hasattr`):

* `ReferencedEps`: classifier-free guidance exposes `eps_c - eps_u`, which sets the guidance
  step size `rho = strength * RMS(eps_c - eps_u) / RMS(g)` (`guidance.loop.step_size`);
* `EpsWithVJP`: a predictor that computes its own vector-Jacobian product, e.g. one that runs a
  long clip as overlapping windows and differentiates window by window so that one window's
  graph is alive at a time;
* `LossWithGradient`: a loss that computes its value and gradient itself, e.g. decoding frames
  chunk by chunk so that one chunk's graph is alive at a time.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Protocol, runtime_checkable

from torch import Tensor

EpsFn = Callable[[Tensor, int], Tensor]
LossFn = Callable[[Tensor], Tensor]


@runtime_checkable
class ReferencedEps(Protocol):
    """A noise predictor that also returns the reference that normalises the guidance step."""

    def __call__(self, x: Tensor, t: int) -> Tensor:
        """The (CFG) noise prediction, shaped like x."""

    def eps_with_reference(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """`(eps, eps_c - eps_u)`, both shaped like x, from one network call."""


@runtime_checkable
class EpsWithVJP(Protocol):
    """A noise predictor that differentiates itself: `vjp(x, t, v) = (d eps(x, t) / d x)^T v`."""

    def __call__(self, x: Tensor, t: int) -> Tensor:
        """The noise prediction, shaped like x."""

    def vjp(self, x: Tensor, t: int, cotangent: Tensor) -> Tensor:
        """`(d eps / d x)^T cotangent`, shaped like x; builds and frees its own graphs."""


@runtime_checkable
class LossWithGradient(Protocol):
    """A loss on the clean estimate that computes its own gradient."""

    def __call__(self, x0: Tensor) -> Tensor:
        """The scalar loss."""

    def value_and_grad(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """`(E(x0), dE/dx0)`: a 0-d tensor and a tensor shaped like x0."""


class Evaluation(NamedTuple):
    """A noise prediction `eps = eps_fn(x, t)`; with a graph when `x` is a leaf requiring grad.

    The guided step hands its evaluation at `x_t` to the gradient so that it is not repeated;
    when it carries a graph, the first vector-Jacobian product reuses that graph.
    """

    x: Tensor
    eps: Tensor

    @property
    def has_graph(self) -> bool:
        return self.eps.requires_grad and self.x.requires_grad
