"""What every guidance sampler shares: input checks, and SAG's DDIM loop and time-travel passes.

The loop is `sagvideo.guidance.sag.run_loop` (the one `sample` runs), with the guided step passed
in: unguided steps run under `torch.inference_mode`, finiteness is checked once per guided step
and at the end, `on_step(i, t, x_t, x0_hat, loss)` may stop sampling by returning False.
`travel` is the repeat loop of SAG's own guided step.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

from ..sag import GuidedStepRecord, run_loop, travel

__all__ = ["RecordCallback", "check_inputs", "run_loop", "travel"]

RecordCallback = Callable[[GuidedStepRecord], Any]


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
