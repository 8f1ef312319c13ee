"""`gradient_checkpointing: auto` / `decoder_checkpointing: auto`: the saved-bytes estimates behind
them against what autograd saves, and where auto switches."""

import pytest
import torch

from sagvideo.bench.memory_parts import _components, _fitting, _loss_row, _vjp_row, meta_as_cpu
from sagvideo.config import load_config
from sagvideo.errors import ConfigError
from sagvideo.models.components import tiny_components
from sagvideo.models.presets import unet2d_config, vae_config
from sagvideo.models.saved_bytes import (
    AUTO_THRESHOLD_BYTES, MB, decoder_bytes, unet_vjp_bytes, wants_checkpointing,
)


def test_estimates_are_near_the_bytes_autograd_saves_on_the_tiny_preset():
    """Counted unchecked on the meta device (what a CPU run saves: test_checkpointing) at 2 frames,
    64x64 px (8x8 latent cells), CFG batch 2, one frame's loss."""
    c = _components("tiny", "meta", "float32")
    with meta_as_cpu():
        counted_unet = _vjp_row(c, "none", 2, (64, 64), backward=False)["saved_mb"]
        counted_decoder = _loss_row(c, "none", (64, 64), backward=False)["decoder_mb"]
    unet = unet_vjp_bytes(unet2d_config("tiny"), 2, 2, 8, 8, torch.float32) / MB
    decoder = decoder_bytes(vae_config("tiny"), 1, 8, 8, torch.float32) / MB
    assert 0.7 < unet / counted_unet < 1.3
    assert 0.7 < decoder / counted_decoder < 1.3


def test_estimates_reproduce_the_sd15_counts_they_scale():
    """README's table: 5635 MB for UNet + ControlNet (8 frames, 224x128, CFG) and 622 MB for one
    frame's decoder at 224x128 (28x16 latent cells), fp32; half in fp16, half for one branch."""
    unet, vae = unet2d_config("sd15"), vae_config("sd15")
    assert unet_vjp_bytes(unet, 2, 8, 16, 28, torch.float32) / MB == pytest.approx(5635, rel=1e-3)
    assert unet_vjp_bytes(unet, 1, 8, 16, 28, torch.float16) / MB == pytest.approx(5635 / 4, rel=1e-3)
    assert decoder_bytes(vae, 1, 16, 28, torch.float32) / MB == pytest.approx(622, rel=1e-3)


def test_auto_checkpoints_sd15_sizes_and_not_the_tiny_preset():
    tiny, sd15 = unet2d_config("tiny"), unet2d_config("sd15")
    # the tiny preset's defaults: 8 frames at 112x64 px (8x14 cells), both CFG branches
    assert not wants_checkpointing("auto", unet_vjp_bytes(tiny, 2, 8, 8, 14, torch.float32))
    assert not wants_checkpointing("auto", decoder_bytes(vae_config("tiny"), 1, 8, 14, torch.float32))
    # SD 1.5: one split branch of 8 frames at 128x128 px in fp16 already asks for it (805 MB)
    assert wants_checkpointing("auto", unet_vjp_bytes(sd15, 1, 8, 16, 16, torch.float16))
    # its decoder from 256x256 px in fp16 (745 MB a frame; 186 MB at 128x128 stays unchecked)
    assert wants_checkpointing("auto", decoder_bytes(vae_config("sd15"), 1, 32, 32, torch.float16))
    assert not wants_checkpointing("auto", decoder_bytes(vae_config("sd15"), 1, 16, 16, torch.float16))
    assert wants_checkpointing("auto", AUTO_THRESHOLD_BYTES + 1)
    assert not wants_checkpointing("auto", AUTO_THRESHOLD_BYTES)
    assert wants_checkpointing(True, 0) and not wants_checkpointing(False, 10**15)


@pytest.mark.parametrize("key", ["gradient_checkpointing", "decoder_checkpointing"])
def test_checkpointing_keys_take_true_false_auto_only(key):
    assert getattr(load_config("tiny").guidance, key) == "auto"
    assert getattr(load_config("tiny", {f"guidance.{key}": False}).guidance, key) is False
    with pytest.raises(ConfigError, match=f"guidance.{key}"):
        load_config("tiny", {f"guidance.{key}": "sometimes"})


def test_a_bench_memory_row_that_runs_out_of_gpu_memory_says_so_and_the_rest_run():
    def too_big():
        raise torch.OutOfMemoryError("CUDA out of memory")

    row = _fitting(tiny_components(seed=0), "unet+cn vjp", "none", too_big)
    assert row["saved_mb"] is None and row["error"].startswith("out of memory")
    assert _fitting(None, "p", "l", lambda: {"saved_mb": 1.0}) == {"saved_mb": 1.0}
