"""Every guidance method's facts, one object each, torch-free: the config, the command line, the
progress bar, the report, the batch planner and `bench methods` read them here.

A `GuidanceMethod` owns its settings class (its config section), which shared knobs it reads
(`strength`, `n`, `passes`), its default passes per guided step, its cost per guided pass, the
knob `bench methods` raises to match SAG's compute, and its sampler (imported on first use, so
reading the registry never imports torch). "Passes per guided step" (time travel, UG's
self-recurrence) is one knob, `guidance.passes`, for every method; unset, each method takes its
paper's number. Adding a method: write its sampler in `guidance/methods/`, its settings class
below, and one entry in `METHODS`.

The settings classes hold only what one method adds. They are plain (not frozen) dataclasses
because the config layer sets fields one by one (`--set ug.backward_steps=5`); every
construction and every assignment runs `check()`, so a bad value is refused where it is set,
naming its config key, and the samplers check again at the door.

Step sizes: a paper's raw scale is in the units of its own loss (a CLIP loss on SD latents), so
it does not transfer to another loss. Where a method adds a gradient step, it is normalised as
SAG's is, `rho = strength * RMS(eps_c - eps_u) / RMS(direction)`, and the method's scale is a
multiple of that; each comment says how the paper's number maps onto ours.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError

SHARED_KNOBS = ("strength", "n", "passes")


# ------------------------------------------------------------------ each method's own knobs

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


# ------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class PassCost:
    """Network work: evaluations without a graph, evaluations with one (each followed by its VJP), VJPs."""

    evaluations: int = 0
    graph_evaluations: int = 0
    vjps: int = 0

    def __add__(self, other: "PassCost") -> "PassCost":
        return PassCost(self.evaluations + other.evaluations, self.graph_evaluations + other.graph_evaluations,
                        self.vjps + other.vjps)

    def __mul__(self, k: float) -> "PassCost":
        return PassCost(self.evaluations * k, self.graph_evaluations * k, self.vjps * k)

    @property
    def calls(self) -> float:
        """Evaluations + VJPs: the unit `bench methods` matches compute in."""
        return self.evaluations + self.graph_evaluations + self.vjps

    @property
    def forward_units(self) -> float:
        """In forward passes: a graph evaluation with its VJP costs about two (progress bar, batch order)."""
        return self.evaluations + 2 * self.graph_evaluations


UNGUIDED_STEP = PassCost(evaluations=1)


@dataclass(frozen=True)
class GuidanceMethod:
    """One guidance method's facts. `cost(n)` is one guided pass with an n-step estimate (for a
    whole-chain method, one iteration over a chain of n steps)."""

    name: str
    paper: str
    sampler_path: str  # "module:function", imported on first use of `sampler`
    settings: type
    uses: frozenset
    cost: Callable[[int], PassCost]
    default_passes: int | None = None  # passes per guided step when `guidance.passes` is unset
    match_knob: str | None = None  # the config key `bench methods` raises to match SAG's compute
    pipeline: bool = True  # False: needs a class-conditional model (the benchmark's proxy)
    whole_chain: bool = False  # optimises x_T through the whole sampler instead of guiding steps

    @property
    def section(self) -> str | None:
        """The config section of the method's own knobs (None when it has none)."""
        return self.name if dataclasses.fields(self.settings) else None

    @property
    def sampler(self) -> Callable[..., Any]:
        module, name = self.sampler_path.split(":")
        return getattr(importlib.import_module(module), name)

    def passes(self, passes: int | None) -> int:
        """Passes per guided step: the asked number, else this method's default (1 when it has none)."""
        if "passes" not in self.uses:
            return 1
        return passes if passes is not None else self.default_passes

    def guides(self, strength: float) -> bool:
        """Whether guidance changes anything: a method that scales by `strength` does nothing at 0."""
        return "strength" not in self.uses or strength > 0

    def run_cost(self, num_steps: int, guided: dict[int, float], passes: int | None,
                 settings: Any = None) -> PassCost:
        """The whole run's network work: `guided` maps step index -> n (may be an average)."""
        if not guided:
            return UNGUIDED_STEP * num_steps
        if self.whole_chain:  # iterations over the chain, then the plain chain once more
            iterations = (settings or self.settings()).iterations
            return self.cost(num_steps) * iterations + UNGUIDED_STEP * num_steps
        total = UNGUIDED_STEP * (num_steps - len(guided))
        for n in guided.values():
            total = total + self.cost(n) * self.passes(passes)
        return total

    def step_plan(self, num_steps: int, guided: dict[int, int], passes: int | None, settings: Any = None,
                  shares_first: bool = True) -> list[int]:
        """Expected forward units (a graph evaluation with its VJP counts two) of each step, for
        the progress bar. `shares_first` False: the gradient's network cannot reuse the prediction
        at x_t (several windows, `cond_only`), so a pass with a graph makes one more evaluation."""
        if self.whole_chain and guided:  # no per-step split: the whole cost spread over the steps
            total = round(self.run_cost(num_steps, guided, passes, settings).forward_units)
            return [total // num_steps + (i < total % num_steps) for i in range(num_steps)]
        plan = []
        for i in range(num_steps):
            if i not in guided:
                plan.append(1)
                continue
            cost = self.cost(guided[i])
            extra = 0 if shares_first or not cost.graph_evaluations else 1
            plan.append(round((cost.forward_units + extra) * self.passes(passes)))
        return plan


def _sag_cost(n: int) -> PassCost:
    # symplectic Euler: n - 1 forward evaluations without a graph, the last kept with one, n VJPs
    # (all but the last re-run their step with a graph); at n = 1 the one evaluation keeps its graph
    return PassCost(evaluations=n - 1, graph_evaluations=n, vjps=n)


def _one_graph(n: int) -> PassCost:
    return PassCost(graph_evaluations=1, vjps=1)


METHODS: dict[str, GuidanceMethod] = {m.name: m for m in (
    GuidanceMethod("sag", "Symplectic Adjoint Guidance (Pan et al., 2023)",
                   "sagvideo.guidance.methods.sag:sample_sag", SAGSettings,
                   frozenset({"strength", "n", "passes"}), _sag_cost, default_passes=2),
    GuidanceMethod("freedom", "FreeDoM (Yu et al., ICCV 2023)", "sagvideo.guidance.methods.freedom:sample_freedom",
                   FreeDoMSettings, frozenset({"strength", "passes"}), lambda n: _sag_cost(1), default_passes=2,
                   match_knob="guidance.passes"),
    GuidanceMethod("ug", "Universal Guidance (Bansal et al., ICLR 2024)", "sagvideo.guidance.methods.ug:sample_ug",
                   # k = 6 self-recurrence passes: the official SD style-transfer command
                   UGSettings, frozenset({"strength", "passes"}), _one_graph, default_passes=6,
                   match_knob="guidance.passes"),
    GuidanceMethod("mpgd", "Manifold Preserving Guided Diffusion (He et al., ICLR 2024)",
                   "sagvideo.guidance.methods.mpgd:sample_mpgd", MPGDSettings, frozenset({"strength", "passes"}),
                   # official SD style script: --tt 1 (one pass, no time travel)
                   lambda n: PassCost(evaluations=1), default_passes=1, match_knob="guidance.passes"),
    GuidanceMethod("doodl", "DOODL (Wallace et al., ICCV 2023)", "sagvideo.guidance.methods.doodl:sample_doodl",
                   DOODLSettings, frozenset(), _sag_cost, match_knob="doodl.iterations", whole_chain=True),
    GuidanceMethod("cg", "classifier guidance (Dhariwal & Nichol, NeurIPS 2021)",
                   "sagvideo.guidance.methods.cg:sample_cg", CGSettings, frozenset({"passes"}), _one_graph,
                   default_passes=1, match_knob="guidance.passes", pipeline=False),  # the paper has no time travel
    GuidanceMethod("gfcg", "gradient-free classifier guidance (Shenoy et al., 2024)",
                   "sagvideo.guidance.methods.gfcg:sample_gfcg", GFCGSettings, frozenset(),
                   lambda n: PassCost(evaluations=2), pipeline=False),
)}

# The methods of the video pipeline (`guidance.method`); cg and gfcg run in the benchmark only.
PIPELINE_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.pipeline)

# Old names of `guidance.passes`, still read; each prints a one-line notice once per process.
DEPRECATED_KEYS = {"guidance.repeats": "guidance.passes", "ug.recurrence": "guidance.passes",
                   "mpgd.time_travel": "guidance.passes"}
_noticed: set[str] = set()


def deprecated_key(key: str) -> str:
    """The current name of config key `key` (itself unless it is an old name, then noticed on stderr)."""
    new = DEPRECATED_KEYS.get(key)
    if new is None:
        return key
    if key not in _noticed:
        _noticed.add(key)
        print(f"sagvideo: config key '{key}' is deprecated; it is now '{new}' (passes per guided step, "
              f"every method).", file=sys.stderr)
    return new

