"""`sampling.scheduler` with the rest of a config: which combinations run, and what the report says.

Torch-free, so `config.validate` refuses a bad combination before anything loads. What runs
with each scheduler (guidance/schedulers.py):
- `ddim`, `euler`: every guidance method, estimate scheme and gradient (Euler's step is DDIM's);
  `euler` needs integer timesteps: `timestep_spacing` trailing (Lightning) or leading.
- `lcm`: SAG with the Euler-type estimate (LCM's deterministic steps) and an exact gradient
  (symplectic or direct); the other methods step with DDIM and are refused. At most 50 steps.
`sampling.cfg_scale` 1 is CFG off: one network branch per evaluation and per VJP, and the
guidance step is relative to RMS(eps) (there is no eps_c - eps_u).
"""

from __future__ import annotations

from typing import Any

from .defaults import SCHEDULERS, guided_indices
from .errors import ConfigError

LCM_MAX_STEPS = 50  # LCM's distillation schedule (guidance/schedulers.py: LCM_ORIGINAL_STEPS)
EXACT_LCM_GRADIENTS = ("symplectic", "direct")


def cfg_off(cfg_scale: float) -> bool:
    """Whether classifier-free guidance is off (scale 1: eps_u + 1 (eps_c - eps_u) = eps_c, one branch)."""
    return cfg_scale == 1


def check_scheduler(config: Any) -> None:
    """Refuse, naming the key, a combination the chosen scheduler cannot run (see the module doc)."""
    s, g = config.sampling, config.guidance
    if s.scheduler not in SCHEDULERS:
        raise ConfigError(f"config key 'sampling.scheduler' must be one of {', '.join(SCHEDULERS)}, "
                          f"got {s.scheduler!r}.")
    if s.scheduler == "euler" and s.timestep_spacing == "linspace":
        raise ConfigError("config key 'sampling.timestep_spacing' is linspace, whose Euler timesteps fall between "
                          "the training timesteps. To fix: set sampling.timestep_spacing=trailing (the "
                          "AnimateDiff-Lightning recipe, as in --config lightning) or leading.")
    if s.scheduler != "lcm":
        return
    if s.steps > LCM_MAX_STEPS:
        raise ConfigError(f"config key 'sampling.steps' is {s.steps}, but the lcm scheduler's schedule has "
                          f"{LCM_MAX_STEPS} points. To fix: use 4 to 8 steps (AnimateLCM's range), "
                          f"at most {LCM_MAX_STEPS}.")
    if not g.enabled:
        return
    if g.method != "sag":
        raise ConfigError(f"config key 'guidance.method' is {g.method!r}, which steps with DDIM and cannot run with "
                          f"sampling.scheduler=lcm. To fix: use guidance.method=sag, or sampling.scheduler=euler/ddim.")
    if g.scheme != "euler":
        raise ConfigError("config key 'guidance.scheme' is heun, but under sampling.scheduler=lcm the clean estimate "
                          "chains LCM's own (Euler-type) steps. To fix: set guidance.scheme=euler.")
    if g.gradient not in EXACT_LCM_GRADIENTS:
        raise ConfigError(f"config key 'guidance.gradient' is {g.gradient!r} (the continuous DDIM adjoint), which does "
                          f"not follow LCM's steps. To fix: use guidance.gradient=symplectic (or direct).")


def describe_sampler(config: Any, timesteps: list[int], guided: list[int]) -> dict[str, Any]:
    """The report's `sampler` entry: scheduler, steps run, CFG, and which step indices / timesteps were guided."""
    s = config.sampling
    off = cfg_off(s.cfg_scale)
    return {"scheduler": s.scheduler, "steps": len(timesteps), "timesteps": list(timesteps),
            "spacing": "lcm" if s.scheduler == "lcm" else s.timestep_spacing,
            "cfg_scale": s.cfg_scale, "cfg": "off (one branch)" if off else "on (two branches)",
            "guided_steps": list(guided), "guided_timesteps": [timesteps[i] for i in guided],
            "guided_range": [config.guidance.start, config.guidance.end]}


def guided_step_indices(config: Any, steps: int) -> list[int]:
    """The step indices the guidance range covers (fractions of the schedule that runs)."""
    g = config.guidance
    return list(guided_indices(g.start, g.end, steps)) if g.enabled else []
