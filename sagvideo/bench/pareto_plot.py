"""The PNGs of `bench methods` (per task, loss against held-out judge accuracy) and `bench
video-proxy` (style loss against warp error): every sweep point of each method as a dot and its
Pareto front as a line, the controls as black rings. Pillow only."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw

from ..files import atomic_path
from ..metrics.plot import COLORS, tick_labels

PANEL_W, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 520, 420, 70, 130, 30, 46
BLACK, GREY, TEXT = (0, 0, 0), (225, 225, 225), (40, 40, 40)


@dataclass(frozen=True)
class Axes:
    """What a panel plots: row key `x` across (better when higher if `x_up`), row key `y` (lower is better) up."""

    x: str
    x_label: str
    x_up: bool
    y: str
    title: str
    y_transform: Callable[[float], float] = lambda v: v
    y_tick: Callable[[float], str] = lambda v: tick_labels([v])[0]


def methods_axes(task: str) -> Axes:
    """`bench methods`: the loss against the judge's accuracy (class cross-entropy spans decades: log10)."""
    log = task == "class"
    return Axes("judge_accuracy", "judge accuracy (higher is better)", True, "loss_mean",
                f"{task} task: " + ("cross-entropy (log scale)" if log else "Gram loss") + " vs held-out judge accuracy",
                (lambda v: math.log10(max(v, 1e-6))) if log else (lambda v: v),
                (lambda v: f"1e{v:.1f}") if log else (lambda v: tick_labels([v])[0]))


VIDEO_AXES = Axes("warp_error", "warp error against the known motion (lower is better)", False, "style_loss",
                  "video proxy: style loss vs warp error")


def pareto_front(points: list[dict], axes: Axes | None = None) -> list[dict]:
    """The points no other point beats on both a lower y and a better x, ordered along x."""
    axes = axes or methods_axes("style")
    sign = 1.0 if axes.x_up else -1.0
    key = lambda p: (p[axes.y], sign * p[axes.x])  # noqa: E731 - lower first, higher second is better
    front = [p for p in points if not any(
        key(q)[0] <= key(p)[0] and key(q)[1] >= key(p)[1] and key(q) != key(p) for q in points)]
    return sorted(front, key=lambda p: p[axes.x])


def _panel(draw: ImageDraw.ImageDraw, left: int, axes: Axes, rows: list[dict]) -> None:
    ty = axes.y_transform
    xs = [r[axes.x] for r in rows]
    ys = [ty(r[axes.y]) for r in rows]
    x_pad = (max(xs) - min(xs)) * 0.05 or 0.02
    x_lo, x_hi = min(xs) - x_pad, max(xs) + x_pad
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
        label = axes.y_tick(y)
        draw.text((x0 - 6 - draw.textlength(label), py - 6), label, fill=TEXT)
        xl = tick_labels([x])[0]
        draw.text((px - draw.textlength(xl) / 2, y1 + 6), xl, fill=TEXT)
    draw.rectangle([x0, y0, x1, y1], outline=BLACK)
    draw.text((x0, 8), axes.title, fill=BLACK)
    draw.text(((x0 + x1) / 2 - draw.textlength(axes.x_label) / 2, y1 + 24), axes.x_label, fill=TEXT)
    methods = [m for m in dict.fromkeys(r["method"] for r in rows if r.get("role") == "sweep")]
    for k, method in enumerate(methods):
        color = COLORS[k % len(COLORS)]
        points = [r for r in rows if r["method"] == method and r.get("role") == "sweep"]
        for p in points:
            px, py = at(p[axes.x], ty(p[axes.y]))
            r = 5 if p.get("best") else 3
            draw.ellipse([px - r, py - r, px + r, py + r], fill=color)
        front = [at(p[axes.x], ty(p[axes.y])) for p in pareto_front(points, axes)]
        if len(front) > 1:
            draw.line(front, fill=color, width=2)
        draw.text((x1 + 10, y0 + 16 * k), f"- {method}", fill=color)
    for c in (r for r in rows if r.get("role") == "control"):
        px, py = at(c[axes.x], ty(c[axes.y]))
        draw.ellipse([px - 6, py - 6, px + 6, py + 6], outline=BLACK, width=2)
    draw.text((x1 + 10, y0 + 16 * len(methods) + 8), "o controls", fill=BLACK)
    draw.text((x1 + 10, y0 + 16 * len(methods) + 24), "big dot: best", fill=BLACK)


def plot_fronts(path: Path, rows: list[dict]) -> Path:
    """Write the plot of `bench methods` rows (both tasks side by side) to `path` atomically."""
    tasks = [t for t in ("style", "class") if any(r["task"] == t for r in rows)]
    panels = [(methods_axes(t), [r for r in rows if r["task"] == t and r.get("role") in ("sweep", "control")])
              for t in tasks]
    return _save(path, panels)


def plot_video_front(path: Path, rows: list[dict]) -> Path:
    """Write the plot of `bench video-proxy` rows (style loss vs warp error) to `path` atomically."""
    return _save(path, [(VIDEO_AXES, [r for r in rows if r.get("role") in ("sweep", "control")])])


def _save(path: Path, panels: list[tuple[Axes, list[dict]]]) -> Path:
    image = Image.new("RGB", (PANEL_W * len(panels), PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    for k, (axes, rows) in enumerate(panels):
        _panel(draw, k * PANEL_W, axes, rows)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
