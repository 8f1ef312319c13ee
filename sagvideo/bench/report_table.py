"""README tables from a benchmark's JSON, so the numbers in README are the run's, never retyped:
`python -m sagvideo.bench.report_table methods|video-proxy OUT.json`.

Notation: a row's spread is "mean ± sd" over the seeds; a paired difference is "mean ± standard
error" (sd / sqrt(seeds)) with the seeds on which the row was lower.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _paired(stats: dict | None) -> str:
    if not stats:
        return "-"
    return f"{stats['mean_diff']:+.3g} ± {stats['se']:.2g} ({stats['wins']}/{stats['seeds']})"


def methods_markdown(rows: list[dict]) -> str:
    """The `bench methods` tables: per task, controls, every method's sweep and its best point."""
    out = []
    for task in ("style", "class"):
        task_rows = [r for r in rows if r["task"] == task]
        if not task_rows:
            continue
        out += [f"**{task} task** ({task_rows[0]['seeds']} seeds, {task_rows[0]['steps']} steps)", "",
                "| method | sweep: value -> loss / judge accuracy | best point: loss (mean ± sd), judge | "
                "evals + VJPs | best - own control | best - unguided | best - SAG's best |",
                "|---|---|---|---|---|---|---|"]
        for r in (r for r in task_rows if r.get("role") == "control"):
            out.append(f"| {r['setting']} ({r['method']}) | - | {r['loss_mean']:.4g} ± {r['loss_std']:.2g}, "
                       f"{r['judge_accuracy']:.3g} | {r['evals']:g} + {r['vjps']:g} | - | - | - |")
        for method in dict.fromkeys(r["method"] for r in task_rows if r.get("role") == "sweep"):
            points = [r for r in task_rows if r["method"] == method and r.get("role") == "sweep"]
            best = next(p for p in points if p.get("best"))
            sweep = ", ".join(f"{p['sweep_value']:g} -> {p['loss_mean']:.4g} / {p['judge_accuracy']:.2g}"
                              for p in points)
            paired = best.get("paired", {})
            out.append(f"| `{method}` ({best['setting'].split('=')[0]}) | {sweep} | {best['loss_mean']:.4g} ± "
                       f"{best['loss_std']:.2g}, {best['judge_accuracy']:.3g} at {best['sweep_value']:g} | "
                       f"{best['evals']:g} + {best['vjps']:g} | {_paired(paired.get('vs_own_control'))} | "
                       f"{_paired(paired.get('vs_unguided'))} | {_paired(paired.get('vs_sag_best'))} |")
        extra = [r for r in task_rows if r.get("role") in ("n", "defaults")]
        if extra:
            out += ["", "| other rows | knobs | loss (mean ± sd) | judge | evals + VJPs |", "|---|---|---|---|---|"]
            out += [f"| `{r['method']}` {r['setting']} | {r['knobs']} | {r['loss_mean']:.4g} ± {r['loss_std']:.2g} | "
                    f"{r['judge_accuracy']:.3g} | {r['evals']:g} + {r['vjps']:g} |" for r in extra]
        out.append("")
    guided = [r["peak_mem_mb"] for r in rows if r["method"] != "none" and "peak_mem_mb" in r]
    if guided:
        out.append(f"Peak memory above the loaded model, guided rows: {min(guided):g} to {max(guided):g} MB.")
    return "\n".join(out)


def video_markdown(rows: list[dict]) -> str:
    """The `bench video-proxy` table: every row, best points marked, then the paired statistics."""
    windows = sorted({k for r in rows for k in r if k.startswith("window_") and k.endswith("_loss")},
                     key=lambda k: int(k.split("_")[1]))
    keys = ("style_loss", "warp_error", "warp_error_sq", "warp_error_reversed", "change", "flicker", *windows,
            "window_gap")
    out = ["| method | setting | " + " | ".join(keys) + " | evals + VJPs |", "|---|---|" + "---|" * (len(keys) + 1)]
    for r in rows:
        if r["method"] == "model":
            continue
        cells = [f"{r[k]:.4g}" if k in r else "-" for k in keys]
        name = f"**{r['method']}**" if r.get("best") else r["method"]
        out.append(f"| {name} | {r['setting']} | " + " | ".join(cells) + f" | {r['evals']} + {r['vjps']} |")
    out += ["", "| best point | paired difference: mean ± standard error (seeds lower) |", "|---|---|"]
    for r in rows:
        for name, stats in (r.get("paired") or {}).items():
            out.append(f"| `{r['method']}` {name} | {_paired(stats)} |")
    return "\n".join(out)


if __name__ == "__main__":
    kind, path = sys.argv[1], Path(sys.argv[2])
    data = json.loads(path.read_text())
    print(methods_markdown(data) if kind == "methods" else video_markdown(data))
