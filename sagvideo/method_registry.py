"""Every guidance method's facts, one object each, torch-free: the config, the command line, the
progress bar, the report, the batch planner and `bench methods` read them here.

A `GuidanceMethod` owns its settings section (`method_settings`), which shared knobs it reads
(`strength`, `n`, `passes`), its default passes per guided step, its cost per guided pass, the
knob `bench methods` raises to match SAG's compute, and its sampler (imported on first use, so
reading the registry never imports torch). "Passes per guided step" (time travel, UG's
self-recurrence) is one knob, `guidance.passes`, for every method; unset, each method takes its
paper's number. Adding a method: write its sampler in `guidance/methods/`, its settings class in
`method_settings.py`, and one entry in `METHODS` below.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .method_settings import (
    CGSettings, DOODLSettings, FreeDoMSettings, GFCGSettings, MPGDSettings, SAGSettings, UGSettings,
)

SHARED_KNOBS = ("strength", "n", "passes")


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

