"""`sagvideo bench methods`: each method's strength swept at matched compute, judged by a held-out
classifier, with controls, paired statistics and a Pareto plot.

Per task (see `methods` for the tasks and one row's measurement):

* controls: unguided DDIM, and time travel alone (SAG n = 4 at strength 0: its passes, no pull);
* a sweep per method of its strength knob (`SWEEPS`: `guidance.strength` as a multiple of the
  CFG scale, or the method's own step knob), every point at matched compute: the method's
  `match_knob` (passes per guided step, DOODL's iterations) raised to the largest value whose
  evaluations + VJPs stay within SAG n = 4's (defaults: 2 passes); the sweep's zero is the
  method's own control (same passes, no pull);
* each method's best point: the lowest mean loss among the points whose held-out judge accuracy
  is at least the unguided control's minus `ACCURACY_SLACK` (the digit survived);
* paired statistics over the seeds (`paired.paired_stats`) of each best point against its own
  control, unguided, and SAG's best point, printed and stored in the row (`paired`);
* style task only: SAG's best strength at n = 1, 2, 8 (not matched) and each method's paper
  defaults (default strength and passes; DOODL's 50 iterations, about 100 s, left out).

Quality is the accuracy of `proxy.judge` (an MLP trained on digits neither the guide classifier nor
the diffusion model saw); the guide classifier's accuracy is kept in `accuracy`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from .methods import CFG, MATCH_N, STRENGTH, matched_knob
from .paired import format_paired, paired_stats

RELATIVE_STRENGTHS = (0.0, STRENGTH, 0.5, 1.0, 2.0)  # x CFG scale; 0.2 is the FreeDoM / SAG default
ACCURACY_SLACK = 0.05
# method -> (swept knob, its values; None: RELATIVE_STRENGTHS x CFG), fixed knobs, knobs of the zero point
SWEEPS: dict[str, dict[str, tuple]] = {
    "style": {
        "sag": ("guidance.strength", None, {}, {}),
        "freedom": ("guidance.strength", None, {}, {}),
        "ug": ("guidance.strength", None, {}, {"ug.backward_steps": 0}),  # backward guidance ignores strength
        "mpgd": ("guidance.strength", None, {"mpgd.scale": 1.0}, {}),  # in SAG's units (its paper: scale 75)
        "doodl": ("doodl.clip", (0.0, 1e-3, 1e-2, 3e-2, 1e-1), {}, {}),  # clip 0 runs as 0 iterations
    },
    "class": {
        "sag": ("guidance.strength", None, {}, {}),
        "freedom": ("guidance.strength", None, {}, {}),
        "cg": ("cg.scale", (0.0, 0.5, 1.0, 2.0, 4.0), {}, {}),
        "gfcg": ("gfcg.scale", (0.0, 1.0, 2.0, 4.0), {}, {}),  # no knob buys compute: its own cost
    },
}
PAPER_DEFAULTS = ("freedom", "ug", "mpgd")
SAG_NS = (1, 2, 8)


def sweep_values(task: str, method: str) -> tuple[float, ...]:
    knob, values, _, _ = SWEEPS[task][method]
    return values if values is not None else tuple(round(r * CFG[task], 4) for r in RELATIVE_STRENGTHS)


def sweep_knobs(task: str, method: str, value: float, budget: float, steps: int) -> dict:
    """The knobs of one sweep point: the swept value, the fixed knobs, matched compute, the zero's extras."""
    from ..method_registry import METHODS

    knob, _, fixed, zero = SWEEPS[task][method]
    knobs = {knob: value, **fixed}
    if method == "doodl" and value == 0.0:  # DOODL's clip must be > 0: its zero is no iteration
        return {"doodl.iterations": 0}
    if METHODS[method].match_knob:
        knobs[METHODS[method].match_knob] = matched_knob(method, budget, task, steps)
    return {**knobs, **zero} if value == 0.0 else knobs


def best_point(points: list[dict], floor: float) -> dict:
    """The lowest mean loss among guided points with judge accuracy >= floor (else the weakest guided point)."""
    guided = [p for p in points if p["sweep_value"] != 0.0]
    kept = [p for p in guided if p["judge_accuracy"] >= floor]
    return min(kept, key=lambda p: p["loss_mean"]) if kept else guided[0]


def _paired(row: dict, other: dict) -> dict:
    return paired_stats(row["loss_per_seed"], other["loss_per_seed"])


def _sweep(row: Callable[..., dict], task: str, method: str, travel: dict, budget: int, steps: int) -> list[dict]:
    """One method's sweep points at matched compute `budget`, its zero (control) first."""
    points = []
    for value in sweep_values(task, method):
        if method == "sag" and value == 0.0:  # the time-travel control is SAG's zero: not run twice
            points.append({**travel, "setting": "guidance.strength=0.0 (its control)", "role": "sweep",
                           "sweep_value": 0.0})
            continue
        knobs = sweep_knobs(task, method, value, budget, steps)
        setting = f"{SWEEPS[task][method][0]}={value}" + (" (its control)" if value == 0.0 else "")
        points.append(row(task, method, setting, knobs=knobs, role="sweep", sweep_value=value))
    return points


def bench_methods(args: argparse.Namespace, run: Callable[[str, dict], dict] | None = None,
                  log: Callable[[str], None] = print) -> list[dict]:
    """Every row of both tasks, each through `run` (default: a fresh child process per row); prints
    the paired statistics and, with `args.plot`, draws the Pareto fronts."""
    if run is None:
        from .children import run_child as run
    progress = getattr(args, "progress", None) or (lambda line: None)
    steps, seeds = args.steps, args.seeds
    if steps < 2 or seeds < 2:
        from ..errors import InputError

        raise InputError(f"bench methods needs --steps >= 2 and --seeds >= 2 (a spread needs two samples), "
                         f"got --steps {steps} --seeds {seeds}.")

    def row(task: str, method: str, setting: str, n: int = MATCH_N, **extra) -> dict:
        knobs = extra.pop("knobs", {})
        out = run("methods", {"task": task, "method": method, "setting": setting, "steps": steps, "seeds": seeds,
                              "n": n, "knobs": knobs})
        progress(f"{task} {method} {setting}: loss {out['loss_mean']}, judge {out['judge_accuracy']}, "
                 f"{out['seconds']}s")
        return {**out, **extra}

    rows: list[dict] = []
    for task in ("style", "class"):
        unguided = row(task, "none", "unguided", role="control")
        travel = row(task, "sag", "time travel, strength 0", knobs={"guidance.strength": 0.0}, role="control")
        rows += [unguided, travel]
        budget = travel["evals"] + travel["vjps"]  # SAG n = 4's work does not depend on the strength
        floor = unguided["judge_accuracy"] - ACCURACY_SLACK
        best: dict[str, dict] = {}
        for method in SWEEPS[task]:
            points = _sweep(row, task, method, travel, budget, steps)
            best[method] = best_point(points, floor)
            best[method]["best"] = True
            control = points[0]
            best[method]["paired"] = {"vs_own_control": _paired(best[method], control),
                                      "vs_unguided": _paired(best[method], unguided)}
            rows += points
        for method, b in best.items():
            if method != "sag":
                b["paired"]["vs_sag_best"] = _paired(b, best["sag"])
        if task == "style":
            strength = best["sag"]["sweep_value"]
            rows += [row(task, "sag", f"n={n} at the best strength", n, knobs={"guidance.strength": strength},
                         role="n") for n in SAG_NS]
            rows += [row(task, m, "paper defaults", role="defaults") for m in PAPER_DEFAULTS]
        log(f"\n{task} task: paired differences of the per-seed loss (best point minus the other row)")
        for method, b in best.items():
            for name, stats in b["paired"].items():
                log("  " + format_paired(f"{method} ({b['setting']}) {name}", stats))
    if getattr(args, "plot", None):
        from .pareto_plot import plot_fronts

        plot_fronts(Path(args.plot), rows)
        log(f"wrote {args.plot}")
    return rows
