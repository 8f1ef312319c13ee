"""All metrics of one run in a plain, JSON-serialisable dict, for the run report."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
from torch import Tensor

from ..errors import InputError
from .frames import check_clip, check_same_length
from .semantic import CHUNK, clip_consistency, clip_embedding_kind, depth_fidelity, style_distance
from .temporal import FLOW_MAX_SIDE, WarpError, flicker, pair_warp_error, pair_warp_error_sq, source_flow

METRICS = ("warp_error", "warp_error_source", "warp_error_sq", "warp_error_sq_source", "flicker", "style_distance", "clip_consistency", "depth_fidelity")


def _number(value: Any) -> float | None:
    """float, or None for None / NaN / inf (strict JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def _numbers(values: list) -> list[float | None]:
    return [_number(v) for v in values]


def _warp_errors(frames: np.ndarray, source: np.ndarray, max_side: int | None) -> dict[str, WarpError]:
    """Both warp errors (absolute, Lai et al.'s squared) of the output and of the source under one
    pass of source flows (each pair's flow computed once)."""
    pairs: dict[str, list] = {"warp_error": [], "warp_error_source": [], "warp_error_sq": [],
                              "warp_error_sq_source": []}
    for t, flow in enumerate(source_flow(source, max_side)):
        for suffix, clip in (("", frames), ("_source", source)):
            pairs["warp_error" + suffix].append(pair_warp_error(clip[t], clip[t + 1], flow))
            pairs["warp_error_sq" + suffix].append(pair_warp_error_sq(clip[t], clip[t + 1], flow))
    return {name: WarpError.from_pairs(values) for name, values in pairs.items()}


def compute_metrics(
    frames: np.ndarray,
    source_frames: np.ndarray,
    *,
    per_frame_loss: Callable[[Tensor], Tensor] | None = None,
    clip_model: Any = None,
    depth_estimator: Callable[[np.ndarray], np.ndarray] | None = None,
    input_depth: np.ndarray | None = None,
    flow_max_side: int | None = FLOW_MAX_SIDE,
    chunk: int = CHUNK,
) -> dict[str, Any]:
    """Quality metrics of a stylized clip, as a JSON-ready dict.

    frames: output, uint8 (F, H, W, 3); source_frames: the input frames, uint8 (F, Hs, Ws, 3).
    Optional components switch on the semantic metrics: per_frame_loss ((N, 3, H, W) in [0, 1]
    -> (N,)) for style_distance, clip_model (a CLIP vision model) for clip_consistency, and
    depth_estimator with input_depth (F, h, w) for depth_fidelity (both or neither).

    Returns {"warp_error", "warp_error_source" (mean absolute error), "warp_error_sq",
    "warp_error_sq_source" (Lai et al. 2018's squared form, see `temporal.warp_error`), "flicker",
    "style_distance", "clip_consistency", "depth_fidelity"}: float or None (None: not computed,
    undefined, or F = 1 for the temporal ones); "flicker_static_source": bool (flicker is then the
    output's change, not a ratio); "clip_consistency_embedding": "projected" or "pooled" (which CLIP
    embedding, `semantic.clip_embedding_kind`; None without a model);
    "per_frame": the same names -> lists of F values indexed by frame, where a pair metric
    (t, t+1) is stored at frame t+1 and frame 0 holds None, and a metric not computed has [];
    "seconds": wall time of the whole computation.
    """
    start = time.perf_counter()
    frames = check_clip(frames, "frames")
    source = check_clip(source_frames, "source_frames")
    check_same_length(frames, source, "source_frames")
    if (depth_estimator is None) != (input_depth is None):
        raise InputError("depth_fidelity needs both depth_estimator and input_depth. "
                         "To fix: pass both, or neither to skip the metric.")

    warps = _warp_errors(frames, source, flow_max_side)
    flick = flicker(frames, source)
    results: dict[str, tuple[float | None, list]] = {
        **{name: (w.mean, [None, *w.per_pair]) for name, w in warps.items()},
        "flicker": (flick.value, [None, *flick.per_pair]),
        **{name: (None, []) for name in ("style_distance", "clip_consistency", "depth_fidelity")},  # unless below
    }
    if per_frame_loss is not None:
        style = style_distance(frames, per_frame_loss, chunk)
        results["style_distance"] = (style.mean, style.values)
    if clip_model is not None:
        clip = clip_consistency(frames, clip_model, chunk)
        results["clip_consistency"] = (clip.mean, [None, *clip.values])
    if depth_estimator is not None:
        depth = depth_fidelity(frames, input_depth, depth_estimator, chunk)
        results["depth_fidelity"] = (depth.mean, depth.values)

    report: dict[str, Any] = {name: _number(results[name][0]) for name in METRICS}
    report["flicker_static_source"] = bool(flick.static_source)
    report["clip_consistency_embedding"] = clip_embedding_kind(clip_model) if clip_model is not None else None
    report["per_frame"] = {name: _numbers(results[name][1]) for name in METRICS}
    report["seconds"] = round(time.perf_counter() - start, 4)
    return report
