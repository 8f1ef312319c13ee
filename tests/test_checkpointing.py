"""The gradient's exact memory levers: block checkpointing, decoder checkpointing, split CFG VJPs,
one graph alive at a time, and the saved-bytes account that measures them."""

import numpy as np
import pytest
import torch

from sagvideo.bench.memory_parts import measure_memory
from sagvideo.pipeline.cfg_split import SplitCFGEps, wants_split
from sagvideo.config import load_config
from sagvideo.pipeline.denoiser import ControlCache, DepthControlledEps, decode_frames
from sagvideo.guidance import GramStyleLoss, LatentStyleLoss, WindowedEps, context_windows, sag_gradient
from sagvideo.pipeline.levers import applied_levers
from sagvideo.pipeline.memory_account import SavedTensorLedger, network_weights
from sagvideo.models.checkpointing import all_checkpointed, checkpoint_targets, checkpointed
from sagvideo.models.components import alphas_cumprod_from_config, tiny_components
from sagvideo.models.presets import scheduler_config
from sagvideo.pipeline import StylizePipeline
from sagvideo.pipeline.runtime import Runtime

FRAMES = 4


@pytest.fixture(scope="module")
def c64():
    return tiny_components(seed=0).to("cpu", torch.float64)


def _eps(c, frames=FRAMES, **kwargs):
    gen = torch.Generator().manual_seed(1)
    control = ControlCache(c, torch.rand(frames, 3, 64, 64, generator=gen, dtype=torch.float64).to(c.dtype))
    return DepthControlledEps(c, c.encode_prompt(["", "a cat"]), control, **kwargs)


def _vjp(eps, x, v):
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(eps(leaf, 500), leaf, v)
    return grad


def _inputs(c, frames=FRAMES):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, frames, 8, 8, generator=gen, dtype=torch.float64).to(c.dtype)
    return x, torch.randn(x.shape, generator=gen, dtype=torch.float64).to(c.dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_block_checkpointing_gives_the_same_vjp_and_is_undone_after(dtype):
    c = tiny_components(seed=0).to("cpu", dtype)
    eps, (x, v) = _eps(c), _inputs(c)
    plain = _vjp(eps, x, v)
    with applied_levers(c, gradient_checkpointing=True):
        assert all_checkpointed(c.unet) and all_checkpointed(c.controlnet)
        parts = {part for _, part, _ in checkpoint_targets(c.unet)}
        assert "motion_modules" in parts  # the temporal transformers are among the wrapped blocks
        checked = _vjp(eps, x, v)
    assert not any(hasattr(m, "forward") and "forward" in m.__dict__ for _, _, m in checkpoint_targets(c.unet))
    if dtype == torch.float64:
        assert torch.equal(checked, plain)  # bit for bit
    else:
        torch.testing.assert_close(checked, plain, rtol=1e-5, atol=1e-6)


def test_saved_bytes_show_the_motion_modules_checkpointed(c64):
    """diffusers' own checkpointing leaves the motion modules' activations saved; ours does not."""
    eps, (x, _) = _eps(c64), _inputs(c64)

    def saved_parts():
        led = SavedTensorLedger(network_weights(c64.unet, c64.controlnet))
        led.tag_blocks(c64.unet)
        led.tag(c64.controlnet, "controlnet")
        with led, torch.enable_grad():
            out = eps(x.clone().requires_grad_(True), 500)
            parts = dict(led.live_parts)
        del out
        assert led.live == 0  # everything released with the graph
        return parts

    plain = saved_parts()
    c64.unet.enable_gradient_checkpointing()
    try:
        theirs = saved_parts()
    finally:
        c64.unet.disable_gradient_checkpointing()
    with checkpointed([c64.unet, c64.controlnet]):
        ours = saved_parts()
    assert theirs["motion_modules"] > 0.8 * plain["motion_modules"]
    assert ours["motion_modules"] < 0.1 * plain["motion_modules"]
    assert ours["attentions"] < 0.1 * plain["attentions"] and ours["controlnet"] < 0.2 * plain["controlnet"]


def test_decoder_checkpointing_gives_the_same_loss_gradient(c64):
    loss = LatentStyleLoss(lambda z: decode_frames(c64, z), GramStyleLoss(c64.clip_vision, torch.rand(3, 32, 32)))
    x, _ = _inputs(c64, 2)
    value, plain = loss.value_and_grad(x)
    with applied_levers(c64, gradient_checkpointing=False, decoder_checkpointing=True):
        assert all_checkpointed(c64.vae.decoder)
        value2, checked = loss.value_and_grad(x)
    assert not all_checkpointed(c64.vae.decoder)
    assert torch.equal(value, value2) and torch.equal(checked, plain)


def test_split_cfg_vjp_equals_the_joint_one(c64):
    eps, (x, v) = _eps(c64, cfg_scale=7.5), _inputs(c64)
    split = SplitCFGEps(eps)
    joint = _vjp(eps, x, v)
    torch.testing.assert_close(split.vjp(x, 500, v), joint, rtol=1e-10, atol=1e-12)
    assert torch.equal(split(x, 500), eps(x, 500))
    windows = context_windows(FRAMES, 3, 1)  # two overlapping windows, split window by window
    windowed = WindowedEps(eps.predict, windows)
    windowed_split = WindowedEps(eps.predict, windows, window_vjp=split.window_vjp)
    torch.testing.assert_close(windowed_split.vjp(x, 500, v), windowed.vjp(x, 500, v), rtol=1e-10, atol=1e-12)


def test_cfg_split_auto_never_splits_on_the_cpu():
    assert not wants_split("auto", torch.device("cpu"), 16, 64, 64, torch.float16)
    assert wants_split(True, torch.device("cpu"), 1, 1, 1, torch.float32)


@pytest.mark.parametrize("split", [True, False])
def test_at_most_one_graph_is_alive_at_each_vjp_and_loss(c64, split):
    """Nothing from an earlier evaluation (ControlNet residuals, outputs) or from decoded frames is
    held when a VJP or the loss starts; joint CFG keeps only the last evaluation's graph for its VJP."""
    c = c64
    eps = _eps(c)
    led = SavedTensorLedger(network_weights(c.unet, c.controlnet, c.vae, c.clip_vision))
    led.tag(c.unet, "unet")
    led.tag(c.controlnet, "controlnet")
    led.tag(c.vae.decoder, "vae_decoder")
    alive_at = []

    class Watched(LatentStyleLoss):
        def value_and_grad(self, latents):
            alive_at.append(("loss", dict(led.live_parts)))
            out = super().value_and_grad(latents)
            alive_at.append(("after loss", dict(led.live_parts)))
            return out

    fn = SplitCFGEps(eps) if split else eps
    if split:
        inner = fn.window_vjp

        def watched_vjp(*args):
            alive_at.append(("vjp", dict(led.live_parts)))
            return inner(*args)

        fn.window_vjp = watched_vjp
    loss = Watched(lambda z: decode_frames(c, z), GramStyleLoss(c.clip_vision, torch.rand(3, 32, 32)))
    x, _ = _inputs(c)
    alphas = alphas_cumprod_from_config(scheduler_config())
    with led:
        sag_gradient(fn, x, 600, alphas, loss, n=3)
    assert led.live == 0
    held = {when: sum(parts.values()) for when, parts in alive_at if when != "vjp"}
    assert all(v == 0 for w, parts in alive_at if w == "vjp" for v in parts.values())
    assert not any(parts.get("vae_decoder") for _, parts in alive_at)  # decoded frames' graphs are gone
    if split:
        assert held == {"loss": 0, "after loss": 0} and len([w for w, _ in alive_at if w == "vjp"]) == 3
    else:  # the kept last evaluation: UNet + ControlNet only, released by its VJP
        assert held["loss"] > 0 and held["loss"] == held["after loss"]


def test_meta_device_counts_what_the_cpu_saves():
    """`bench memory` counts on the meta device: the same bytes per part as a real CPU run."""
    meta = measure_memory("tiny", 2, [64, 64], "meta", "float32")
    cpu = measure_memory("tiny", 2, [64, 64], "cpu", "float32")
    keys = ("saved_mb", "motion_mb", "controlnet_mb", "decoder_mb", "largest_block_mb")
    assert [[r.get(k) for k in keys] for r in meta["rows"]] == [[r.get(k) for k in keys] for r in cpu["rows"]]
    by_lever = {(r["part"], r["lever"]): r["saved_mb"] for r in cpu["rows"]}
    assert by_lever[("unet+cn vjp", "blocks")] < 0.25 * by_lever[("unet+cn vjp", "none")]
    assert by_lever[("loss, one frame", "decoder")] < by_lever[("loss, one frame", "none")]


def test_every_run_reports_its_memory_account_and_split_matches_joint():
    runtime = Runtime.from_config(load_config("tiny"))
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    style = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))
    base = {"video.frames": 4, "sampling.steps": 4, "guidance.n": 2, "guidance.passes": 1, "output.metrics": False,
            "video.window": 3, "video.overlap": 1}
    # the split run checkpoints everything; the joint one keeps the defaults (`auto`: off at this size)
    on = {"guidance.gradient_checkpointing": True, "guidance.decoder_checkpointing": True}
    runs = {split: StylizePipeline(runtime, load_config("tiny", {**base, "guidance.cfg_split": split,
                                                                 **(on if split else {})}))(
        frames, style, "x") for split in (True, False)}
    memory = runs[True].report["memory"]
    assert memory["levers"] == {"gradient_checkpointing": True, "decoder_checkpointing": True, "cfg_split": True}
    assert runs[False].report["memory"]["levers"] == {"gradient_checkpointing": False,
                                                      "decoder_checkpointing": False, "cfg_split": False}
    assert {"depth", "unet_cn_forward", "unet_cn_vjp", "loss_backward", "decode"} <= set(memory["stages"])
    assert memory["saved_peak_mb"] > 0 and memory["saved_parts_at_peak_mb"]
    assert np.abs(runs[True].frames.astype(int) - runs[False].frames.astype(int)).max() <= 1
    assert not all_checkpointed(runtime.components.unet)
