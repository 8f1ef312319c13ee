"""A two-panel PNG of a run, drawn with Pillow only: style loss per guided pass, metrics per frame."""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..files import atomic_path

WIDTH, PANEL_HEIGHT = 880, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 260, 24, 32  # plot-area margins inside a panel; RIGHT holds the legend
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127)]
AXIS, GRID, TEXT = (0, 0, 0), (225, 225, 225), (40, 40, 40)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-30):
        pad = abs(lo) * 0.1 or 1.0  # a flat series still needs a y range to sit in
        return lo - pad, hi + pad
    return lo, hi


def _label(value: float) -> str:
    return f"{value:.3g}"


class _Axes:
    """Maps data (x, y) to pixels inside the plot area (x0, y0, x1, y1)."""

    def __init__(self, area: tuple[int, int, int, int], x_range: tuple[float, float], y_range: tuple[float, float]):
        self.area, self.x_range, self.y_range = area, x_range, y_range

    def __call__(self, x: float, y: float) -> tuple[float, float]:
        x0, y0, x1, y1 = self.area
        (a, b), (lo, hi) = self.x_range, self.y_range
        px = (x0 + x1) / 2 if b == a else x0 + (x - a) / (b - a) * (x1 - x0)
        return px, y1 - (y - lo) / (hi - lo) * (y1 - y0)


def _draw_axes(draw: ImageDraw.ImageDraw, axes: _Axes, x_label: str) -> None:
    x0, y0, x1, y1 = axes.area
    (a, b), (lo, hi) = axes.x_range, axes.y_range
    for y in np.linspace(lo, hi, 5):
        _, py = axes(a, y)
        draw.line([(x0, py), (x1, py)], fill=GRID)
        text = _label(y)
        draw.text((x0 - 6 - draw.textlength(text), py - 6), text, fill=TEXT)
    for x in range(int(a), int(b) + 1, max(1, math.ceil((b - a) / 6))):
        px, _ = axes(x, lo)
        draw.line([(px, y1), (px, y1 + 4)], fill=AXIS)
        text = str(int(x))
        draw.text((px - draw.textlength(text) / 2, y1 + 6), text, fill=TEXT)
    draw.rectangle([x0, y0, x1, y1], outline=AXIS)
    draw.text(((x0 + x1) / 2 - draw.textlength(x_label) / 2, y1 + 18), x_label, fill=TEXT)


def _draw_series(draw: ImageDraw.ImageDraw, axes: _Axes, xs: Sequence[float], ys: Sequence[float | None],
                 color: tuple[int, int, int]) -> None:
    """A polyline broken at missing values, with a dot per point when the points are few."""
    segment: list[tuple[float, float]] = []
    points = [(x, y) for x, y in zip(xs, ys)]
    for x, y in points + [(None, None)]:
        if y is not None and math.isfinite(y):
            segment.append(axes(x, y))
            continue
        if len(segment) > 1:
            draw.line(segment, fill=color, width=2)
        if len(points) <= 60:
            for px, py in segment:
                draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
        segment = []


def _panel(image: Image.Image, top: int, title: str, series: dict[str, list[float | None]], x_start: int,
           x_label: str, empty_note: str) -> None:
    """One panel at height `top`: every series against x = x_start, x_start + 1, ...; a note if there is none.

    With several series each is scaled to its own [min, max] (shown in the legend) so metrics of
    different units share the axes; a single series keeps its own units.
    """
    draw = ImageDraw.Draw(image)
    area = (LEFT, top + TOP, WIDTH - RIGHT, top + PANEL_HEIGHT - BOTTOM)
    series = {name: list(values) for name, values in series.items() if _finite(values)}
    scaled = len(series) > 1
    draw.text((LEFT, top + 6), title + (" (each series scaled to its [min, max])" if scaled else ""), fill=AXIS)
    if not series:
        draw.rectangle(area, outline=GRID)
        width = draw.textlength(empty_note)
        draw.text(((area[0] + area[2] - width) / 2, (area[1] + area[3]) / 2 - 6), empty_note, fill=TEXT)
        return
    length = max(len(values) for values in series.values())
    x_range = (x_start, x_start + max(length - 1, 0))
    y_range = (0.0, 1.0) if scaled else _range(_finite(next(iter(series.values()))))
    axes = _Axes(area, x_range, y_range)
    _draw_axes(draw, axes, x_label)
    for i, (name, values) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        finite = _finite(values)
        lo, hi = min(finite), max(finite)
        if scaled:
            values = [None if v is None or not math.isfinite(v) else (0.5 if hi == lo else (v - lo) / (hi - lo))
                      for v in values]
        _draw_series(draw, axes, range(x_start, x_start + len(values)), values, color)
        legend_y = area[1] + 4 + 16 * i
        draw.line([(area[2] + 12, legend_y + 6), (area[2] + 32, legend_y + 6)], fill=color, width=3)
        note = f" [{_label(lo)}, {_label(hi)}]" if scaled else ""
        draw.text((area[2] + 38, legend_y), f"{name}{note}", fill=TEXT)


def plot_run(path: str | os.PathLike, guided_losses: Sequence[float],
             per_frame: Mapping[str, Sequence[float | None]]) -> None:
    """Write a PNG (atomically) with two panels, each saying so when it has nothing to show.

    guided_losses: the style loss of each guided pass, in order (x: pass number, from 1).
    per_frame: metric name -> values by frame index (x: frame, from 0), e.g. the "per_frame"
    dict of `compute_metrics`; None / NaN entries are gaps, empty lists are left out.
    """
    image = Image.new("RGB", (WIDTH, 2 * PANEL_HEIGHT), "white")
    _panel(image, 0, "style loss per guided pass", {"style loss": list(guided_losses)}, 1, "guided pass",
           "no guided passes")
    _panel(image, PANEL_HEIGHT, "metrics per frame", {k: list(v) for k, v in per_frame.items()}, 0, "frame",
           "no per-frame metrics")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
