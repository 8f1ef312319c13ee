"""The frozen networks of the video restyler, bundled: UNet (+ AnimateDiff motion), ControlNet-depth,
VAE, CLIP text encoder + tokenizer, CLIP vision (style loss), and the training noise schedule.

Three ways to get a `Components`:

* `loading.load_components(ModelIds(...))`: pretrained weights, by hub id, folder or single file;
* `tiny_components()`: the `tiny` preset with random weights, offline, < 1 s on CPU (tests);
* `random_components("sd15")`: real SD 1.5 sizes with random weights (GPU timing benchmarks).

How the video pieces are called (F frames, batch B, e.g. B = 2 for CFG; h, w = H/8, W/8):

    x = latents                                   # (B, 4, F, h, w)
    text = c.encode_prompt(prompts)               # (B, L, D)
    text_f = text.repeat_interleave(F, dim=0)     # (B*F, L, D), batch-major: b0f0, b0f1, ...
    x_f = x.transpose(1, 2).reshape(B * F, 4, h, w)
    down, mid = c.controlnet(x_f, t, encoder_hidden_states=text_f,
                             controlnet_cond=control,          # (B*F, 3, H, W) in [0, 1]
                             conditioning_scale=1.0, return_dict=False)
    eps = c.unet_motion(x, t, encoder_hidden_states=text_f,
                        down_block_additional_residuals=down,  # tuple of (B*F, C_i, h_i, w_i)
                        mid_block_additional_residual=mid).sample   # (B, 4, F, h, w)

`UNetMotionModel` takes 5-D latents but, like the ControlNet, text embeddings already
repeated per frame. The image model is `unet2d`, called with (B, 4, h, w) and (B, L, D).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    MotionAdapter,
    UNet2DConditionModel,
    UNetMotionModel,
)
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

from ..errors import ConfigError
from . import presets
from .hashing import RANDOM_WEIGHTS
from .presets import TINY_ID, ModelIds


@dataclass
class Components:
    """All frozen networks plus the facts about them the sampler needs.

    unet2d: image UNet, (B, 4, h, w) -> (B, 4, h, w); always present.
    unet_motion: video UNet (None when built with video=False), (B, 4, F, h, w) -> same.
        It shares its spatial weights with `unet2d` (no second copy in memory).
    controlnet: ControlNet-depth, per frame: (N, 4, h, w) + control (N, 3, 8h, 8w) -> residuals.
    vae: latents (N, 4, h, w) * (1 / latent_scale) -> pixels (N, 3, 8h, 8w) in [-1, 1].
    text_encoder / tokenizer: see `encode_prompt`.
    clip_vision: CLIP image tower for the style loss; kept in float32 whatever `dtype` is.
    alphas_cumprod: (T,) float64, cumulative product of (1 - beta_t) of the training schedule.
    vae_scale_factor: pixels per latent cell along each side (8).
    latent_scale: `vae.config.scaling_factor` (0.18215 for SD 1.5).
    ids: what was loaded per role (hub id, folder, file, or "tiny (random weights)").
    sources: per role, {"source", "kind": "hub"|"folder"|"file"|"random", "sha256_16"}: the first 16
        hex digits of SHA-256 of the weight files read ("random weights" for random presets).
    loras: the LoRAs applied, {"path", "scale", "sha256_16", "target": "image"|"motion"|...}.
    levers: the memory levers in effect on these networks (e.g. ["attention_slicing"]).
    """

    unet2d: UNet2DConditionModel
    unet_motion: UNetMotionModel | None
    controlnet: ControlNetModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    clip_vision: CLIPVisionModelWithProjection  # the projection serves clip_consistency only
    alphas_cumprod: torch.Tensor
    vae_scale_factor: int
    latent_scale: float
    ids: dict[str, str | None]
    preset: str
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    loras: list[dict[str, Any]] = field(default_factory=list)
    levers: list[str] = field(default_factory=list)

    @property
    def unet(self) -> UNetMotionModel | UNet2DConditionModel:
        """The motion UNet when there is one, else the image UNet."""
        return self.unet_motion if self.unet_motion is not None else self.unet2d

    def modules(self) -> dict[str, torch.nn.Module]:
        """The networks by name (unet2d's weights are inside unet_motion when both exist)."""
        named = {"unet2d": self.unet2d, "unet_motion": self.unet_motion, "controlnet": self.controlnet,
                 "vae": self.vae, "text_encoder": self.text_encoder, "clip_vision": self.clip_vision}
        return {k: v for k, v in named.items() if v is not None}

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Components":
        """Move every network (in place) and return self; `clip_vision` stays float32."""
        device = torch.device(device) if device is not None else self.device
        dtype = dtype or self.dtype
        for name, module in self.modules().items():
            # nn.Module.to: diffusers' own `.to(dtype)` logs a spurious float32 warning each call.
            torch.nn.Module.to(module, device=device, dtype=torch.float32 if name == "clip_vision" else dtype)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        self.device, self.dtype = device, dtype
        return self

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings (B, L, D) for B prompts, L = tokenizer.model_max_length (77 for SD).

        Prompts are padded to L and truncated to L tokens; the result is the text model's last
        hidden state (what SD's cross-attention reads), on `device` in `dtype`.
        """
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"encode_prompt takes a list of strings, got {prompts!r}")
        length = self.tokenizer.model_max_length
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=length,
                                truncation=True, return_tensors="pt")
        ids = tokens.input_ids.to(self.text_encoder.device)
        return self.text_encoder(ids)[0].to(device=self.device, dtype=self.dtype)


def alphas_cumprod_from_config(config: dict[str, Any]) -> torch.Tensor:
    """(T,) float64 alpha-bar of a diffusers scheduler config (the base model's own schedule).

    "linear" and "scaled_linear" betas are recomputed in float64; other schedules (and
    zero-terminal-SNR rescaling) come from `DDIMScheduler`'s float32 computation.
    """
    with torch.device("cpu"):  # also when called inside a `torch.device(...)` build context
        return _alphas_cumprod_cpu(config)


def _alphas_cumprod_cpu(config: dict[str, Any]) -> torch.Tensor:
    try:
        scheduler = DDIMScheduler.from_config(config)
    except NotImplementedError as exc:
        raise ConfigError(f"scheduler config of the base model is not supported: {exc}. To fix: use a "
                          "base model whose scheduler uses a linear/scaled_linear/cosine beta schedule") from exc
    cfg = scheduler.config
    steps = cfg.num_train_timesteps
    if cfg.trained_betas is None and not cfg.rescale_betas_zero_snr:
        lo, hi = float(cfg.beta_start), float(cfg.beta_end)
        if cfg.beta_schedule == "linear":
            betas = torch.linspace(lo, hi, steps, dtype=torch.float64)
        elif cfg.beta_schedule == "scaled_linear":
            betas = torch.linspace(lo**0.5, hi**0.5, steps, dtype=torch.float64) ** 2
        else:
            return scheduler.alphas_cumprod.to(torch.float64)
        return torch.cumprod(1.0 - betas, dim=0)
    return scheduler.alphas_cumprod.to(torch.float64)


def resolve_device_dtype(device: str | torch.device = "auto",
                         dtype: str | torch.dtype = "auto") -> tuple[torch.device, torch.dtype]:
    """"auto" device = cuda when available else cpu; "auto" dtype = float16 on cuda, float32 on cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"config key 'model.device' is not a device: {device!r}. To fix: use auto, cpu, cuda "
                          f"or cuda:N.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key 'model.device' asks for {device}, but this machine has no usable CUDA GPU. "
                          f"To fix: use --device auto (or cpu, slow).")
    if dtype == "auto":
        return device, torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        named = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                 "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if dtype not in named:
            raise ConfigError(f"unknown dtype {dtype!r}. To fix: use one of auto, {', '.join(named)}")
        dtype = named[dtype]
    return device, dtype


def share_unet_weights(unet2d: UNet2DConditionModel, unet_motion: UNetMotionModel) -> None:
    """Point `unet2d`'s layers at the copies inside `unet_motion` (made by `from_unet2d`).

    Both models then hold the same parameter tensors, so keeping the image UNet costs no memory.
    """
    for name in ("conv_in", "time_proj", "time_embedding", "conv_norm_out", "conv_act", "conv_out"):
        setattr(unet2d, name, getattr(unet_motion, name))
    for blocks2d, blocks_motion in ((unet2d.down_blocks, unet_motion.down_blocks),
                                    (unet2d.up_blocks, unet_motion.up_blocks),
                                    ([unet2d.mid_block], [unet_motion.mid_block])):
        for block2d, block_motion in zip(blocks2d, blocks_motion):
            for part in ("resnets", "attentions", "downsamplers", "upsamplers"):
                if getattr(block2d, part, None) is not None:
                    setattr(block2d, part, getattr(block_motion, part))


def check_compatible(c: Components) -> None:
    """Raise ConfigError when the pieces cannot work together (e.g. an SD 2 ControlNet on SD 1.5)."""
    text_width = c.text_encoder.config.hidden_size
    for role, model in (("model.base (unet)", c.unet2d), ("model.controlnet", c.controlnet)):
        if model.config.cross_attention_dim != text_width:
            raise ConfigError(f"{role} expects text embeddings of width {model.config.cross_attention_dim} "
                              f"but the text encoder gives {text_width}. To fix: use models of one SD version")
    if tuple(c.controlnet.config.block_out_channels) != tuple(c.unet2d.config.block_out_channels):
        raise ConfigError("model.controlnet has block widths "
                          f"{tuple(c.controlnet.config.block_out_channels)} but the UNet has "
                          f"{tuple(c.unet2d.config.block_out_channels)}. To fix: use a ControlNet for this base")
    control_factor = 2 ** (len(c.controlnet.config.conditioning_embedding_out_channels) - 1)
    if control_factor != c.vae_scale_factor:
        raise ConfigError(f"model.controlnet downsamples control images by {control_factor} but the VAE by "
                          f"{c.vae_scale_factor}. To fix: use a ControlNet trained for this base")
    if c.vae.config.latent_channels != c.unet2d.config.in_channels:
        raise ConfigError(f"the VAE has {c.vae.config.latent_channels} latent channels but the UNet takes "
                          f"{c.unet2d.config.in_channels}. To fix: use the VAE of model.base")


def _assemble(unet2d, adapter, controlnet, vae, text_encoder, tokenizer, clip_vision, sched_config,
              *, ids, preset, device, dtype) -> Components:
    """Build the motion UNet, freeze everything, check compatibility and move to device/dtype."""
    unet_motion = None
    if adapter is not None:
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # from_unet2d's `.to(dtype)` warns spuriously
        try:
            unet_motion = UNetMotionModel.from_unet2d(unet2d, adapter)
        finally:
            diffusers_logging.set_verbosity(verbosity)
        share_unet_weights(unet2d, unet_motion)
    c = Components(
        unet2d=unet2d, unet_motion=unet_motion, controlnet=controlnet, vae=vae,
        text_encoder=text_encoder, tokenizer=tokenizer, clip_vision=clip_vision,
        alphas_cumprod=alphas_cumprod_from_config(sched_config),
        vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
        latent_scale=float(vae.config.scaling_factor), ids=ids, preset=preset,
        device=device, dtype=dtype, scheduler_config=dict(sched_config),
    )
    for module in c.modules().values():
        module.requires_grad_(False)
        module.eval()
    check_compatible(c)
    return c.to(device, dtype)


def byte_level_tokenizer(max_length: int) -> CLIPTokenizer:
    """An in-memory CLIP tokenizer over raw bytes (no merges), padding to `max_length` tokens."""
    return CLIPTokenizer(vocab=presets.byte_level_vocab(), merges=[], model_max_length=max_length)


def _build_random(preset: str, video: bool, ids: dict, device: torch.device, dtype: torch.dtype) -> Components:
    """Random-weight networks of a preset's sizes, built directly on `device`."""
    unet2d = UNet2DConditionModel(**presets.unet2d_config(preset))
    controlnet = ControlNetModel.from_unet(
        unet2d, conditioning_embedding_out_channels=presets.controlnet_embedding_channels(preset))
    if preset == "tiny":
        # ControlNet's zero convolutions would make its residuals exactly zero; give them the
        # usual random init so that the tiny ControlNet visibly depends on the control image.
        for conv in (*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block):
            conv.reset_parameters()
        for conv in controlnet.controlnet_cond_embedding.modules():
            if isinstance(conv, torch.nn.Conv2d):  # variance-preserving, so the image gets through
                torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                torch.nn.init.zeros_(conv.bias)
    vae = AutoencoderKL(**presets.vae_config(preset))
    text_encoder = CLIPTextModel(CLIPTextConfig(**presets.clip_text_config(preset)))
    clip_vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**presets.clip_vision_config(preset)))
    tokenizer = byte_level_tokenizer(presets.tokenizer_length(preset))
    # Built last, so that the other networks are the same with and without video.
    adapter = MotionAdapter(**presets.motion_adapter_config(preset)) if video else None
    c = _assemble(unet2d, adapter, controlnet, vae, text_encoder, tokenizer, clip_vision,
                  presets.scheduler_config(), ids=ids, preset=preset, device=device, dtype=dtype)
    c.sources = {role: {"source": name, "kind": "random", "sha256_16": RANDOM_WEIGHTS}
                 for role, name in ids.items() if name is not None}
    return c


def _seeded_build(seed: int, device: torch.device, build) -> Components:
    """Run `build()` with all RNGs seeded, on `device`, leaving the caller's RNG state untouched."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.device(device):
        torch.manual_seed(seed)
        return build()


def tiny_components(seed: int = 0, video: bool = True) -> Components:
    """The `tiny` preset with random weights on CPU/float32: fully offline, ~0.2 s to build.

    64x64 pixels <-> 8x8 latents (vae_scale_factor 8); text embeddings (B, 16, 32).
    Same seed, same weights.
    """
    ids = {"base": TINY_ID, "motion_adapter": TINY_ID if video else None,
           "controlnet": TINY_ID, "clip_vision": TINY_ID}
    cpu = torch.device("cpu")
    return _seeded_build(seed, cpu, lambda: _build_random("tiny", video, ids, cpu, torch.float32))


def random_components(ids_or_preset: str = "sd15", device: str | torch.device = "auto",
                      dtype: str | torch.dtype = "auto", video: bool = True, seed: int = 0) -> Components:
    """Random weights at the sizes of a preset ("sd15" = real SD 1.5 sizes, or "tiny"), no download.

    For timing benchmarks: "sd15" allocates ~2.3B parameters (UNet 860M, motion 450M,
    ControlNet 360M, ...), so build it on a GPU. The tokenizer is the in-memory byte-level one
    padding to 77 tokens (text embeddings (B, 77, 768), as with the real model).
    """
    if ids_or_preset not in ("sd15", "tiny"):
        raise ConfigError(f"random_components: unknown preset {ids_or_preset!r}. To fix: use 'sd15' or 'tiny'")
    device, dtype = resolve_device_dtype(device, dtype)
    label = f"{ids_or_preset} sizes (random weights)"
    ids = {"base": label, "motion_adapter": label if video else None, "controlnet": label, "clip_vision": label}
    return _seeded_build(seed, device, lambda: _build_random(ids_or_preset, video, ids, device, dtype))


def sd_unet2d(size: str = "sd15", *, seed: int = 0, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> UNet2DConditionModel:
    """A random-weight image UNet, frozen and in eval mode: "sd15" (860M), "small" or "tiny".

    Input (B, 4, h, w) latents and (B, L, D) text with D = 768 ("sd15", "small") or 32 ("tiny").
    """
    device = torch.device(device)
    config = presets.unet2d_config(size)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**config)
    return torch.nn.Module.to(unet, dtype=dtype).requires_grad_(False).eval()


def save_components(c: Components, root: str | Path) -> ModelIds:
    """Write `c` as local folders loadable by `load_components(returned ids)`.

    Layout: root/base/{unet,vae,text_encoder,tokenizer,scheduler}, root/motion_adapter,
    root/controlnet, root/clip_vision. Without a motion UNet, motion_adapter is not written.
    """
    root = Path(root)
    base = root / "base"
    c.unet2d.save_pretrained(base / "unet")
    c.vae.save_pretrained(base / "vae")
    c.text_encoder.save_pretrained(base / "text_encoder")
    c.tokenizer.save_pretrained(base / "tokenizer")
    DDIMScheduler.from_config(c.scheduler_config).save_pretrained(base / "scheduler")
    _write_model_index(base)
    if c.unet_motion is not None:
        c.unet_motion.save_motion_modules(root / "motion_adapter")
    c.controlnet.save_pretrained(root / "controlnet")
    c.clip_vision.save_pretrained(root / "clip_vision")
    return ModelIds(base=str(base), motion_adapter=str(root / "motion_adapter"),
                    controlnet=str(root / "controlnet"), clip_vision=str(root / "clip_vision"))


def _write_model_index(base: Path) -> None:
    """`model_index.json` of a StableDiffusionPipeline, so the folder also serves as `single_file_config`."""
    import json

    import diffusers

    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
             "feature_extractor": [None, None], "requires_safety_checker": False}
    (base / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
