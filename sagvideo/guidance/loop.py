"""What every guidance method shares: where to guide, the step size, the DDIM loop, time travel, records.

Model-agnostic: it knows `eps_fn(x, t)` and tensors. `run_loop` is the DDIM (eta = 0) loop with
the guided step passed in: unguided steps run under `torch.inference_mode`, finiteness is
checked once per guided step and at the end, `on_step(i, t, x_t, x0_hat, loss)` may stop
sampling by returning False. `travel` runs a guided step's passes with re-noising in between.
A `ReferencedEps` (classifier-free guidance, offering `eps_c - eps_u`) gets the normalised
step size `rho = strength * RMS(eps_c - eps_u) / RMS(g)`; a plain `eps_fn` uses RMS(eps).
The methods themselves live in `guidance/methods/` (SAG among them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from ..defaults import GRADIENT_METHODS, SCHEMES, guided_indices, guided_ns
from ..method_registry import METHODS
from .ddim import alpha_at, renoise
from .evals import FiniteGuard, GradientCost
from .protocols import EpsFn, EpsWithVJP, Evaluation, ReferencedEps
from .schedulers import DDIM, Sampler


@dataclass(frozen=True)
class SAGParams:
    """Where and how hard to guide. Fractions make a config transfer across step counts."""

    strength: float = 1.5
    start: float = 0.3
    end: float = 0.7
    n: int = 4
    adaptive_n: bool = False
    passes: int | None = None  # passes per guided step; None: the method's default (method_registry)
    gradient: str = "symplectic"  # how g is taken through the estimate: symplectic | direct | adjoint
    scheme: str = "euler"

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"need 0 <= start <= end <= 1 for the guided range, got start={self.start}, end={self.end}.")
        if self.n < 1 or (self.passes is not None and self.passes < 1):
            raise ValueError(f"n and passes must be >= 1, got n={self.n}, passes={self.passes}.")
        if self.gradient not in GRADIENT_METHODS or self.scheme not in SCHEMES:
            raise ValueError(f"gradient must be one of {GRADIENT_METHODS} and scheme one of {SCHEMES}.")

    def guided_indices(self, num_steps: int) -> range:
        """Step indices i (0 = noisiest) with start <= i / num_steps < end."""
        return guided_indices(self.start, self.end, num_steps)

    def guided_ns(self, num_steps: int) -> dict[int, int]:
        """Guided step index -> n: constant, or with adaptive_n linear from n (first) down to 1 (last)."""
        return guided_ns(self.start, self.end, num_steps, self.n, self.adaptive_n)

    def passes_for(self, method: str) -> int:
        """Passes per guided step for `method`: `passes`, else the method's default."""
        return METHODS[method].passes(self.passes)


def rms(x: Tensor) -> Tensor:
    """Root mean square over the whole tensor, in float32 or better (fp16 would overflow)."""
    return x.to(torch.promote_types(x.dtype, torch.float32)).pow(2).mean().sqrt()


def step_size(reference: Tensor, grad: Tensor, strength: float) -> float:
    """`rho = strength * RMS(reference) / RMS(grad)`; 0 when the gradient vanishes."""
    g = float(rms(grad))
    return 0.0 if g == 0.0 else strength * float(rms(reference)) / g


def eps_and_reference(eps_fn: EpsFn, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
    """(eps, reference for rho): from `eps_with_reference` for a `ReferencedEps`, else (eps, eps)."""
    if isinstance(eps_fn, ReferencedEps):
        return eps_fn.eps_with_reference(x, t)
    eps = eps_fn(x, t)
    return eps, eps


@dataclass
class GuidedStepRecord:
    """What one pass of a guided step did, for the report and the benchmarks.

    index: the step (0 = noisiest); repeat: the pass (0-based); n: evaluations in its clean
    estimate; loss at that estimate; rho: the scale its update took, in the method's terms (SAG,
    FreeDoM and UG's rho, MPGD's c_t, CG's s sqrt(1 - a_t), GFCG's mean w_t); cost: the counts.
    """

    index: int
    timestep: int
    repeat: int
    n: int
    loss: float
    rho: float
    cost: dict[str, int] = field(default_factory=dict)


# on_record(record) after every guided pass (or DOODL iteration); records are each method's own type
RecordCallback = Callable[[Any], Any]


class GuidedStep(NamedTuple):
    """`x_prev` = x_{t-1} (shape of x_t), one record per pass, the last pass's clean estimate."""

    x_prev: Tensor
    records: list[GuidedStepRecord]
    x0_hat: Tensor


def shares_first_evaluation(eps_fn: EpsFn, grad_eps_fn: EpsFn | None) -> bool:
    """Whether the prediction at x_t may carry the graph the gradient's first VJP reuses: only when
    the gradient goes through the same network and that network does not differentiate itself."""
    return grad_eps_fn is None and not isinstance(eps_fn, EpsWithVJP)


def first_evaluation(eps_fn: EpsFn, x_t: Tensor, t: int, with_graph: bool, cost: GradientCost,
                      guard: FiniteGuard) -> tuple[Evaluation, Tensor]:
    """The prediction at x_t (with its graph when asked) and the reference for rho."""
    if with_graph:
        leaf = x_t.detach().requires_grad_(True)
        with torch.enable_grad():
            eps, reference = eps_and_reference(eps_fn, leaf, t)
        cost.eps_evals_graph += 1
        first = Evaluation(leaf, eps)
    else:
        with torch.no_grad():
            eps, reference = eps_and_reference(eps_fn, x_t, t)
        cost.eps_evals += 1
        first = Evaluation(x_t, eps)
    guard.watch(eps, f"the noise prediction at sampling timestep {t}")
    return first, reference.detach()


# one_pass(x_t, repeat) -> (x_prev, x0_hat, record)
PassFn = Callable[[Tensor, int], "tuple[Tensor, Tensor, GuidedStepRecord]"]


def travel(x_t: Tensor, passes: int, one_pass: PassFn, a_t: float, a_prev: float,
           generator: torch.Generator | None, on_record: RecordCallback | None) -> GuidedStep:
    """Run `passes` guided passes at one step, re-noising x_{t-1} back to x_t between them.

    The re-noising is the time travel / self-recurrence of SAG, FreeDoM and Universal Guidance:
    `x_t = sqrt(a_t / a_prev) x_{t-1} + sqrt(1 - a_t / a_prev) xi`, xi from `generator`.
    """
    records = []
    for r in range(passes):
        x_prev, x0_hat, record = one_pass(x_t, r)
        records.append(record)
        if on_record is not None:
            on_record(record)
        if r < passes - 1:
            x_t = renoise(x_prev, a_t, a_prev, generator)
    return GuidedStep(x_prev, records, x0_hat)


@dataclass
class SampleResult:
    """x0: the clean sample (shape of x_T); `stopped_at`: the step index an `on_step` stopped at."""

    x0: Tensor
    records: list[Any]  # the method's records: `GuidedStepRecord`s, DOODL's `DOODLRecord`s
    stopped_at: int | None = None


# on_step(step index, timestep, x_t, x0_hat, loss or None) -> False to stop early
StepCallback = Callable[[int, int, Tensor, Tensor, "float | None"], Any]


def _unguided_step(eps_fn: EpsFn, x: Tensor, t: int, a_t: float, a_prev: float, guard: FiniteGuard,
                   want_x0: bool, sampler: Sampler, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
    with torch.inference_mode():
        eps = eps_fn(x, t)
        guard.watch(eps, f"the noise prediction at sampling timestep {t}")
        x0_hat = sampler.clean(x, eps, t, a_t) if want_x0 else None
        return sampler.step(x, eps, t, a_t, a_prev, generator), x0_hat


def _normal(x: Tensor | None) -> Tensor | None:
    """A tensor made under inference mode, as an ordinary one (autograd may then use it)."""
    return x.clone() if x is not None and x.is_inference() else x


# guided(i, t, x_t, a_t, a_prev) -> GuidedStep for the step entering at x_t
GuidedFn = Callable[[int, int, Tensor, float, float], GuidedStep]


def run_loop(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], guided: set[int],
             guided_step: GuidedFn | None, on_step: StepCallback | None = None, sampler: Sampler = DDIM,
             generator: torch.Generator | None = None) -> SampleResult:
    """DDIM (eta = 0), or `sampler`'s steps, over `timesteps` (high to low) from x_T (any shape),
    calling `guided_step` on the indices in `guided`. LCM's fresh noise comes from `generator`.

    The loop every guidance method shares: unguided steps run under `torch.inference_mode`,
    finiteness is checked once per guided step and at the end, the last step goes to alpha-bar
    1. After every step `on_step(i, t, x_t, x0_hat, loss)` sees the state entering the step, its
    clean estimate and the last guided loss (None on unguided steps); when it returns False,
    sampling stops and the result is that clean estimate.
    """
    records: list[GuidedStepRecord] = []
    guard = FiniteGuard()
    x = x_T
    for i, t in enumerate(timesteps):
        a_t = alpha_at(alphas_cumprod, t)
        a_prev = alpha_at(alphas_cumprod, timesteps[i + 1] if i + 1 < len(timesteps) else None)
        loss = None
        if i in guided:
            guard.check()  # the unguided steps since the last check
            step = guided_step(i, t, _normal(x), a_t, a_prev)
            records.extend(step.records)
            x_next, x0_hat, loss = step.x_prev.detach(), step.x0_hat, step.records[-1].loss
        else:
            x_next, x0_hat = _unguided_step(eps_fn, x, t, a_t, a_prev, guard, on_step is not None, sampler, generator)
        if on_step is not None and on_step(i, t, x, x0_hat, loss) is False:
            guard.check()
            return SampleResult(_normal(x0_hat), records, stopped_at=i)
        x = x_next
    guard.check()
    return SampleResult(_normal(x), records)


def ddim_sample(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int],
                on_step: StepCallback | None = None) -> SampleResult:
    """The plain DDIM (eta = 0) chain over `timesteps` from x_T (any shape), nothing guided."""
    return run_loop(eps_fn, x_T, alphas_cumprod, list(timesteps), set(), None, on_step)


def check_inputs(x_T: Any, alphas_cumprod: Any, timesteps: Any, settings: Any, settings_class: type,
                 loss_fn: Any = None, needs_loss: bool = True) -> Any:
    """Validate a sampler's arguments at the door; returns the settings (the default ones for None)."""
    if not isinstance(x_T, Tensor) or not x_T.is_floating_point():
        raise TypeError(f"x_T must be a floating-point torch.Tensor (any shape, e.g. (B, C, F, h, w)), "
                        f"got {type(x_T).__name__}.")
    if not isinstance(alphas_cumprod, Tensor) or alphas_cumprod.dim() != 1:
        raise TypeError("alphas_cumprod must be a 1-D torch.Tensor (the scheduler's alphas_cumprod).")
    steps = list(timesteps) if not isinstance(timesteps, Tensor) else timesteps.tolist()
    if not steps or any(isinstance(t, bool) or not isinstance(t, int) for t in steps):
        raise TypeError(f"timesteps must be a non-empty list of integers, high to low, got {timesteps!r}.")
    if any(b >= a for a, b in zip(steps, steps[1:])) or not 0 <= steps[-1] <= steps[0] < len(alphas_cumprod):
        raise ValueError(f"timesteps must fall strictly from high to low within 0..{len(alphas_cumprod) - 1}, "
                         f"got {steps}. Use sagvideo.guidance.ddim_timesteps(...).")
    if needs_loss and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(x0_hat) -> scalar, got {type(loss_fn).__name__}.")
    settings = settings_class() if settings is None else settings
    if not isinstance(settings, settings_class):
        raise TypeError(f"settings must be a {settings_class.__name__} (sagvideo.method_registry), "
                        f"got {type(settings).__name__}.")
    settings.check()
    return settings
