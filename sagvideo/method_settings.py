"""Each guidance method's own knobs, with the papers' defaults; torch-free (the command line reads them).

The knobs every method shares (strength, guided range, passes, n) live in `SAGParams` /
`GuidanceConfig`, and each method's defaults for them in `method_registry`; these classes
hold only what one method adds. They are plain (not frozen)
dataclasses because the config layer sets fields one by one (`--set ug.backward_steps=5`);
every construction and every assignment runs `check()`, so a bad value is refused where it is
set, naming its config key, and the samplers check again at the door.

Step sizes: a paper's raw scale is in the units of its own loss (a CLIP loss on SD latents), so
it does not transfer to another loss. Where a method adds a gradient step, it is normalised as
SAG's is, `rho = strength * RMS(eps_c - eps_u) / RMS(direction)`, and the method's scale is a
multiple of that; each comment says how the paper's number maps onto ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


def _positive(value: float, key: str, zero_ok: bool = False) -> None:
    if not (value >= 0 if zero_ok else value > 0):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"config key '{key}' must be {bound}, got {value!r}. Fix it (e.g. --set {key}=...).")


class _Checked:
    """Runs the subclass's `check()` after construction and after every later assignment."""

    def check(self) -> None:
        return None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ready", True)
        self.check()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if getattr(self, "_ready", False):
            self.check()


@dataclass
class SAGSettings(_Checked):
    """SAG has no knobs beyond the shared ones (guidance.n, gradient, scheme, adaptive_n, passes)."""


@dataclass
class FreeDoMSettings(_Checked):
    """FreeDoM (Yu et al., ICCV 2023) is SAG with n = 1: the shared knobs are its knobs.

    SAG's defaults (strength 0.2 x CFG, guided fraction 0.3..0.7 of the steps) are those of
    FreeDoM's own Stable Diffusion style code; it time-travels 3 times on most guided steps
    where its default here, like SAG's, is 2 passes (set guidance.passes=3 to match it).
    """


@dataclass
class UGSettings(_Checked):
    """Universal Guidance (Bansal et al., ICLR 2024, Algorithm 1)."""

    # s in s(t) = s * sqrt(1 - a_t) (official code); the paper's s = 6 (SD style) is in CLIP-loss
    # units, so here 1 moves x_{t-1} as far as SAG's normalised step, times sqrt(1 - a_t).
    forward_scale: float = 1.0
    # m, gradient steps on the clean estimate; official code: --optim_max_iters default 1
    backward_steps: int = 1
    # Adam step size on x0 in the official code (--optim_lr 1e-2): data units, so it transfers
    backward_lr: float = 1e-2

    def check(self) -> None:
        _positive(self.forward_scale, "ug.forward_scale", zero_ok=True)
        _positive(self.backward_steps, "ug.backward_steps", zero_ok=True)
        _positive(self.backward_lr, "ug.backward_lr")


@dataclass
class MPGDSettings(_Checked):
    """Manifold Preserving Guided Diffusion (He et al., ICLR 2024), without projection."""

    # step on x0 = scale * strength * RMS(eps_c - eps_u) / RMS(dE/dx0). The official SD style
    # script (run.sh: --rho 15) steps 15 x RMS(cfg (eps_c - eps_u)); SAG's strength is
    # 0.2 x cfg, so 15 / 0.2 = 75 reproduces it at SAG's default strength.
    scale: float = 75.0

    def check(self) -> None:
        _positive(self.scale, "mpgd.scale", zero_ok=True)


@dataclass
class DOODLSettings(_Checked):
    """End-to-End Diffusion Latent Optimization (Wallace et al., ICCV 2023); official code `gen()` defaults."""

    iterations: int = 50  # num_traversal_steps=50
    lr: float = 1.0  # grad_scale=1: the loss gradient times this is the step before clipping
    momentum: float = 0.9  # SGD momentum 0.9, no dampening (use_momentum=True)
    clip: float = 1e-3  # clip_grad_val: each element of the step is clipped to +-clip
    perturbation: float = 1e-4  # perturb_grad_scale: N(0, I) noise of this size added per step

    def check(self) -> None:
        _positive(self.iterations, "doodl.iterations", zero_ok=True)
        _positive(self.lr, "doodl.lr")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"config key 'doodl.momentum' must be in [0, 1), got {self.momentum!r}.")
        _positive(self.clip, "doodl.clip")
        _positive(self.perturbation, "doodl.perturbation", zero_ok=True)


@dataclass
class CGSettings(_Checked):
    """Classifier guidance (Dhariwal & Nichol, NeurIPS 2021, Algorithm 2) with a clean classifier on x0_hat."""

    # s in eps_hat = eps - s sqrt(1 - a_t) grad log p(y | x0_hat); s = 1 is Bayes' rule, the paper uses 1..10
    scale: float = 1.0

    def check(self) -> None:
        _positive(self.scale, "cg.scale", zero_ok=True)


@dataclass
class GFCGSettings(_Checked):
    """Gradient-free classifier guidance (Shenoy et al., arXiv 2411.15393, 2024).

    The paper's text was not available to this project; the scale below is ours, chosen for
    the proxy, not the paper's (see sagvideo/guidance/methods/gfcg.py).
    """

    # w_max in w_t = w_max * p(ref) / (p(target) + p(ref)); not from the paper (see above)
    scale: float = 2.0

    def check(self) -> None:
        _positive(self.scale, "gfcg.scale", zero_ok=True)
