"""A job's relative cost, for ordering a batch so that the ranks finish together."""

from __future__ import annotations

from ..config import Config
from ..defaults import guided_ns
from ..method_registry import METHODS


def network_passes(config: Config) -> float:
    """Estimated UNet(+ControlNet) evaluations of one job, in forward-pass units, per window.

    The guidance method's own estimate (`method_registry`): a graph evaluation with its VJP
    counts about two forwards. Denoise fractions are not counted: the order only needs ratios.
    """
    s, g = config.sampling, config.guidance
    method = METHODS[g.method]
    guided = guided_ns(g.start, g.end, s.steps, g.n, g.adaptive_n) if g.enabled and method.guides(g.strength) else {}
    return method.run_cost(s.steps, guided, g.passes, getattr(config, g.method, None)).forward_units


def estimate_cost(config: Config, model_size: tuple[int, int], frames: int) -> float:
    """Relative cost of a job: frames x pixels at model size x network passes (windows add overlap)."""
    v = config.video
    window, overlap = v.window, v.overlap
    covered = frames
    if 0 < window < frames:  # frames in overlaps are predicted once per window covering them
        windows = -(-(frames - overlap) // (window - overlap))
        covered = windows * window
    width, height = model_size
    return float(covered * width * height * network_passes(config))
