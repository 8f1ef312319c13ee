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


# (task, method, guided knobs, the knobs that turn its pull off); n = 2, one pass unless matched
LOWERS = [
    ("style", "sag", {"guidance.strength": 2.0, "guidance.passes": 1}, {"guidance.strength": 0.0}),
    ("style", "freedom", {"guidance.strength": 2.0, "guidance.passes": 1}, {"guidance.strength": 0.0}),
    ("style", "ug", {"guidance.strength": 2.0, "guidance.passes": 2},
     {"guidance.strength": 0.0, "ug.backward_steps": 0}),
    ("style", "mpgd", {"guidance.strength": 2.0, "mpgd.scale": 1.0}, {"guidance.strength": 0.0}),
    ("style", "doodl", {"doodl.iterations": 3, "doodl.clip": 0.1}, {"doodl.iterations": 0}),
    ("class", "cg", {"cg.scale": 1.0}, {"cg.scale": 0.0}),
    ("class", "gfcg", {"gfcg.scale": 2.0}, {"gfcg.scale": 0.0}),
]


@pytest.mark.parametrize("task,method,guided,off", LOWERS, ids=[f"{t}-{m}" for t, m, _, _ in LOWERS])
def test_each_method_lowers_the_proxy_loss_against_its_strength_zero_control(task, method, guided, off):
    """4 seeds, 6 DDIM steps on the trained proxy; the control runs the same passes with no pull."""
    from sagvideo.bench.methods import measure_method

    with_pull = measure_method(task, method, "guided", steps=6, seeds=4, n=2, knobs=guided)
    control = measure_method(task, method, "control", steps=6, seeds=4, n=2, knobs={**guided, **off})
    stats = paired_stats(with_pull["loss_per_seed"], control["loss_per_seed"])
    assert stats["mean_diff"] < -0.02 * control["loss_mean"] and stats["wins"] >= 3, (stats, control["loss_mean"])
