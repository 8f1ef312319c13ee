"""Context windows: a clip of any length through a model that sees a few frames at a time.

The motion module attends over at most a window of frames, so a long clip (B, C, F, h, w) is
covered by overlapping windows; at every evaluation each window is predicted on its own and the
predictions of frames that several windows cover are blended with weights that rise smoothly
(raised cosine) across each overlap, so there are no hard seams. The weights of every frame sum
to one. With one window covering the clip, this is exactly the joint prediction.

`WindowedEps` is an `EpsWithVJP`: its vector-Jacobian product is computed window by window,
so the guidance gradient through it is the exact gradient of the windowed sampler while only
one group of windows holds a graph at a time (memory set by the window, not the clip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from .vjp import input_vjp

Span = tuple[int, int]  # frames [start, stop) of the clip
# window_fn(x_windows (k*B, C, L, h, w), t, spans (k of them)) -> (eps, reference), both like x_windows
WindowFn = Callable[[Tensor, int, Sequence[Span]], tuple[Tensor, Tensor]]
# window_vjp(x_windows, t, spans, cotangent like x_windows) -> (d eps / d x_windows)^T cotangent
WindowVJP = Callable[[Tensor, int, Sequence[Span], Tensor], Tensor]


@dataclass(frozen=True)
class ContextWindows:
    """Windows over `frames` frames: `spans[w] = (start, stop)` and `weights[w][j]` for frame start + j.

    For every frame the weights of the windows covering it sum to 1.
    """

    frames: int
    spans: tuple[Span, ...]
    weights: tuple[tuple[float, ...], ...]

    def __len__(self) -> int:
        return len(self.spans)

    def frame_weight_sums(self) -> list[float]:
        """Sum over windows of each frame's weight (1 for every frame, up to round-off)."""
        sums = [0.0] * self.frames
        for (start, _), weights in zip(self.spans, self.weights):
            for j, w in enumerate(weights):
                sums[start + j] += w
        return sums


def window_spans(frames: int, size: int, overlap: int) -> list[Span]:
    """Windows of `size` frames starting every `size - overlap` frames, the last one ending at the clip's end.

    `size <= 0` or `size >= frames` gives one window over the whole clip.
    """
    if frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {frames}.")
    if size <= 0 or size >= frames:
        return [(0, frames)]
    if not 0 <= overlap < size:
        raise ValueError(f"the window overlap must be between 0 and the window size - 1 ({size - 1}), got {overlap}.")
    starts = list(range(0, frames - size + 1, size - overlap))
    if starts[-1] + size < frames:
        starts.append(frames - size)  # a full last window rather than a short one
    return [(s, s + size) for s in starts]


def _ramp(j: int, overlap: int) -> float:
    """Raised cosine rising over `overlap` frames: position j = 0 .. overlap - 1 -> (0, 1)."""
    return 0.5 - 0.5 * math.cos(math.pi * (j + 1) / (overlap + 1)) if j < overlap else 1.0


def blend_weights(frames: int, spans: Sequence[Span], overlap: int) -> list[list[float]]:
    """Per window, per frame in it: smooth weights normalised so each frame's weights sum to 1.

    A window edge inside the clip ramps up over `overlap` frames; an edge at the clip's start or
    end does not (nothing else covers those frames).
    """
    raw = []
    for start, stop in spans:
        length = stop - start
        left = [_ramp(j, overlap) if start > 0 else 1.0 for j in range(length)]
        right = [_ramp(length - 1 - j, overlap) if stop < frames else 1.0 for j in range(length)]
        raw.append([a * b for a, b in zip(left, right)])
    totals = [0.0] * frames
    for (start, _), weights in zip(spans, raw):
        for j, w in enumerate(weights):
            totals[start + j] += w
    return [[w / totals[start + j] for j, w in enumerate(weights)] for (start, _), weights in zip(spans, raw)]


def context_windows(frames: int, size: int, overlap: int) -> ContextWindows:
    """The windows and blending weights for a clip of `frames` frames (see `window_spans`)."""
    spans = window_spans(frames, size, overlap)
    weights = blend_weights(frames, spans, overlap) if len(spans) > 1 else [[1.0] * frames]
    return ContextWindows(frames, tuple(spans), tuple(tuple(w) for w in weights))


class WindowedEps:
    """eps(x, t) over a whole clip x (B, C, F, h, w) from a per-window predictor, blended.

    `eps(x)[:, :, f] = sum_w weight_w[f] * eps_w(x[:, :, window w])[:, :, f - start_w]`.
    `batch` windows are predicted in one call (stacked along the batch dimension, window-major).
    `on_window(count)` is called after each call with the number of windows it evaluated.
    `window_vjp`, when given, differentiates a group of windows itself (e.g. one CFG branch at
    a time); by default the group's prediction is differentiated with autograd.
    """

    def __init__(self, window_fn: WindowFn, windows: ContextWindows, *, batch: int = 1,
                 on_window: Callable[[int], None] | None = None, window_vjp: WindowVJP | None = None):
        if batch < 1:
            raise ValueError(f"windows per call must be >= 1, got {batch}.")
        self.window_fn = window_fn
        self.windows = windows
        self.batch = batch
        self.on_window = on_window
        self.window_vjp = window_vjp

    def _groups(self) -> Iterator[list[int]]:
        indices = list(range(len(self.windows)))
        for i in range(0, len(indices), self.batch):
            yield indices[i:i + self.batch]

    def _gather(self, x: Tensor, group: list[int]) -> Tensor:
        return torch.cat([x[:, :, slice(*self.windows.spans[w])] for w in group])

    def _weight(self, w: int, like: Tensor) -> Tensor:
        """Window w's weights shaped (1, 1, L, 1, 1) to multiply a window's prediction."""
        return torch.tensor(self.windows.weights[w], dtype=like.dtype, device=like.device).view(1, 1, -1, 1, 1)

    def _predict(self, x_windows: Tensor, t: int, group: list[int]) -> tuple[Tensor, Tensor]:
        out = self.window_fn(x_windows, t, [self.windows.spans[w] for w in group])
        if self.on_window is not None:
            self.on_window(len(group))
        return out

    def eps_with_reference(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Blended (eps, reference) for the whole clip, shaped like x; differentiable under grad."""
        if x.dim() != 5 or x.shape[2] != self.windows.frames:
            raise ValueError(f"x must be (B, C, F, h, w) with F = {self.windows.frames}, got {tuple(x.shape)}.")
        eps, reference = torch.zeros_like(x), torch.zeros_like(x)
        for group in self._groups():
            self._add_prediction(eps, reference, group, *self._predict(self._gather(x, group), t, group))
        return eps, reference

    def _add_prediction(self, eps: Tensor, reference: Tensor, group: list[int], e: Tensor, r: Tensor) -> None:
        """Add a group's predictions e, r (k*B, C, L, h, w), weighted, into the clip's eps and reference."""
        b = eps.shape[0]
        for j, w in enumerate(group):
            span, weight = slice(*self.windows.spans[w]), self._weight(w, eps)
            eps[:, :, span] += weight * e[j * b:(j + 1) * b].to(eps.dtype)
            reference[:, :, span] += weight * r[j * b:(j + 1) * b].to(eps.dtype)

    def _add_gradient(self, out: Tensor, group: list[int], g: Tensor) -> None:
        """Add a group's VJP g (k*B, C, L, h, w) into the clip's gradient `out` (B, C, F, h, w)."""
        b = out.shape[0]
        for j, w in enumerate(group):
            out[:, :, slice(*self.windows.spans[w])] += g[j * b:(j + 1) * b].to(out.dtype)

    def __call__(self, x: Tensor, t: int) -> Tensor:
        return self.eps_with_reference(x, t)[0]

    def vjp(self, x: Tensor, t: int, cotangent: Tensor) -> Tensor:
        """`(d eps / d x)^T cotangent` (shape of x), one group of windows' graph at a time."""
        out = torch.zeros_like(x)
        for group in self._groups():
            self._add_gradient(out, group, self._group_vjp(x, t, cotangent, group))
        return out

    def _group_vjp(self, x: Tensor, t: int, cotangent: Tensor, group: list[int]) -> Tensor:
        """One group's VJP (k*B, C, L, h, w): its windows' weighted cotangent through their prediction."""
        weighted = torch.cat([self._weight(w, x) * cotangent[:, :, slice(*self.windows.spans[w])] for w in group])
        if self.window_vjp is not None:
            g = self.window_vjp(self._gather(x.detach(), group), t, [self.windows.spans[w] for w in group], weighted)
            if self.on_window is not None:
                self.on_window(len(group))
            return g
        return input_vjp(lambda leaf: self._predict(leaf, t, group)[0], self._gather(x.detach(), group), weighted)
