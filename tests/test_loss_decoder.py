"""`model.loss_decoder`: a small decoder for the style loss only (an approximation, labelled)."""

import numpy as np
import pytest
import torch

from sagvideo.config import load_config
from sagvideo.errors import ConfigError
from sagvideo.models.loss_decoder import NOTE, _random_tiny, tiny_decode
from sagvideo.pipeline import StylizePipeline
from sagvideo.pipeline.runtime import Runtime

FAST = {"video.frames": 2, "sampling.steps": 3, "guidance.n": 2, "guidance.passes": 1, "output.metrics": False}
FRAMES = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
STYLE = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))


def test_the_loss_decoder_is_differentiable_and_labelled_and_the_output_is_the_vaes():
    runtime = Runtime.from_config(load_config("tiny"))
    decoder = _random_tiny(8, 4)
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    (tiny_decode(decoder, z) ** 2).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    exact = StylizePipeline(runtime, load_config("tiny", FAST))(FRAMES, STYLE, "x", seed=1)
    approx = StylizePipeline(runtime, load_config("tiny", {**FAST, "model.loss_decoder": "tiny"}))(
        FRAMES, STYLE, "x", seed=1)
    assert approx.report["loss_decoder"]["note"] == NOTE and "loss_decoder" not in exact.report
    assert not np.array_equal(approx.frames, exact.frames)  # a different gradient steers the samples
    losses = [r["loss"] for r in approx.report["guided_steps"]]
    assert losses and all(np.isfinite(losses))


def test_a_loss_decoder_for_other_latents_is_refused_before_any_work(tmp_path):
    folder = tmp_path / "taesd_wrong"
    _random_tiny(4, 4).save_pretrained(folder)  # 4x up: not the VAE's 8x
    pipe = StylizePipeline(Runtime.from_config(load_config("tiny")),
                           load_config("tiny", {**FAST, "model.loss_decoder": str(folder)}))
    with pytest.raises(ConfigError, match="model.loss_decoder.*4x up.*8x"):
        pipe(FRAMES, STYLE, "x")
