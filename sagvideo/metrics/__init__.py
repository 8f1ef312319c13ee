"""Quality metrics of a stylized clip: temporal stability against the source, style, content, depth.

Model-agnostic: numpy, OpenCV and torch; models (style loss, CLIP, depth) are passed in.
"""

from .plot import plot_run
from .report import METRICS, compute_metrics
from .semantic import PerFrame, clip_consistency, depth_fidelity, pearson, style_distance
from .temporal import (FB_ALPHA, FB_BETA, FLOW_MAX_SIDE, Flicker, PairFlow, WarpError, flicker, pair_warp_error,
                       pair_warp_error_sq, source_flow, warp_error)

__all__ = [
    "FB_ALPHA", "FB_BETA", "FLOW_MAX_SIDE", "METRICS", "Flicker", "PairFlow", "PerFrame", "WarpError",
    "clip_consistency", "compute_metrics", "depth_fidelity", "flicker", "pair_warp_error", "pair_warp_error_sq",
    "pearson", "plot_run", "source_flow", "style_distance", "warp_error",
]
