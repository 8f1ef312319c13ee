"""Models from hub ids, folders or single files; LoRAs; weight digests; memory levers (tiny models, offline)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sagvideo.config import ModelConfig, load_config
from sagvideo.pipeline.denoiser import decode_frames, encode_frames
from sagvideo.errors import ConfigError
from sagvideo.pipeline.levers import applied_levers, set_memory_levers
from sagvideo.models.checkpointing import all_checkpointed
from sagvideo.models import hashing
from sagvideo.models.components import save_components, tiny_components
from sagvideo.models.loading import load_components
from sagvideo.models.loras import parse_lora
from sagvideo.models.offload import enable_cpu_offload
from sagvideo.pipeline import StylizePipeline
from sagvideo.pipeline.report import base_report
from sagvideo.pipeline.runtime import Runtime


@pytest.fixture(autouse=True)
def offline_and_private_cache(monkeypatch, tmp_path):
    """No network at all (a connection attempt fails the test), and a digest cache of this test's own."""
    assert os.environ["HF_HUB_OFFLINE"] == "1"

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    return tiny_components(seed=0)


def to_original_animatediff(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers motion-adapter keys -> the original AnimateDiff layout (the inverse of diffusers'
    `convert_animatediff_checkpoint_to_diffusers`, which also drops the positional tables)."""
    out = {}
    for key, value in state.items():
        head, sep, tail = key.partition(".motion_modules.")
        index, _, rest = tail.partition(".")
        rest = (rest.replace(".norm1.", ".norms.0.").replace(".norm2.", ".norms.1.").replace(".norm3.", ".ff_norm.")
                .replace(".attn1.", ".attention_blocks.0.").replace(".attn2.", ".attention_blocks.1."))
        if "pos_embed.pe" in rest:  # one table per attention block in the original files
            for block in (0, 1):
                name = rest.replace("pos_embed.pe", f"attention_blocks.{block}.pos_encoder.pe")
                out[f"{head}{sep}{index}.temporal_transformer.{name}"] = value.clone()
            continue
        out[f"{head}{sep}{index}.temporal_transformer.{rest}"] = value.clone()
    return out


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """The tiny models as diffusers folders and as single files, and a config folder for the files."""
    root = tmp_path_factory.mktemp("models")
    ids = save_components(tiny, root)
    files = root / "files"
    files.mkdir()
    adapter = {k: v.contiguous() for k, v in tiny.unet_motion.state_dict().items() if ".motion_modules." in k}
    paths = SimpleNamespace(
        ids=ids, root=root, adapter=adapter,
        unet=files / "unet.safetensors", vae=files / "vae.safetensors", controlnet=files / "controlnet.safetensors",
        adapter_diffusers=files / "motion_diffusers.safetensors", adapter_original=files / "mm_sd_v15.safetensors",
        adapter_ckpt=files / "mm_sd_v15.ckpt", config=root / "sd15-config")
    save_file(tiny.unet2d.state_dict(), paths.unet)
    save_file(tiny.vae.state_dict(), paths.vae)
    save_file(tiny.controlnet.state_dict(), paths.controlnet)
    save_file(adapter, paths.adapter_diffusers)
    save_file(to_original_animatediff(adapter), paths.adapter_original)
    torch.save({"state_dict": to_original_animatediff(adapter)}, paths.adapter_ckpt)
    # an SD 1.5-like config folder that also has the configs of the ControlNet and motion adapter
    shutil.copytree(ids.base, paths.config)
    for role in ("controlnet", "motion_adapter"):
        (paths.config / role).mkdir()
        shutil.copy(root / role / "config.json", paths.config / role / "config.json")
    return paths


def assert_same_weights(got: torch.nn.Module, want: dict[str, torch.Tensor] | torch.nn.Module) -> None:
    want = want if isinstance(want, dict) else want.state_dict()
    have = got.state_dict()
    assert set(want) <= set(have)
    assert all(torch.equal(have[k], want[k]) for k in want), [k for k in want if not torch.equal(have[k], want[k])]


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ------------------------------------------------------------------ single files


def test_single_files_load_through_the_config_keys(tiny, saved):
    ids = replace(saved.ids, base=str(saved.unet), vae=str(saved.vae), controlnet=str(saved.controlnet),
                  motion_adapter=str(saved.adapter_diffusers), single_file_config=str(saved.config))
    c = load_components(ids, device="cpu", dtype=torch.float32)
    assert_same_weights(c.unet2d, tiny.unet2d)
    assert_same_weights(c.vae, tiny.vae)
    assert_same_weights(c.controlnet, tiny.controlnet)
    assert_same_weights(c.unet_motion, saved.adapter)
    assert_same_weights(c.text_encoder, tiny.text_encoder)  # the rest of the base: from single_file_config
    assert c.ids["base"] == str(saved.unet) and c.ids["vae"] == str(saved.vae)
    for role, path in (("base", saved.unet), ("vae", saved.vae), ("controlnet", saved.controlnet),
                       ("motion_adapter", saved.adapter_diffusers)):
        assert c.sources[role] == {"source": str(path), "kind": "file", "sha256_16": sha16(path)}
    assert c.sources["single_file_config"]["kind"] == "folder"
    assert c.sources["clip_vision"]["kind"] == "folder" and len(c.sources["clip_vision"]["sha256_16"]) == 16


def test_original_animatediff_layout_and_pickle_checkpoints(saved):
    c = load_components(replace(saved.ids, motion_adapter=str(saved.adapter_original),
                                single_file_config=str(saved.config)), device="cpu")
    assert_same_weights(c.unet_motion, {k: v for k, v in saved.adapter.items() if "pos_embed" not in k})
    with pytest.warns(UserWarning, match=r"mm_sd_v15\.ckpt is a pickle.*only load files from sources you trust"):
        c = load_components(replace(saved.ids, motion_adapter=str(saved.adapter_ckpt),
                                    single_file_config=str(saved.config)), device="cpu")
    assert_same_weights(c.unet_motion, {k: v for k, v in saved.adapter.items() if "pos_embed" not in k})
    assert c.sources["motion_adapter"]["sha256_16"] == sha16(saved.adapter_ckpt)


def test_folders_are_described_with_the_weights_they_load(tiny, saved):
    c = load_components(saved.ids, device="cpu")
    unet_file = Path(saved.ids.base) / "unet" / "diffusion_pytorch_model.safetensors"
    assert unet_file.is_file() and c.sources["base"]["kind"] == "folder"
    assert c.sources["controlnet"]["sha256_16"] == sha16(Path(saved.ids.controlnet) / "diffusion_pytorch_model.safetensors")
    assert tiny.sources["base"] == {"source": tiny.ids["base"], "kind": "random",
                                    "sha256_16": "random weights"}


def test_a_whole_sd_checkpoint_goes_through_the_pipeline_loader(tiny, saved, tmp_path, monkeypatch):
    """Plumbing only: the LDM key layout itself is diffusers' job (the tiny models have no LDM twin)."""
    from diffusers import StableDiffusionPipeline

    ckpt = tmp_path / "v1-5-pruned.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1),
               "first_stage_model.encoder.conv_in.weight": torch.zeros(1)}, ckpt)
    calls = []

    def fake(path, **kwargs):
        calls.append((path, kwargs))
        return SimpleNamespace(unet=tiny_components().unet2d, vae=tiny.vae, text_encoder=tiny.text_encoder,
                               tokenizer=tiny.tokenizer, scheduler=SimpleNamespace(config=tiny.scheduler_config))

    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file", fake)
    c = load_components(replace(saved.ids, base=str(ckpt), single_file_config=str(saved.config)), device="cpu",
                        video=False)
    assert calls[0][0] == str(ckpt.resolve()) and calls[0][1]["config"] == str(saved.config)
    assert calls[0][1]["local_files_only"] is True and calls[0][1]["safety_checker"] is None
    assert c.sources["base"]["sha256_16"] == sha16(ckpt)


# ------------------------------------------------------------------ bad inputs


def test_bad_model_files_fail_naming_file_key_and_fix(saved, tmp_path):
    text = tmp_path / "depth.safetensors"
    text.write_text("not weights")
    with pytest.raises(ConfigError, match=r"model\.controlnet.*depth\.safetensors is not a readable checkpoint"):
        load_components(replace(saved.ids, controlnet=str(text)), device="cpu")
    with pytest.raises(ConfigError, match=r"model\.vae.*no-such\.safetensors.*no such file"):
        load_components(replace(saved.ids, vae=str(tmp_path / "no-such.safetensors")), device="cpu")
    with pytest.raises(ConfigError, match=r"model\.motion_adapter.*seems to hold a ControlNet.*model\.controlnet"):
        load_components(replace(saved.ids, motion_adapter=str(saved.controlnet)), device="cpu")
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    with pytest.raises(ConfigError, match=r"model\.base.*notes\.txt, which is not a checkpoint"):
        load_components(replace(saved.ids, base=str(notes)), device="cpu")
    partial = tmp_path / "partial-unet.safetensors"
    save_file(dict(list(tiny_components(video=False).unet2d.state_dict().items())[:-4]), partial)
    with pytest.raises(ConfigError, match=r"model\.base.*partial-unet\.safetensors does not fit .*UNet"):
        load_components(replace(saved.ids, base=str(partial), single_file_config=str(saved.config)), device="cpu",
                        video=False)
    partial = tmp_path / "partial-motion.safetensors"
    save_file(dict(list(saved.adapter.items())[4:]), partial)
    with pytest.raises(ConfigError, match=r"partial-motion\.safetensors lacks some of the weights of AnimateDiff"):
        load_components(replace(saved.ids, motion_adapter=str(partial), single_file_config=str(saved.config)),
                        device="cpu")


def test_lora_entries_parse_scales_and_reject_non_numbers(tmp_path):
    lora = tmp_path / "style:v2.safetensors"  # a ':' in the path itself
    save_file({"x.lora_A.weight": torch.zeros(1)}, lora)
    assert parse_lora(str(lora)).scale == 1.0 and parse_lora(str(lora)).path == lora
    assert parse_lora(f"{lora}:0.7").scale == 0.7 and parse_lora(f"{lora}:-1").scale == -1.0
    with pytest.raises(ConfigError, match=r"model\.loras.*'x\.safetensors:abc'.*'abc'.*not a number"):
        parse_lora("x.safetensors:abc")
    with pytest.raises(ConfigError, match=r"model\.loras.*missing\.safetensors is not a file"):
        parse_lora(str(tmp_path / "missing.safetensors:0.5"))


# ------------------------------------------------------------------ LoRAs


def peft_lora(model: torch.nn.Module, targets, seed: int) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA on `targets` of `model` (changed in place) with random (non-zero) A and B, in peft keys."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    torch.manual_seed(seed)
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False), model)
    return {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory):
    """An image LoRA (UNet attention + text encoder, diffusers keys), its UNet part alone in peft
    keys without prefix (as `save_lora_adapter` writes) and in kohya keys, a motion LoRA (peft keys)
    and an SDXL-like LoRA whose layers the tiny UNet lacks."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    folder = tmp_path_factory.mktemp("loras")
    fresh = tiny_components(seed=0)
    unet = peft_lora(fresh.unet2d, ["to_q", "to_k", "to_v", "to_out.0"], seed=1)
    text = peft_lora(fresh.text_encoder, ["q_proj", "v_proj"], seed=2)
    image = {**{f"unet.{k}": v for k, v in convert_state_dict_to_diffusers(unet).items()},
             **{f"text_encoder.{k}": v for k, v in convert_state_dict_to_diffusers(text).items()}}
    motion = peft_lora(tiny_components(seed=0).unet_motion, r".*motion_modules.*attn[12]\.(to_q|to_k|to_v|to_out\.0)",
                       seed=3)
    assert motion and all(".motion_modules." in k for k in motion)
    sdxl = {"unet.down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.lora_A.weight": torch.randn(4, 2048),
            "unet.down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.lora_B.weight": torch.randn(1280, 4)}
    out = SimpleNamespace(image=folder / "painterly.safetensors", motion=folder / "zoom-in.safetensors",
                          sdxl=folder / "sdxl-style.safetensors", unet_peft=folder / "unet-peft.safetensors",
                          unet_kohya=folder / "unet-kohya.safetensors")
    save_file(image, out.image)
    save_file(unet, out.unet_peft)
    kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in unet.items()})
    save_file({k: v.contiguous() for k, v in kohya.items()}, out.unet_kohya)
    save_file(motion, out.motion)
    save_file(sdxl, out.sdxl)
    return out


def eps(c, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(motion UNet output (1, 4, 4, 8, 8), text embeddings) for fixed inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 4, 8, 8, generator=g)
    with torch.no_grad():
        text = c.encode_prompt(["a painting"])
        return c.unet_motion(x, 500, encoder_hidden_states=text.repeat_interleave(4, dim=0)).sample, text


def tiny_runtime(**model) -> Runtime:
    return Runtime(ModelConfig(preset="tiny", depth="tiny", device="cpu", **model))


def test_image_and_motion_loras_change_the_output_by_their_scale(tiny, lora_files):
    plain, plain_text = eps(tiny)
    on = tiny_runtime(loras=[str(lora_files.image)]).components
    changed, changed_text = eps(on)
    assert not torch.allclose(changed, plain, atol=1e-4) and not torch.allclose(changed_text, plain_text, atol=1e-4)
    zero = tiny_runtime(loras=[f"{lora_files.image}:0"]).components
    same, same_text = eps(zero)
    assert torch.allclose(same, plain, atol=1e-6) and torch.allclose(same_text, plain_text, atol=1e-6)
    assert not any(p.requires_grad for p in on.unet_motion.parameters())  # frozen, LoRA weights too
    assert on.loras == [{"path": str(lora_files.image), "scale": 1.0, "sha256_16": sha16(lora_files.image),
                         "target": "image", "text_encoder": True}]

    both = tiny_runtime(loras=[f"{lora_files.image}:0.5", f"{lora_files.motion}:1.5"]).components
    assert [(r["target"], r["scale"]) for r in both.loras] == [("image", 0.5), ("motion", 1.5)]
    motion_only = tiny_runtime(loras=[str(lora_files.motion)]).components
    assert not torch.allclose(eps(motion_only)[0], plain, atol=1e-4)
    report = base_report(load_config("tiny"), both, seed=0, kind="video")
    assert report["models"]["loras"] == both.loras and report["models"]["preset"] == "tiny"
    assert report["models"]["sources"]["base"]["sha256_16"] == "random weights"

    peft_keys, kohya_keys = (eps(tiny_runtime(loras=[str(f)]).components)[0]
                             for f in (lora_files.unet_peft, lora_files.unet_kohya))
    assert torch.allclose(kohya_keys, peft_keys, atol=1e-5) and not torch.allclose(peft_keys, plain, atol=1e-4)

    with pytest.warns(UserWarning, match="motion LoRA.*not applied"):
        image_run = Runtime(ModelConfig(preset="tiny", depth="tiny", device="cpu", loras=[str(lora_files.motion)]),
                            video=False).components
    assert image_run.loras[0]["skipped"]


def test_loras_for_other_models_or_not_loras_fail_naming_the_file(lora_files, saved):
    with pytest.raises(ConfigError, match=r"model\.loras.*sdxl-style\.safetensors does not fit.*not a layer"):
        tiny_runtime(loras=[str(lora_files.sdxl)]).components
    with pytest.raises(ConfigError, match=r"model\.loras.*controlnet\.safetensors is not a LoRA.*a ControlNet"):
        tiny_runtime(loras=[str(saved.controlnet)]).components


# ------------------------------------------------------------------ digests


def test_digests_are_cached_by_path_size_and_mtime(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"a" * 1000)
    digest = hashing.file_sha256(weights)
    assert digest == hashlib.sha256(b"a" * 1000).hexdigest()
    cache = hashing.cache_file()
    assert cache == tmp_path / "xdg" / "sagvideo" / "hashes.json"
    entry = json.loads(cache.read_text())["files"][str(weights.resolve())]
    assert entry == {"size": 1000, "mtime_ns": weights.stat().st_mtime_ns, "sha256": digest}
    # a second call reads the cache, not the file: a planted digest comes back
    data = json.loads(cache.read_text())
    data["files"][str(weights.resolve())]["sha256"] = "f" * 64
    cache.write_text(json.dumps(data))
    assert hashing.file_sha256(weights) == "f" * 64
    weights.write_bytes(b"b" * 1000)  # same size, new contents and mtime
    os.utime(weights, ns=(entry["mtime_ns"] + 10**9, entry["mtime_ns"] + 10**9))
    assert hashing.file_sha256(weights) == hashlib.sha256(b"b" * 1000).hexdigest()
    cache.write_text("{broken")  # ignored, then rewritten
    assert hashing.file_sha256(weights) == hashlib.sha256(b"b" * 1000).hexdigest()
    assert json.loads(cache.read_text())["files"][str(weights.resolve())]["sha256"] == hashing.file_sha256(weights)


# ------------------------------------------------------------------ memory levers


SMALL = {"video.frames": 2, "sampling.steps": 4, "sampling.denoise": 0.5, "guidance.n": 1, "guidance.passes": 1,
         "guidance.start": 0.0, "guidance.end": 1.0}
LEVERS = {"model.attention_slicing": True, "model.vae_slicing": True, "model.vae_tiling": True}


def run_tiny(runtime: Runtime, config):
    """The whole tiny pipeline on 2 random frames (encoded: denoise 0.5), 2 guided steps."""
    g = np.random.default_rng(0)
    frames = g.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    depth = g.random((2, 64, 64)).astype(np.float32)
    style = torch.from_numpy(g.random((3, 32, 32)).astype(np.float32))
    return StylizePipeline(runtime, config)(frames, style, "a painting", depth=depth, seed=0)


@pytest.fixture(scope="module")
def plain_run():
    config = load_config("tiny", SMALL)
    return run_tiny(Runtime.from_config(config), config)


def test_memory_levers_change_memory_not_results(plain_run):
    config = load_config("tiny", {**SMALL, **LEVERS})
    runtime = Runtime.from_config(config)
    levered = run_tiny(runtime, config)
    assert levered.report["models"]["levers"] == ["attention_slicing", "vae_slicing", "vae_tiling"]
    assert plain_run.report["models"]["levers"] == []
    assert np.abs(levered.frames.astype(int) - plain_run.frames.astype(int)).max() <= 1
    losses = [r["loss"] for r in plain_run.report["guided_steps"]]
    assert len(losses) == 2 and np.allclose([r["loss"] for r in levered.report["guided_steps"]], losses, rtol=1e-4)
    c = runtime.components
    assert c.vae.use_slicing and c.vae.use_tiling
    assert {type(layer.processor).__name__ for layer in _attention(c)} == {"SlicedAttnProcessor"}


def _attention(c):
    from sagvideo.pipeline.levers import attention_layers

    return attention_layers(c)


def test_applied_levers_restore_every_module_after_the_job():
    c = tiny_components(seed=0)
    before = [layer.processor for layer in _attention(c)]
    with pytest.raises(RuntimeError, match="job failed"):
        with applied_levers(c, gradient_checkpointing=True, attention_slicing=True, vae_slicing=True, vae_tiling=True):
            assert all_checkpointed(c.unet) and c.vae.use_slicing and c.vae.use_tiling
            assert all(type(layer.processor).__name__ == "SlicedAttnProcessor" for layer in _attention(c))
            raise RuntimeError("job failed")
    assert [layer.processor for layer in _attention(c)] == before
    assert not (all_checkpointed(c.unet) or c.vae.use_slicing or c.vae.use_tiling)


def test_vae_slicing_and_tiling_reach_the_encode_and_decode_calls(monkeypatch):
    c = tiny_components(seed=0, video=False)
    set_memory_levers(c, attention_slicing=False, vae_slicing=True, vae_tiling=True)
    calls = []
    for name in ("_decode", "_encode", "tiled_decode", "_tiled_encode"):
        original = getattr(c.vae, name)
        monkeypatch.setattr(c.vae, name, lambda *a, _f=original, _n=name, **k: (calls.append(_n), _f(*a, **k))[1])
    frames = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)  # > sample_size 64
    latents = encode_frames(c, frames, chunk=2)
    assert calls.count("_encode") == 2 and calls.count("_tiled_encode") == 2  # one frame at a time, tiled
    calls.clear()
    decode_frames(c, latents[0].transpose(0, 1))
    assert calls.count("_decode") == 2 and calls.count("tiled_decode") == 2


def test_cpu_offload_needs_cuda_and_its_hooks_keep_results(plain_run):
    with pytest.raises(ConfigError, match="model.cpu_offload needs a CUDA device"):
        Runtime(ModelConfig(preset="tiny", depth="tiny", device="cpu", cpu_offload=True))
    hooked = enable_cpu_offload(tiny_components(seed=0), "cpu")  # the hooks' plumbing, executed on the CPU
    offloaded = run_tiny(Runtime.from_components(hooked), load_config("tiny", SMALL))
    assert np.array_equal(offloaded.frames, plain_run.frames)
