"""The image prompt (IP-Adapter): off is exactly the old pipeline, on changes it, style mode feeds only
the style blocks, the image encoder runs once per job, SAG's gradient through it is exact, bad
adapter/encoder/scale/mode inputs fail before sampling."""

import json
import socket

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sagvideo.config import ModelConfig, load_config
from sagvideo.method_registry import PIPELINE_METHODS as GUIDANCE_METHODS
from sagvideo.pipeline.denoiser import ControlCache, DepthControlledEps
from sagvideo.errors import ConfigError, InputError
from sagvideo.guidance import sag_gradient
from sagvideo.pipeline.image_prompt import ImagePrompt, ImagePromptModels
from sagvideo.models.components import tiny_components
from sagvideo.models.hashing import file_sha256
from sagvideo.models.ip_adapter import cross_attention_names, random_ip_adapter_weights
from sagvideo.pipeline import StylizePipeline
from sagvideo.pipeline.runtime import Runtime
from sagvideo.video.depth import depth_to_control_image

FRAMES = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
DEPTH = np.linspace(0, 1, 2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64)
STYLE = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(1))
FAST = {"video.frames": 2, "sampling.steps": 3, "guidance.n": 1, "guidance.passes": 1, "output.metrics": False}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network (a connection attempt fails the test) and a digest cache of this test's own."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(runtime=None, frames=FRAMES, depth=DEPTH, prompt="a ball", **settings):
    config = load_config("tiny", {**FAST, **settings})
    runtime = runtime or Runtime.from_config(config)
    return StylizePipeline(runtime, config)(frames, STYLE, prompt, depth=depth), runtime


def test_scale_zero_is_the_pipeline_without_adapter_bit_for_bit_and_scale_one_changes_it():
    off, _ = run(**{"ip_adapter.scale": 0})
    on, runtime = run(**{"ip_adapter.scale": 1})
    assert np.abs(on.frames.astype(int) - off.frames.astype(int)).mean() > 1
    again, _ = run(runtime, **{"ip_adapter.scale": 0})  # the adapter was in this runtime's UNet
    assert np.array_equal(again.frames, off.frames)
    assert off.report["ip_adapter"]["enabled"] is False
    with pytest.raises(InputError, match="no prompt, no negative prompt and no image prompt"):
        run(prompt=None, **{"ip_adapter.scale": 0})  # guidance would silently do nothing
    assert run(prompt=None)[0].report["prompt"]["text"] is None  # the image prompt is enough
    report = on.report["ip_adapter"]
    assert report["scale"] == 1 and report["mode"] == "style" and report["blocks"] == [
        "up_blocks.1.attentions.0", "up_blocks.1.attentions.1"]
    assert report["adapter"]["sha256_16"] == report["image_encoder"]["sha256_16"] == "random weights"
    unet = runtime.components.unet_motion
    assert unet.encoder_hid_proj is None and runtime.components.unet2d.encoder_hid_proj is None  # detached


@pytest.mark.parametrize("mode,fed", [
    ("style", {"up_blocks.1"}), ("style+layout", {"mid_block", "up_blocks.1"}),
    ("all", {"down_blocks.0", "mid_block", "up_blocks.1"})])
def test_each_mode_feeds_only_its_blocks_in_both_unets(mode, fed):
    from diffusers.loaders.unet_loader_utils import _maybe_expand_lora_scales
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    c = tiny_components()
    models = Runtime.from_components(c).image_prompt_models()
    before = {name: type(p) for name, p in c.unet_motion.attn_processors.items()}
    prompt = ImagePrompt(torch.zeros(2, 1, models.layers.embed_dim), models.layers, 0.7, mode)
    with prompt.attached(c):
        for unet in (c.unet_motion, c.unet2d):  # shared attention layers: both see the adapter
            procs = unet.attn_processors
            ip = {n: p for n, p in procs.items() if isinstance(p, IPAdapterAttnProcessor2_0)}
            assert set(ip) == set(cross_attention_names(c.unet2d))  # cross-attention only, no motion module
            scaled = {n for n, p in ip.items() if p.scale != [0.0]}
            assert {n.split(".attentions.")[0].replace(".attentions", "") for n in scaled} == fed
            assert all(p.scale == [0.7] for n, p in ip.items() if n in scaled)
            assert unet.encoder_hid_proj is models.layers.projection
        # the same layers as diffusers' set_ip_adapter_scale with InstantStyle's SD 1.5 dicts
        dicts = {"style": {"up": {"block_1": 1.0}},
                 "style+layout": {"down": {"block_2": 1.0}, "mid": 1.0, "up": {"block_1": 1.0}}}
        if mode in dicts:
            expanded = _maybe_expand_lora_scales(c.unet2d, [dicts[mode]], default_scale=0.0)[0]
            assert {k for k, v in expanded.items() if v} == set(prompt.report["blocks"])
    assert {name: type(p) for name, p in c.unet_motion.attn_processors.items()} == before


def test_image_encoder_runs_once_per_job_with_windows_denoise_and_every_method():
    windows = {**FAST, "video.frames": 3, "video.window": 2, "video.overlap": 1, "sampling.steps": 3,
               "sampling.denoise": 0.67, "ug.recurrence": 1, "doodl.iterations": 2}
    runtime = Runtime.from_config(load_config("tiny", windows))
    calls = []
    runtime.image_prompt_models().encoder.register_forward_hook(lambda *a: calls.append(1))
    frames = np.concatenate([FRAMES] * 2)[:3]
    for i, method in enumerate(GUIDANCE_METHODS):
        job = load_config("tiny", {**windows, "guidance.method": method})
        result = StylizePipeline(runtime, job)(frames, STYLE, "a ball", depth=np.concatenate([DEPTH] * 2)[:3])
        assert len(calls) == i + 1, method  # one embedding per job, not per step, window or pass
        assert result.report["windows"]["count"] == 2 and result.report["guided_steps"], method
        assert result.report["ip_adapter"]["blocks"] and result.frames.std() > 0


def test_sag_gradient_through_the_adapter_is_exact_float64():
    c = tiny_components().to("cpu", torch.float64)
    prompt = ImagePrompt.from_style(ImagePromptModels(ModelConfig(preset="tiny"), c), STYLE, scale=1.0, mode="all")
    text = c.encode_prompt(["", ""])
    control = ControlCache(c, depth_to_control_image(DEPTH))
    x = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def loss(x0):
        return ((torch.tanh(x0) - target) ** 2).mean()

    with prompt.attached(c):
        eps = DepthControlledEps(c, text, control, image_embeds=prompt.embeds)
        g_sym, _ = sag_gradient(eps, x, 600, c.alphas_cumprod, loss, n=3, method="symplectic")
        g_direct, _ = sag_gradient(eps, x, 600, c.alphas_cumprod, loss, n=3, method="direct")
    g_plain, _ = sag_gradient(DepthControlledEps(c, text, control), x, 600, c.alphas_cumprod, loss, n=3,
                              method="direct")
    assert float((g_sym - g_direct).norm() / g_direct.norm()) < 1e-10
    assert float((g_plain - g_direct).norm() / g_direct.norm()) > 1e-3  # the adapter is in the gradient


def test_adapter_works_under_a_lora():
    from peft import LoraConfig, inject_adapter_in_model

    c = tiny_components()
    models = Runtime.from_components(c).image_prompt_models()
    prompt = ImagePrompt.from_style(models, STYLE, scale=1.0, mode="all")
    x = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    text = c.encode_prompt(["", "a ball"])
    eps = DepthControlledEps(c, text, None, image_embeds=prompt.embeds)
    with torch.no_grad(), prompt.attached(c):
        adapter = eps(x, 500)
    torch.manual_seed(5)
    inject_adapter_in_model(LoraConfig(r=4, target_modules=["to_k", "to_v"], init_lora_weights=False), c.unet2d)
    with torch.no_grad(), prompt.attached(c):
        both = eps(x, 500)
    with torch.no_grad():
        lora = DepthControlledEps(c, text, None)(x, 500)
    assert not torch.allclose(both, adapter, atol=1e-4) and not torch.allclose(both, lora, atol=1e-4)


@pytest.fixture
def adapter_files(tmp_path):
    """The tiny adapter as a .safetensors file, one for a wider (SDXL-like) base, a Plus variant, a UNet."""
    c = tiny_components()
    weights = random_ip_adapter_weights(c.unet2d, 32)
    flat = {f"{part}.{k}": v.contiguous() for part, d in weights.items() for k, v in d.items()}
    files = {name: tmp_path / f"{name}.safetensors" for name in ("tiny", "wide", "plus", "unet")}
    save_file(flat, files["tiny"])
    save_file({k: (torch.zeros(8 * 64, 32) if k.endswith("proj.weight") else v) for k, v in flat.items()},
              files["wide"])
    save_file({"image_proj.latents": torch.zeros(1, 16, 32),
               **{k: v for k, v in flat.items() if k.startswith("ip_adapter.")}}, files["plus"])
    save_file({k: v.contiguous() for k, v in c.unet2d.state_dict().items()}, files["unet"])
    return files


def test_adapter_file_loads_with_its_digest_and_bad_files_are_named(adapter_files, tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from sagvideo.models.presets import image_encoder_config

    frames = FRAMES[:1]
    good, _ = run(frames=frames, depth=DEPTH[:1], **{"model.ip_adapter": str(adapter_files["tiny"])})
    entry = good.report["ip_adapter"]["adapter"]
    assert entry == {"source": str(adapter_files["tiny"]), "kind": "file",
                     "sha256_16": file_sha256(adapter_files["tiny"])[:16]}
    for name, words in (("wide", "another base model"), ("plus", "IP-Adapter Plus"), ("unet", "not an IP-Adapter")):
        with pytest.raises(ConfigError, match="model.ip_adapter") as info:
            run(frames=frames, depth=DEPTH[:1], **{"model.ip_adapter": str(adapter_files[name])})
        assert words in str(info.value) and str(adapter_files[name]) in str(info.value)
    encoder = tmp_path / "encoder"
    CLIPVisionModelWithProjection(CLIPVisionConfig(**{**image_encoder_config("tiny"), "projection_dim": 16})
                                  ).save_pretrained(encoder)
    with pytest.raises(ConfigError, match="model.image_encoder.*embeddings of 16.*takes 32"):
        run(frames=frames, depth=DEPTH[:1], **{"model.image_encoder": str(encoder),
                                               "model.ip_adapter": str(adapter_files["tiny"])})
    # one file, as ComfyUI workflows keep CLIP vision encoders: the tiny preset's random encoder saved
    from sagvideo.models.image_encoder import _random_encoder

    single = tmp_path / "clip_vision.safetensors"
    save_file({k: v.contiguous() for k, v in _random_encoder("tiny").state_dict().items()}, single)
    from_file, _ = run(frames=frames, depth=DEPTH[:1], **{"model.image_encoder": str(single)})
    assert np.array_equal(from_file.frames, good.frames)  # the same weights as the built-in random encoder
    assert from_file.report["ip_adapter"]["image_encoder"] == {"source": str(single), "kind": "file",
                                                              "sha256_16": file_sha256(single)[:16]}
    with pytest.raises(ConfigError, match="model.image_encoder.*not those of the image encoder") as info:
        run(frames=frames, depth=DEPTH[:1], **{"model.image_encoder": str(adapter_files["tiny"])})
    assert str(adapter_files["tiny"]) in str(info.value)


def test_cli_bad_adapter_scale_or_mode_fail_before_sampling_and_write_nothing(adapter_files, tmp_path, capsys):
    from sagvideo.cli import main

    style = tmp_path / "style.png"
    from PIL import Image

    Image.fromarray(FRAMES[0]).save(style)
    out = tmp_path / "out"
    out.mkdir()
    base = ["image", "--style", str(style), "-o", str(out / "i.png"), "--config", "tiny", "--steps", "2", "--quiet"]
    for extra, needle in ((["--ip-adapter-scale", "2.5"], "ip_adapter.scale"),
                          (["--ip-adapter-scale", "nan"], "ip_adapter.scale"),
                          (["--set", "ip_adapter.mode=layout"], "ip_adapter.mode"),
                          (["--set", f"model.ip_adapter={adapter_files['wide']}"], "model.ip_adapter")):
        code = main(base + extra)
        err = capsys.readouterr().err
        assert code == 2 and needle in err and "sagvideo: error:" in err, err
        assert list(out.iterdir()) == []
    assert main(base + ["--ip-adapter-mode", "all", "--ip-adapter-scale", "0.5"]) == 0
    report = json.loads((out / "i.json").read_text())
    assert report["ip_adapter"]["scale"] == 0.5 and report["ip_adapter"]["mode"] == "all"


def test_with_a_memory_config_the_encoder_leaves_after_its_one_call():
    c = tiny_components()
    models = ImagePromptModels(ModelConfig(preset="tiny", vae_slicing=True), c)
    first = models.embed(STYLE)
    assert models.encoder is None  # on a CPU: freed (on a GPU it moves to the CPU)
    assert torch.equal(models.embed(STYLE), first) and models.encoder is None  # reloaded for the next job
    kept = ImagePromptModels(ModelConfig(preset="tiny"), c)
    kept.embed(STYLE)
    assert kept.encoder is not None


def test_scale_and_mode_are_checked_without_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom sagvideo.config import load_config\nfrom sagvideo.errors import ConfigError, InputError\n"
            "for bad in ({'ip_adapter.scale': 2.5}, {'ip_adapter.scale': float('inf')}, {'ip_adapter.mode': 'x'}):\n"
            "    try:\n        load_config('tiny', bad)\n    except ConfigError as e:\n        print(e)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[-1] == "False" and len(out) == 4
    assert "ip_adapter.scale" in out[0] and "from 0 (off) to 2" in out[0]
    assert "ip_adapter.scale" in out[1] and "finite" in out[1] and "ip_adapter.mode" in out[2]
