"""What every guidance sampler shares: input checks, the DDIM loop, time-travel passes.

The loop is `sagvideo.guidance.sample`'s, with the guided step passed in: unguided steps run
under `torch.inference_mode` (reusing SAG's own step), finiteness is checked once per guided
step and at the end, `on_step(i, t, x_t, x0_hat, loss)` may stop sampling by returning False.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..ddim import alpha_at, renoise
from ..evals import FiniteGuard
from ..protocols import EpsFn
from ..sag import GuidedStep, GuidedStepRecord, SampleResult, StepCallback, _normal, _unguided_step

RecordCallback = Callable[[GuidedStepRecord], Any]
# guided(i, t, x_t, a_t, a_prev) -> GuidedStep for the step entering at x_t
GuidedFn = Callable[[int, int, Tensor, float, float], GuidedStep]
# one_pass(x_t, repeat) -> (x_prev, x0_hat, record)
PassFn = Callable[[Tensor, int], "tuple[Tensor, Tensor, GuidedStepRecord]"]


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
        raise TypeError(f"settings must be a {settings_class.__name__} (sagvideo.method_settings), "
                        f"got {type(settings).__name__}.")
    settings.check()
    return settings


def travel(x_t: Tensor, passes: int, one_pass: PassFn, a_t: float, a_prev: float,
           generator: torch.Generator | None, on_record: RecordCallback | None) -> GuidedStep:
    """Run `passes` guided passes at one step, re-noising x_{t-1} back to x_t between them.

    The re-noising is the time travel / self-recurrence of FreeDoM and Universal Guidance:
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


def run_loop(eps_fn: EpsFn, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], guided: set[int],
             guided_step: GuidedFn, on_step: StepCallback | None = None) -> SampleResult:
    """DDIM (eta = 0) over `timesteps`, calling `guided_step` on the indices in `guided`.

    Same contract as `sagvideo.guidance.sample`: returns the clean sample (the last step goes to
    alpha-bar 1) and every guided pass's record; `on_step` returning False stops early.
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
            x_next, x0_hat = _unguided_step(eps_fn, x, t, a_t, a_prev, guard, on_step is not None)
        if on_step is not None and on_step(i, t, x, x0_hat, loss) is False:
            guard.check()
            return SampleResult(_normal(x0_hat), records, stopped_at=i)
        x = x_next
    guard.check()
    return SampleResult(_normal(x), records)
