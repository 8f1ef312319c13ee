"""The main job in memory: video -> depth -> guided sampling -> frames + report.

Data flows one way: `read_clip` -> `clip_depth` -> `DepthControlledEps` + `LatentStyleLoss`
-> `guidance.sample` (SAG on the guided steps) -> decode -> frames at the source size.
Images are the one-frame case of the same sampler. `outputs.py` writes the files.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import MAX_SIZE, Config, load_config
from .denoiser import DepthControlledEps, decode_frames, decode_latents, initial_noise
from .errors import ConfigError, InputError
from .guidance import GramStyleLoss, LatentStyleLoss, SAGParams, ddim_timesteps, sample
from .images import load_photo, load_style_image
from .models.components import Components, load_components, resolve_device_dtype, tiny_components
from .models.presets import ModelIds
from .report import Stopwatch, base_report, peak_memory_mb
from .video.depth import clip_depth, depth_to_control_image, load_depth_dir, make_depth_estimator
from .video.io import Clip, model_size_for, read_clip, restore_size


@dataclass
class Runtime:
    """Networks loaded once per process (and reused across jobs), plus the depth estimator."""

    components: Components
    depth_name: str
    _depth: Any = None

    @classmethod
    def from_config(cls, config: Config, video: bool = True, device: str | torch.device | None = None) -> "Runtime":
        """Load (or build, for the tiny preset) every network the config names."""
        m = config.model
        device, dtype = resolve_device_dtype(device or m.device, m.dtype)
        if m.preset == "tiny":
            components = tiny_components(seed=0, video=video).to(device, dtype)
        else:
            ids = ModelIds(base=m.base, motion_adapter=m.motion_adapter, controlnet=m.controlnet, clip_vision=m.clip_vision)
            components = load_components(ids, device=device, dtype=dtype, video=video)
        return cls(components, m.depth)

    def depth_estimator(self):
        """Loaded on first use: runs with precomputed maps never load it."""
        if self._depth is None:
            self._depth = make_depth_estimator(self.depth_name, self.components.device)
        return self._depth


class ProgressDepth:
    """A depth estimator run a few frames at a time under a progress bar (same results)."""

    def __init__(self, estimator: Any, chunk: int = 4):
        self.estimator, self.name, self.chunk = estimator, estimator.name, chunk

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        parts = []
        with tqdm(total=len(frames), desc="depth", unit="frame", leave=False) as bar:
            for i in range(0, len(frames), self.chunk):
                parts.append(self.estimator(frames[i : i + self.chunk]))
                bar.update(len(parts[-1]))
        return np.concatenate(parts)


@dataclass
class StylizeResult:
    """frames: uint8 (F, H, W, 3) at the source size; depth: (F, h, w) in [0, 1] at model size."""

    frames: np.ndarray
    report: dict[str, Any]
    clip: Clip | None = None
    depth: np.ndarray | None = None
    style: np.ndarray | None = None
    model_frames: np.ndarray | None = None


def sag_params(config: Config) -> SAGParams:
    g = config.guidance
    return SAGParams(strength=g.strength, start=g.start, end=g.end, n=g.n, adaptive_n=g.adaptive_n,
                     repeats=g.repeats, method=g.method, scheme=g.scheme)


def check_fits(config: Config, components: Components, prompt: str) -> None:
    """Settings that depend on the loaded models, checked before depth and sampling."""
    layers = components.clip_vision.config.num_hidden_layers
    if config.guidance.enabled and not 1 <= config.guidance.layer <= layers:
        raise ConfigError(f"config key 'guidance.layer' is {config.guidance.layer}, but the CLIP vision model has "
                          f"{layers} blocks. To fix: use a value from 1 to {layers} (default 3).")
    tokens = len(components.tokenizer(prompt, verbose=False).input_ids)
    if tokens > components.tokenizer.model_max_length and components.preset != "tiny":  # tiny: byte tokens
        warnings.warn(f"the prompt is {tokens} tokens long; the text encoder reads only the first "
                      f"{components.tokenizer.model_max_length}. Shorten it to keep every word.", stacklevel=2)


def _set_checkpointing(components: Components, enabled: bool) -> None:
    for module in (components.unet, components.controlnet):
        if enabled and getattr(module, "_supports_gradient_checkpointing", False):
            module.enable_gradient_checkpointing()
        elif getattr(module, "is_gradient_checkpointing", False):
            module.disable_gradient_checkpointing()


def guided_sample(
    components: Components,
    config: Config,
    prompt: str,
    style: torch.Tensor,
    control: torch.Tensor | None,
    latent_shape: tuple[int, int, int, int, int],
    seed: int,
    progress: bool = False,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Sample latents (1, C, F, h, w) with CFG + ControlNet-depth, SAG toward `style` on the guided steps.

    style: (3, H, W) in [0, 1]; control: (F, 3, H, W) depth images or None.
    Returns the clean latents and one record per guided pass (loss, rho, costs).
    """
    s, g = config.sampling, config.guidance
    text = components.encode_prompt([s.negative_prompt, prompt])
    eps_fn = DepthControlledEps(components, text, control, cfg_scale=s.cfg_scale, controlnet_scale=s.controlnet_scale)
    loss_fn = None
    if g.enabled and g.strength > 0:  # strength 0 would compute gradients only to scale them to nothing
        style_loss = GramStyleLoss(components.clip_vision, style, layer=g.layer)
        loss_fn = LatentStyleLoss(lambda z: decode_frames(components, z).float(), style_loss, chunk=g.decode_chunk)
    _set_checkpointing(components, loss_fn is not None and g.gradient_checkpointing)
    timesteps = ddim_timesteps(len(components.alphas_cumprod), s.steps)
    generator = torch.Generator().manual_seed(seed + 1)  # time-travel noise; seed itself draws x_T
    bar = tqdm(total=len(timesteps), desc="sampling", unit="step", disable=not progress)
    x_T = initial_noise(latent_shape, seed, components.device)
    try:
        result = sample(
            eps_fn, x_T, components.alphas_cumprod, timesteps, loss_fn=loss_fn, params=sag_params(config),
            generator=generator, grad_eps_fn=eps_fn.conditional_only() if g.cond_only else None,
            callback=lambda i, t, x: bar.update(1),
            on_record=lambda r: bar.set_postfix_str(f"guided pass {r.repeat + 1}/{g.repeats}, style loss {r.loss:.4g}"),
        )
    finally:
        bar.close()
    records = [vars(r) for r in result.records]
    return result.x0, records


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [0, 1] -> uint8 (F, H, W, 3)."""
    return (frames.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def stylize_video(
    video: str | os.PathLike,
    style: str | os.PathLike,
    prompt: str,
    *,
    config: Config | None = None,
    runtime: Runtime | None = None,
    depth_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> StylizeResult:
    """Stylize a clip of `video` toward the `style` image; returns frames at the source size + report.

    Library entry point: pass `runtime` to reuse loaded networks across calls, `depth_dir` for
    precomputed depth maps, `cache_dir` to cache estimated maps.
    """
    config = config or load_config()
    seed = config.sampling.seed if seed is None else seed
    clock = Stopwatch()
    with clock.stage("read"):
        v = config.video
        clip = read_clip(video, frames=v.frames, stride=v.stride, start=v.start, size=v.size)
        style_image = load_style_image(style)
    with clock.stage("load_models"):
        runtime = runtime or Runtime.from_config(config, video=clip.frames.shape[0] > 1)
    components = runtime.components
    check_fits(config, components, prompt)
    with clock.stage("depth"):
        if depth_dir is not None:
            depth = load_depth_dir(depth_dir, len(clip.frames), clip.model_size)
        else:
            estimator = ProgressDepth(runtime.depth_estimator()) if progress else runtime.depth_estimator()
            depth = clip_depth(clip.frames, estimator, cache_dir, key_extra=str(clip.model_size))
    f = len(clip.frames)
    w, h = clip.model_size
    factor = components.vae_scale_factor
    channels = components.unet2d.config.in_channels
    with clock.stage("sampling"):
        latents, records = guided_sample(
            components, config, prompt, style_image, depth_to_control_image(depth),
            (1, channels, f, h // factor, w // factor), seed, progress,
        )
    with clock.stage("decode"):
        model_frames = _to_uint8(decode_latents(components, latents, config.guidance.decode_chunk))
        frames = restore_size(model_frames, clip.source_size)
    report = base_report(config, components, seed, "video")
    report.update(
        input={"video": str(Path(video).resolve()), "style": str(Path(style).resolve()), "prompt": prompt,
               "fps": str(clip.fps), "frame_indices": clip.indices, "source_size": list(clip.source_size),
               "model_size": list(clip.model_size), "has_audio": clip.has_audio,
               "depth": str(depth_dir) if depth_dir else runtime.depth_name},
        guided_steps=records,
        seconds=clock.seconds,
        peak_memory=peak_memory_mb(components.device),
    )
    style_u8 = _to_uint8(style_image[None])[0]
    return StylizeResult(frames, report, clip, depth, style_u8, model_frames)


def stylize_image(
    prompt: str,
    style: str | os.PathLike,
    *,
    config: Config | None = None,
    runtime: Runtime | None = None,
    depth_from: str | os.PathLike | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> StylizeResult:
    """One image (F = 1, no motion module) through the same guided sampler.

    Size: `width` x `height` when given (rounded to multiples of 8); else the `--depth-from`
    photo's aspect with short side `config.video.size`; else a square of that size.
    """
    config = config or load_config("image")
    seed = config.sampling.seed if seed is None else seed
    clock = Stopwatch()
    style_image = load_style_image(style)
    photo = load_photo(depth_from) if depth_from is not None else None
    if width is not None or height is not None:
        if not width or not height or not (8 <= width <= MAX_SIZE and 8 <= height <= MAX_SIZE):
            raise InputError(f"give both --width and --height, each from 8 to {MAX_SIZE} pixels, got {width} x {height}.")
        size = (max(8, round(width / 8) * 8), max(8, round(height / 8) * 8))
    elif photo is not None:
        size = model_size_for(photo.shape[1], photo.shape[0], config.video.size)
    else:
        size = (config.video.size // 8 * 8,) * 2
    with clock.stage("load_models"):
        runtime = runtime or Runtime.from_config(config, video=False)
    components = runtime.components
    check_fits(config, components, prompt)
    control, depth = None, None
    if photo is not None:
        with clock.stage("depth"):
            from PIL import Image

            resized = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BICUBIC))[None]
            depth = clip_depth(resized, runtime.depth_estimator())
            control = depth_to_control_image(depth)
    factor = components.vae_scale_factor
    with clock.stage("sampling"):
        latents, records = guided_sample(
            components, config, prompt, style_image, control,
            (1, components.unet2d.config.in_channels, 1, size[1] // factor, size[0] // factor), seed, progress,
        )
    with clock.stage("decode"):
        image = _to_uint8(decode_latents(components, latents))
    if (width, height) != (None, None) and image.shape[1:3] != (height, width):
        image = restore_size(image, (width, height))
    report = base_report(config, components, seed, "image")
    report.update(input={"prompt": prompt, "style": str(Path(style).resolve()),
                         "depth_from": str(depth_from) if depth_from else None, "size": [image.shape[2], image.shape[1]]},
                  guided_steps=records, seconds=clock.seconds, peak_memory=peak_memory_mb(components.device))
    return StylizeResult(image[0], report, None, depth, _to_uint8(style_image[None])[0], image)


