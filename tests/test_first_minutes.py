"""A new user's first minutes: progress that ends exact, image defaults under any --config layering,
plots readable at any length, quiet output, and a README whose library snippet runs as written."""

import numpy as np
import pytest
import torch

import sagvideo.pipeline as pipeline_module
from sagvideo import load_config
from sagvideo.pipeline import StylizePipeline
from sagvideo.runtime import Runtime


@pytest.fixture(scope="module")
def runtime():
    return Runtime.from_config(load_config("tiny"))


@pytest.mark.parametrize("overrides,planned_exactly", [
    ({"guidance.n": 3}, True),  # SAG, symplectic, one window: the first prediction starts the estimate
    ({"video.window": 2, "video.overlap": 1}, True),  # several windows: the gradient makes its own first
    ({"guidance.method": "freedom"}, False),  # other methods: corrected step by step
])
def test_the_sampling_bar_ends_exactly_at_its_total(runtime, monkeypatch, overrides, planned_exactly):
    bars = []

    class Recording(pipeline_module.SamplingProgress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.planned = self.bar.total
            bars.append(self)

    monkeypatch.setattr(pipeline_module, "SamplingProgress", Recording)
    config = load_config("tiny", {"sampling.steps": 4, "guidance.repeats": 1, "output.metrics": False, **overrides})
    pipe = StylizePipeline(runtime, config)
    frames = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    pipe(frames, torch.rand(3, 64, 64), "x", progress=True)
    bar = bars[-1]
    assert bar.bar.n == bar.bar.total  # never "33/39"
    units = bar.calls + bar.graph_calls
    assert bar.bar.n == units
    if planned_exactly:
        assert bar.planned == units  # the ETA was right from the first step
