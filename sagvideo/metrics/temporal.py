"""Temporal stability of a stylized clip, measured against the motion of its source clip.

Motion comes from the SOURCE frames only (the output should move the way the input moves):
dense OpenCV Farneback flow (no weights) between consecutive grayscale source frames, forward
(t -> t+1) and backward (t+1 -> t), with an occlusion mask from forward-backward consistency.
Flow is computed at the source size shrunk to at most `FLOW_MAX_SIDE` px on the long side;
output frames of any other size are resized to the flow's size before warping (and to the
source size for flicker), so outputs at model resolution and at source resolution both work.
Everything runs pair by pair: memory does not grow with the clip length. A one-frame clip has
no pairs, and its temporal metrics are None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import cv2
import numpy as np

from ..errors import InputError
from .frames import check_clip, check_same_length, resize

FLOW_MAX_SIDE = 512  # Farneback cost grows with the pixel count; 512 px keeps a 1080p source cheap
# Forward-backward consistency (Sundaram et al. 2010, as used by Ruder et al. 2016 for video
# style transfer): x is occluded unless |f + b(x+f)|^2 < FB_ALPHA (|f|^2 + |b(x+f)|^2) + FB_BETA.
FB_ALPHA = 0.01  # tolerance growing with the motion, relative
FB_BETA = 0.5  # px^2: tolerance for sub-pixel error on slow motion
STATIC_EPS = 1e-6  # mean |change| per pixel in [0, 1] units below which a source clip counts as static


@dataclass(frozen=True)
class PairFlow:
    """Source flow between frames t and t+1, at the flow size (h, w).

    forward: (h, w, 2) float32 (dx, dy) px, frame t -> t+1: I_t(x) ~ I_{t+1}(x + forward(x)).
    backward: (h, w, 2) float32 px, frame t+1 -> t.
    valid: (h, w) bool, True where x is not occluded (consistent forward-backward) and x + forward(x)
    lies inside the frame.
    """

    forward: np.ndarray
    backward: np.ndarray
    valid: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) of the flow fields."""
        return self.valid.shape


@dataclass(frozen=True)
class WarpError:
    """mean: average of the per-pair errors (None without any scored pair); per_pair: (F - 1) values."""

    mean: float | None
    per_pair: list[float | None] = field(default_factory=list)

    @classmethod
    def from_pairs(cls, per_pair: list[float | None]) -> "WarpError":
        scored = [e for e in per_pair if e is not None]
        return cls(float(np.mean(scored)) if scored else None, list(per_pair))


@dataclass(frozen=True)
class Flicker:
    """value: output change / source change (the output's change itself when static_source).

    output_change, source_change: mean |frame_{t+1} - frame_t| in [0, 1] units, averaged over pairs.
    per_pair: (F - 1) ratios, None where that source pair is static. All None for a one-frame clip.
    """

    value: float | None
    output_change: float | None = None
    source_change: float | None = None
    static_source: bool = False
    per_pair: list[float | None] = field(default_factory=list)


def _flow_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _gray(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.cvtColor(resize(frame, size), cv2.COLOR_RGB2GRAY)


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flow from grayscale a to b, (h, w, 2) float32; 4 pyramid levels follow motions of ~30 px."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def _lookup(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """image sampled bilinearly at x + flow(x), and an (h, w) mask of where that point is inside the frame."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = grid_x + flow[..., 0]
    map_y = grid_y + flow[..., 1]
    sampled = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return sampled, inside


def _pair_flow(a: np.ndarray, b: np.ndarray) -> PairFlow:
    if np.array_equal(a, b):  # no motion by definition; Farneback would return ~1e-3 px of noise
        zero = np.zeros((*a.shape, 2), np.float32)
        return PairFlow(zero, zero, np.ones(a.shape, bool))
    forward, backward = _farneback(a, b), _farneback(b, a)
    back_at, inside = _lookup(backward, forward)
    mismatch = np.square(forward + back_at).sum(-1)
    bound = FB_ALPHA * (np.square(forward).sum(-1) + np.square(back_at).sum(-1)) + FB_BETA
    return PairFlow(forward, backward, inside & (mismatch < bound))


def source_flow(source_frames: np.ndarray, max_side: int | None = FLOW_MAX_SIDE) -> Iterator[PairFlow]:
    """Farneback flow of each consecutive source pair: uint8 (F, H, W, 3) -> F - 1 `PairFlow`s.

    Lazy: the flows are computed as they are iterated, one pair in memory at a time (wrap in
    `list()` to keep them). Frames are shrunk so the long side is at most `max_side` px (None:
    full size); the flows are in pixels of that size. Raises InputError for a malformed clip.
    """
    source = check_clip(source_frames, "source_frames")
    if max_side is not None and max_side < 8:
        raise InputError(f"max_side must be at least 8 px (or None for full size), got {max_side}.")
    size = _flow_size(source.shape[1], source.shape[2], max_side)

    def pairs() -> Iterator[PairFlow]:
        previous = _gray(source[0], size)
        for frame in source[1:]:
            current = _gray(frame, size)
            yield _pair_flow(previous, current)
            previous = current

    return pairs()


def _warped_difference(frame: np.ndarray, next_frame: np.ndarray, flow: PairFlow) -> np.ndarray:
    """warp(next_frame) - frame in [0, 1] units at flow.size, (h, w, 3) float32, where
    warp(next)(x) = next(x + forward(x)) (cv2.remap, bilinear)."""
    current = resize(frame, flow.size).astype(np.float32)
    warped, _ = _lookup(resize(next_frame, flow.size).astype(np.float32), flow.forward)
    return (warped - current) / 255.0


def pair_warp_error(frame: np.ndarray, next_frame: np.ndarray, flow: PairFlow) -> float | None:
    """Mean |warp(next_frame) - frame| over flow.valid pixels and channels, in [0, 1] units.

    frame, next_frame: uint8 (H, W, 3), resized to flow.size; warp(next)(x) = next(x + forward(x))
    (cv2.remap, bilinear). None when no pixel is valid (the whole frame occluded).
    """
    if not flow.valid.any():
        return None
    return float(np.abs(_warped_difference(frame, next_frame, flow))[flow.valid].mean())


def pair_warp_error_sq(frame: np.ndarray, next_frame: np.ndarray, flow: PairFlow) -> float | None:
    """Lai et al. 2018's squared form: sum over RGB of (warp(next_frame) - frame)^2, pixels in
    [0, 1], averaged over the flow.valid (non-occluded) pixels. Inputs as `pair_warp_error`."""
    if not flow.valid.any():
        return None
    return float(np.square(_warped_difference(frame, next_frame, flow)).sum(-1)[flow.valid].mean())


def warp_error(frames: np.ndarray, flows: Iterable[PairFlow], squared: bool = False) -> WarpError:
    """Warp error of a clip under the source flow: frame t+1 warped back onto frame t.

    frames: uint8 (F, H, W, 3), any size (resized to the flow size); flows: the F - 1 pairs of
    `source_flow` (a list or the lazy iterator). E_t = mean over non-occluded pixels x and
    channels of |I_{t+1}(x + f_t(x)) - I_t(x)| / 255; the result holds every E_t and their
    mean over pairs (pairs with no valid pixel are left out of the mean). Applied to the source
    frames themselves it gives the floor that flow errors and lighting changes leave.
    `squared`: E_t = mean over non-occluded x of sum over RGB of (I_{t+1}(x + f_t(x)) - I_t(x))^2 with
    pixels in [0, 1], the warping error of Lai et al. 2018 ("Learning Blind Video Temporal
    Consistency", eq. 5) with this module's flow and occlusion mask in place of FlowNet2's.
    """
    frames = check_clip(frames, "frames")
    per_pair: list[float | None] = []
    for t, flow in enumerate(flows):
        if t + 1 >= len(frames):
            raise InputError(f"got more flows than the {len(frames) - 1} frame pairs of frames. "
                             f"To fix: compute the flows with source_flow on the source of these frames.")
        per_pair.append((pair_warp_error_sq if squared else pair_warp_error)(frames[t], frames[t + 1], flow))
    if len(per_pair) != len(frames) - 1:
        raise InputError(f"got {len(per_pair)} flows for {len(frames) - 1} frame pairs. "
                         f"To fix: compute the flows with source_flow on the source of these frames.")
    return WarpError.from_pairs(per_pair)


def _mean_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(b.astype(np.int16) - a.astype(np.int16)).mean() / 255.0)


def flicker(frames: np.ndarray, source_frames: np.ndarray) -> Flicker:
    """Frame-to-frame change of the output relative to the source's.

    frames: uint8 (F, H, W, 3), resized to the source size; source_frames: uint8 (F, Hs, Ws, 3).
    c_t = mean |I_{t+1} - I_t| / 255 per pair; value = mean_t c_t(output) / mean_t c_t(source)
    (a ratio of means, so one still source pair does not blow it up). 1.0: the output changes
    as much as the input; above 1: flicker. A static source (mean change < STATIC_EPS) gives no
    ratio: value is then the output's own mean change and static_source is True, so a static
    output on a static source gives 0. F = 1: value None.
    """
    frames = check_clip(frames, "frames")
    source = check_clip(source_frames, "source_frames")
    check_same_length(frames, source, "source_frames")
    if len(frames) == 1:
        return Flicker(None)
    size = source.shape[1:3]
    out_changes, src_changes = [], []
    previous = resize(frames[0], size)
    for t in range(1, len(frames)):
        current = resize(frames[t], size)
        out_changes.append(_mean_change(previous, current))
        src_changes.append(_mean_change(source[t - 1], source[t]))
        previous = current
    output_change, source_change = float(np.mean(out_changes)), float(np.mean(src_changes))
    static = source_change < STATIC_EPS
    per_pair = [o / s if s >= STATIC_EPS else None for o, s in zip(out_changes, src_changes)]
    value = output_change if static else output_change / source_change
    return Flicker(value, output_change, source_change, static, per_pair)
