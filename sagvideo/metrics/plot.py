"""A PNG of a run, drawn with Pillow only: style loss per guided pass, then one small panel per metric.

Readable at any length: tick labels carry as many digits as it takes to tell them apart (a loss
going from 519.31 to 519.38 is not labelled "519" five times), each per-frame metric gets its own
panel in its own units (small multiples: six lines on one axis are a tangle at 120 frames), and the
frame axis is ticked in whole frames.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..files import atomic_path

WIDTH, PANEL_HEIGHT, SMALL_HEIGHT, COLUMNS = 880, 260, 200, 2
LEFT, RIGHT, TOP, BOTTOM = 76, 20, 24, 32  # plot-area margins inside a panel
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


def tick_labels(values: Sequence[float]) -> list[str]:
    """Labels for tick `values` with the fewest significant digits (3 or more) that tell them apart."""
    for digits in range(3, 13):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(set(values)):
            return labels
    return [repr(float(v)) for v in values]


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
    ticks = np.linspace(lo, hi, 5)
    for y, text in zip(ticks, tick_labels([float(t) for t in ticks])):
        _, py = axes(a, y)
        draw.line([(x0, py), (x1, py)], fill=GRID)
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


def _panel(image: Image.Image, box: tuple[int, int, int, int], title: str, values: Sequence[float | None],
           x_start: int, x_label: str, empty_note: str, color: tuple[int, int, int] = COLORS[0]) -> None:
    """One series in its own units in `box` = (left, top, width, height), x = x_start, x_start + 1, ...;
    a note instead when it has no finite value."""
    draw = ImageDraw.Draw(image)
    left, top, width, height = box
    area = (left + LEFT, top + TOP, left + width - RIGHT, top + height - BOTTOM)
    finite = _finite(values)
    span = tick_labels([min(finite), max(finite)]) if finite else []
    draw.text((area[0], top + 6), title + (f" (min {span[0]}, max {span[-1]})" if finite else ""), fill=AXIS)
    if not finite:
        draw.rectangle(area, outline=GRID)
        note = draw.textlength(empty_note)
        draw.text(((area[0] + area[2] - note) / 2, (area[1] + area[3]) / 2 - 6), empty_note, fill=TEXT)
        return
    axes = _Axes(area, (x_start, x_start + max(len(values) - 1, 0)), _range(finite))
    _draw_axes(draw, axes, x_label)
    _draw_series(draw, axes, range(x_start, x_start + len(values)), list(values), color)


def plot_run(path: str | os.PathLike, guided_losses: Sequence[float],
             per_frame: Mapping[str, Sequence[float | None]]) -> None:
    """Write a PNG (atomically): the loss panel, then one small panel per per-frame metric.

    guided_losses: the style loss of each guided pass, in order (x: pass number, from 1).
    per_frame: metric name -> values by frame index (x: frame, from 0), e.g. the "per_frame"
    dict of `compute_metrics`; None / NaN entries are gaps, metrics with no value are left out.
    Each panel says so when it has nothing to show.
    """
    metrics = {name: list(v) for name, v in per_frame.items() if _finite(list(v))}
    rows = max(1, math.ceil(len(metrics) / COLUMNS))
    image = Image.new("RGB", (WIDTH, PANEL_HEIGHT + rows * SMALL_HEIGHT), "white")
    _panel(image, (0, 0, WIDTH, PANEL_HEIGHT), "style loss per guided pass", list(guided_losses), 1, "guided pass",
           "no guided passes")
    if not metrics:
        _panel(image, (0, PANEL_HEIGHT, WIDTH, SMALL_HEIGHT), "metrics per frame", [], 0, "frame",
               "no per-frame metrics")
    small = WIDTH // COLUMNS
    for i, (name, values) in enumerate(metrics.items()):
        box = ((i % COLUMNS) * small, PANEL_HEIGHT + (i // COLUMNS) * SMALL_HEIGHT, small, SMALL_HEIGHT)
        _panel(image, box, name, values, 0, "frame", "", COLORS[(i + 1) % len(COLORS)])
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
