"""Paired statistics of two rows measured on the same seeds: is method A lower than method B?

Seed s of row A and seed s of row B start from the same noise, so their difference d_s is the
effect of the method alone; the statistic is over those differences, not over the two spreads.
"""

from __future__ import annotations

import math
from typing import Sequence


def paired_stats(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int]:
    """Statistics of d_s = a_s - b_s over the seeds (lower a is a win for a).

    a, b: per-seed values of equal length N >= 2, seed s in position s. Returns
    {"mean_diff": mean d, "sd": sample standard deviation of d (N - 1 in the denominator),
    "se": sd / sqrt(N) (standard error of the mean difference), "wins": count of d_s < 0,
    "ties": count of d_s == 0, "seeds": N}.
    """
    if len(a) != len(b):
        raise ValueError(f"paired statistics need the same seeds on both sides, got {len(a)} and {len(b)} values.")
    if len(a) < 2:
        raise ValueError(f"paired statistics need at least 2 seeds, got {len(a)}.")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return {"mean_diff": mean, "sd": sd, "se": sd / math.sqrt(n), "wins": sum(d < 0 for d in diffs),
            "ties": sum(d == 0 for d in diffs), "seeds": n}


def format_paired(name: str, stats: dict) -> str:
    """One printed line: 'name: mean difference -0.34, sd 0.17, standard error 0.03, lower on 30/32 seeds'."""
    return (f"{name}: mean difference {stats['mean_diff']:+.4g}, sd {stats['sd']:.3g}, "
            f"standard error {stats['se']:.3g}, lower on {stats['wins']}/{stats['seeds']} seeds")
