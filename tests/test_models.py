"""Model components: the tiny preset end to end, real-size configs on the meta device, loading."""

from __future__ import annotations

import time

import pytest
import torch
from diffusers import ControlNetModel, DDIMScheduler

from sagvideo.errors import ConfigError, ModelUnavailableError
from sagvideo.models import hub
from sagvideo.models.components import (
    Components,
    alphas_cumprod_from_config,
    check_compatible,
    random_components,
    resolve_device_dtype,
    save_components,
    sd_unet2d,
    tiny_components,
)
from sagvideo.models.loading import load_components
from sagvideo.models.presets import TINY_ID, ModelIds, scheduler_config

B, F, H, W = 2, 16, 64, 64  # CFG batch, frames, pixels
h, w = H // 8, W // 8


@pytest.fixture(scope="module")
def tiny() -> Components:
    return tiny_components(seed=0)


def video_eps(c: Components, latents, control, text, t=500, use_control=True):
    """One CFG-batched motion-UNet step with ControlNet residuals, the way the pipeline calls it.

    latents (B, 4, F, h, w); control (B*F, 3, H, W); text (B, L, D) -> eps (B, 4, F, h, w).
    """
    b, _, f = latents.shape[:3]
    text_f = text.repeat_interleave(f, dim=0)  # (B*F, L, D), batch-major
    per_frame = latents.transpose(1, 2).reshape(b * f, 4, *latents.shape[-2:])
    down, mid = c.controlnet(per_frame, t, encoder_hidden_states=text_f, controlnet_cond=control,
                             conditioning_scale=1.0, return_dict=False)
    if not use_control:
        down, mid = None, None
    with torch.no_grad():
        return c.unet_motion(latents, t, encoder_hidden_states=text_f, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample, down, mid


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(B, 4, F, h, w, generator=g)
    control = torch.rand(B * F, 3, H, W, generator=g)
    return latents, control


# ------------------------------------------------------------------ construction


def test_tiny_builds_offline_fast_frozen_and_described():
    start = time.perf_counter()
    c = tiny_components(seed=0)
    assert time.perf_counter() - start < 5.0  # ~0.2 s on an idle CPU
    assert c.preset == "tiny" and c.device == torch.device("cpu") and c.dtype == torch.float32
    assert c.ids == {"base": TINY_ID, "motion_adapter": TINY_ID, "controlnet": TINY_ID, "clip_vision": TINY_ID}
    assert c.vae_scale_factor == 8 and c.latent_scale == pytest.approx(0.18215)
    assert c.unet is c.unet_motion
    for name, module in c.modules().items():
        assert not module.training, name
        assert not any(p.requires_grad for p in module.parameters()), name
    # unet2d holds no weights of its own: they are the motion UNet's tensors
    motion = {p.data_ptr() for p in c.unet_motion.parameters()}
    assert all(p.data_ptr() in motion for p in c.unet2d.parameters())


def test_tiny_is_reproducible_and_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, other = tiny_components(seed=0), tiny_components(seed=0), tiny_components(seed=1)
    assert torch.equal(torch.rand(3), expected)
    pa, pb, po = (next(x.controlnet.parameters()) for x in (a, b, other))
    assert torch.equal(pa, pb) and not torch.equal(pa, po)


def test_image_only_build_has_same_networks_and_no_motion():
    c_img, c_vid = tiny_components(seed=0, video=False), tiny_components(seed=0, video=True)
    assert c_img.unet_motion is None and c_img.unet is c_img.unet2d and c_img.ids["motion_adapter"] is None
    x, text = torch.randn(B, 4, h, w), torch.randn(B, 16, 32)
    with torch.no_grad():  # sharing the weights with the motion UNet must not change the image UNet
        assert torch.allclose(c_img.unet2d(x, 10, text).sample, c_vid.unet2d(x, 10, text).sample, atol=1e-6)
    for a, b in zip(c_img.controlnet.parameters(), c_vid.controlnet.parameters()):
        assert torch.equal(a, b)


def test_to_dtype_keeps_clip_vision_float32():
    c = tiny_components(seed=0).to(dtype=torch.float16)
    assert c.dtype == torch.float16
    for name, module in c.modules().items():
        want = torch.float32 if name == "clip_vision" else torch.float16
        assert {p.dtype for p in module.parameters()} == {want}, name
    assert c.alphas_cumprod.dtype == torch.float64
    assert c.encode_prompt(["x"]).dtype == torch.float16


# ------------------------------------------------------------------ forward passes


def test_video_step_with_controlnet_and_cfg_batch(tiny):
    latents, control = inputs()
    text = tiny.encode_prompt(["", "a painting"])
    start = time.perf_counter()
    with torch.no_grad():
        eps, down, mid = video_eps(tiny, latents, control, text)
    assert time.perf_counter() - start < 10.0  # ~0.1 s on an idle CPU; generous for shared machines
    assert eps.shape == latents.shape == (B, 4, F, h, w)
    assert torch.isfinite(eps).all()
    # residuals, per frame: conv_in, block 0 resnet, block 0 downsampler, block 1 resnet
    assert [tuple(d.shape) for d in down] == [(B * F, 32, 8, 8)] * 2 + [(B * F, 32, 4, 4), (B * F, 64, 4, 4)]
    assert tuple(mid.shape) == (B * F, 64, 4, 4)
    with torch.no_grad():
        no_control, _, _ = video_eps(tiny, latents, control, text, use_control=False)
    assert (eps - no_control).abs().max() > 1e-4


def test_video_step_keeps_batch_items_apart_and_mixes_frames(tiny):
    latents, control = inputs()
    text = tiny.encode_prompt(["", "a painting"])
    with torch.no_grad():
        eps, _, _ = video_eps(tiny, latents, control, text)
        # another control video for batch item 1 only: item 0 must not see it
        control2 = control.clone()
        control2[F:] = torch.rand(F, 3, H, W)
        eps2, _, _ = video_eps(tiny, latents, control2, text)
        # a change in frame 5 reaches frame 0 through the motion modules (and only within its item)
        moved = latents.clone()
        moved[0, :, 5] += 1.0
        eps3, _, _ = video_eps(tiny, moved, control, text)
    assert torch.allclose(eps2[0], eps[0], atol=1e-5) and not torch.allclose(eps2[1], eps[1], atol=1e-4)
    assert (eps3[0, :, 0] - eps[0, :, 0]).abs().max() > 1e-4
    assert torch.allclose(eps3[1], eps[1], atol=1e-5)


def test_motion_unet_needs_text_repeated_per_frame(tiny):
    latents, _ = inputs()
    with torch.no_grad(), pytest.raises(RuntimeError):
        tiny.unet_motion(latents, 500, encoder_hidden_states=torch.randn(B, 16, 32))


def test_image_step_with_controlnet():
    c = tiny_components(seed=0, video=False)
    x, control = torch.randn(B, 4, h, w), torch.rand(B, 3, H, W)
    text = c.encode_prompt(["", "a painting"])
    with torch.no_grad():
        down, mid = c.controlnet(x, 500, encoder_hidden_states=text, controlnet_cond=control, return_dict=False)
        eps = c.unet(x, 500, encoder_hidden_states=text, down_block_additional_residuals=down,
                     mid_block_additional_residual=mid).sample
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_vae_round_trip_shapes(tiny):
    with torch.no_grad():
        pixels = tiny.vae.decode(torch.randn(F, 4, h, w) / tiny.latent_scale).sample
        latents = tiny.vae.encode(torch.rand(F, 3, H, W) * 2 - 1).latent_dist.mean
    assert pixels.shape == (F, 3, H, W) and latents.shape == (F, 4, h, w)


def test_clip_vision_hidden_states(tiny):
    size = tiny.clip_vision.config.image_size
    with torch.no_grad():
        out = tiny.clip_vision(torch.randn(3, 3, size, size), output_hidden_states=True)
    assert len(out.hidden_states) >= 4
    tokens = 1 + (size // tiny.clip_vision.config.patch_size) ** 2
    assert out.hidden_states[3].shape == (3, tokens, tiny.clip_vision.config.hidden_size)


def test_encode_prompt(tiny):
    emb = tiny.encode_prompt(["a red cat", "a red cat", "a blue dog"])
    assert emb.shape == (3, tiny.tokenizer.model_max_length, tiny.text_encoder.config.hidden_size) == (3, 16, 32)
    assert torch.equal(emb[0], emb[1]) and not torch.allclose(emb[0], emb[2])
    long = tiny.encode_prompt(["word " * 100])  # truncated, not an error
    assert long.shape == (1, 16, 32)
    with pytest.raises(TypeError):
        tiny.encode_prompt("a red cat")


# ------------------------------------------------------------------ noise schedule


def test_alphas_cumprod_matches_ddim(tiny):
    a = tiny.alphas_cumprod
    assert a.dtype == torch.float64 and a.shape == (1000,)
    assert (a[1:] < a[:-1]).all() and 0 < a[-1] < a[0] < 1
    ddim = DDIMScheduler.from_config(scheduler_config()).alphas_cumprod
    assert torch.allclose(a, ddim.double(), atol=1e-6)
    assert a[0].item() == pytest.approx(1 - 0.00085) and a[-1].item() == pytest.approx(0.0047, abs=1e-4)


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_alphas_cumprod_follows_the_base_models_schedule(schedule):
    config = {**scheduler_config(), "beta_schedule": schedule, "beta_end": 0.02, "num_train_timesteps": 500}
    a = alphas_cumprod_from_config(config)
    assert a.shape == (500,) and a.dtype == torch.float64
    assert torch.allclose(a, DDIMScheduler.from_config(config).alphas_cumprod.double(), atol=1e-6)
    assert not torch.allclose(a[:500], tiny_components().alphas_cumprod[:500])
    with pytest.raises(ConfigError, match="scheduler"):
        alphas_cumprod_from_config({**config, "beta_schedule": "no-such-schedule"})


# ------------------------------------------------------------------ compatibility and options


def test_mismatched_controlnet_is_rejected():
    c = tiny_components(seed=0, video=False)
    c.controlnet = ControlNetModel.from_unet(c.unet2d, conditioning_embedding_out_channels=(8, 16))
    with pytest.raises(ConfigError, match="model.controlnet downsamples control images by 2 but the VAE by 8"):
        check_compatible(c)


def test_resolve_device_dtype():
    auto = resolve_device_dtype("auto", "auto")
    assert auto == ((torch.device("cuda"), torch.float16) if torch.cuda.is_available()
                    else (torch.device("cpu"), torch.float32))
    assert resolve_device_dtype("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ConfigError, match="unknown dtype 'half16'"):
        resolve_device_dtype("cpu", "half16")


# ------------------------------------------------------------------ loading


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.hub_reachable.cache_clear()
    yield
    hub.hub_reachable.cache_clear()


def test_missing_hub_model_fails_fast_naming_it(offline):
    from huggingface_hub import try_to_load_from_cache

    ids = ModelIds()
    if isinstance(try_to_load_from_cache(ids.base, "unet/config.json"), str):
        pytest.skip("Stable Diffusion 1.5 is in the local Hugging Face cache")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        load_components(ids, device="cpu")
    assert time.perf_counter() - start < 10.0
    message = str(info.value)
    assert ids.base in message and "model.base" in message and "UNet" in message


def test_local_folders_load_back_identically(tmp_path, tiny, offline):
    ids = save_components(tiny, tmp_path)
    assert ids.base == str(tmp_path / "base")
    loaded = load_components(ids, device="cpu", dtype=torch.float32)
    assert loaded.preset == "pretrained" and loaded.ids["controlnet"] == str((tmp_path / "controlnet").resolve())
    assert loaded.vae_scale_factor == 8 and loaded.tokenizer.model_max_length == 16
    assert torch.equal(loaded.alphas_cumprod, tiny.alphas_cumprod)
    prompts = ["", "a painting"]
    text = tiny.encode_prompt(prompts)
    assert torch.allclose(loaded.encode_prompt(prompts), text, atol=1e-6)
    latents, control = inputs()
    with torch.no_grad():
        want, _, _ = video_eps(tiny, latents, control, text)
        got, _, _ = video_eps(loaded, latents, control, text)
        image = torch.rand(1, 3, 32, 32)
        assert torch.allclose(loaded.clip_vision(image).image_embeds, tiny.clip_vision(image).image_embeds)
    assert torch.allclose(got, want, atol=1e-5)

    # a local base with a motion adapter that is neither a folder nor cached
    missing = "sagvideo-tests/no-such-motion-adapter"
    with pytest.raises(ModelUnavailableError, match="model.motion_adapter") as info:
        load_components(ModelIds(ids.base, missing, ids.controlnet, ids.clip_vision), device="cpu")
    assert missing in str(info.value)
    image_only = load_components(ModelIds(ids.base, missing, ids.controlnet, ids.clip_vision),
                                 device="cpu", video=False)
    assert image_only.unet_motion is None and image_only.ids["motion_adapter"] is None


# ------------------------------------------------------------------ real sizes (no allocation)


def test_sd15_sizes_on_meta_device():
    start = time.perf_counter()
    c = random_components("sd15", device="meta", dtype=torch.float16)
    assert time.perf_counter() - start < 10.0

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(c.unet2d) == 859_520_964  # SD 1.5 UNet
    assert count(c.unet_motion) - count(c.unet2d) == 453_209_280  # AnimateDiff v1-5-2 motion modules
    assert count(c.controlnet) == 361_279_120
    assert count(c.vae) == 83_653_863
    assert count(c.text_encoder) == 123_060_480  # CLIP ViT-L/14 text tower
    assert count(c.clip_vision) == 87_456_000 + 768 * 512  # CLIP ViT-B/32 vision tower + its 512-d projection
    assert c.tokenizer.model_max_length == c.text_encoder.config.max_position_embeddings == 77
    assert c.unet_motion.config.use_motion_mid_block and c.unet_motion.config.motion_max_seq_length == 32
    assert c.clip_vision.dtype == torch.float32 and c.unet2d.dtype == torch.float16
    with pytest.raises(ConfigError, match="'sd21'"):
        random_components("sd21", device="meta")


def test_sd_unet2d_sizes():
    tiny_unet = sd_unet2d("tiny")
    x, text = torch.randn(2, 4, 8, 8), torch.randn(2, 16, 32)
    with torch.no_grad():
        assert tiny_unet(x, 10, text).sample.shape == x.shape
    assert not any(p.requires_grad for p in tiny_unet.parameters()) and not tiny_unet.training
    small = sd_unet2d("small", device="meta")
    assert small.config.cross_attention_dim == 768
    assert tuple(small.config.block_out_channels) == (64, 128, 256, 256)
    assert sum(p.numel() for p in sd_unet2d("sd15", device="meta").parameters()) == 859_520_964
    with pytest.raises(ConfigError, match="unknown UNet size"):
        sd_unet2d("huge")
