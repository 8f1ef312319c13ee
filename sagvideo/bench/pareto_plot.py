"""The PNG of `bench methods`: per task, loss against held-out judge accuracy, every sweep point of
each method as a dot and its Pareto front as a line, the controls as black rings. Pillow only."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from ..files import atomic_path
from ..metrics.plot import COLORS, tick_labels

PANEL_W, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 520, 420, 70, 130, 30, 46
BLACK, GREY, TEXT = (0, 0, 0), (225, 225, 225), (40, 40, 40)


def pareto_front(points: list[dict]) -> list[dict]:
    """The points no other point beats on both lower loss and higher judge accuracy, by accuracy."""
    front = [p for p in points if not any(
        q["loss_mean"] <= p["loss_mean"] and q["judge_accuracy"] >= p["judge_accuracy"]
        and (q["loss_mean"], q["judge_accuracy"]) != (p["loss_mean"], p["judge_accuracy"]) for q in points)]
    return sorted(front, key=lambda p: p["judge_accuracy"])


def _transform(task: str):
    """Class cross-entropy spans decades: plotted as log10; the style loss as is."""
    return (lambda v: math.log10(max(v, 1e-6))) if task == "class" else (lambda v: v)


def _panel(draw: ImageDraw.ImageDraw, left: int, task: str, rows: list[dict]) -> None:
    ty = _transform(task)
    xs = [r["judge_accuracy"] for r in rows]
    ys = [ty(r["loss_mean"]) for r in rows]
    x_lo, x_hi = min(xs) - 0.02, max(xs) + 0.02
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.05 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x0, y0, x1, y1 = left + MARGIN_L, MARGIN_T, left + PANEL_W - MARGIN_R, PANEL_H - MARGIN_B

    def at(x: float, y: float) -> tuple[float, float]:
        return x0 + (x - x_lo) / (x_hi - x_lo) * (x1 - x0), y1 - (y - y_lo) / (y_hi - y_lo) * (y1 - y0)

    for k in range(5):
        y = y_lo + (y_hi - y_lo) * k / 4
        x = x_lo + (x_hi - x_lo) * k / 4
        _, py = at(x_lo, y)
        px, _ = at(x, y_lo)
        draw.line([(x0, py), (x1, py)], fill=GREY)
        label = tick_labels([y])[0] if task != "class" else f"1e{y:.1f}"
        draw.text((x0 - 6 - draw.textlength(label), py - 6), label, fill=TEXT)
        xl = f"{x:.2f}"
        draw.text((px - draw.textlength(xl) / 2, y1 + 6), xl, fill=TEXT)
    draw.rectangle([x0, y0, x1, y1], outline=BLACK)
    draw.text((x0, 8), f"{task} task: " + ("cross-entropy (log scale)" if task == "class" else "Gram loss")
              + " vs held-out judge accuracy", fill=BLACK)
    draw.text(((x0 + x1) / 2 - 80, y1 + 24), "judge accuracy (higher is better)", fill=TEXT)
    methods = [m for m in dict.fromkeys(r["method"] for r in rows if r.get("role") == "sweep")]
    for k, method in enumerate(methods):
        color = COLORS[k % len(COLORS)]
        points = [r for r in rows if r["method"] == method and r.get("role") == "sweep"]
        for p in points:
            px, py = at(p["judge_accuracy"], ty(p["loss_mean"]))
            r = 5 if p.get("best") else 3
            draw.ellipse([px - r, py - r, px + r, py + r], fill=color)
        front = [at(p["judge_accuracy"], ty(p["loss_mean"])) for p in pareto_front(points)]
        if len(front) > 1:
            draw.line(front, fill=color, width=2)
        draw.text((x1 + 10, y0 + 16 * k), f"- {method}", fill=color)
    for c in (r for r in rows if r.get("role") == "control"):
        px, py = at(c["judge_accuracy"], ty(c["loss_mean"]))
        draw.ellipse([px - 6, py - 6, px + 6, py + 6], outline=BLACK, width=2)
    draw.text((x1 + 10, y0 + 16 * len(methods) + 8), "o controls", fill=BLACK)
    draw.text((x1 + 10, y0 + 16 * len(methods) + 24), "big dot: best", fill=BLACK)


def plot_fronts(path: Path, rows: list[dict]) -> Path:
    """Write the plot of `bench methods` rows (both tasks side by side) to `path` atomically."""
    tasks = [t for t in ("style", "class") if any(r["task"] == t for r in rows)]
    image = Image.new("RGB", (PANEL_W * len(tasks), PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    for k, task in enumerate(tasks):
        _panel(draw, k * PANEL_W, task, [r for r in rows if r["task"] == task and r.get("role") in ("sweep", "control")])
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
