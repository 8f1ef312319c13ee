"""A job's relative cost, for ordering a batch so that the ranks finish together."""

from __future__ import annotations

from ..config import Config
from ..defaults import guided_indices


def network_passes(config: Config) -> float:
    """Estimated UNet(+ControlNet) evaluations of one job, in forward-pass units, per window.

    Unguided step: 1. Guided step, per repeat: 2n - 1 evaluations, n of them with a graph plus
    their VJP (about 2 forwards each): about 3n. With adaptive n the average n is (n + 1) / 2.
    """
    s, g = config.sampling, config.guidance
    guided = len(guided_indices(g.start, g.end, s.steps)) if g.enabled and g.strength > 0 else 0
    n = (g.n + 1) / 2 if g.adaptive_n else g.n
    return (s.steps - guided) + guided * g.repeats * 3 * n


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
