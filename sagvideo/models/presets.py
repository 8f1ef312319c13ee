"""Default model ids, and the configs of the `tiny` and `sd15` (real-size) architectures.

Everything here is plain data: hub ids and keyword dicts for the diffusers/transformers
constructors. `components.py` turns them into models.

Sizes of the `tiny` preset (random weights, builds in well under a second on CPU):

* pixels (F, 3, 64, 64) -> VAE latents (F, 4, 8, 8): `vae_scale_factor` 8, as in SD 1.5;
* UNet: 2 levels (32, 64 channels), cross-attention width 32, latent 8x8 -> 4x4 inside;
* ControlNet: the UNet's layout, its conditioning embedding downsamples the control image
  by 2 ** 3 = 8, so 64x64 control images give residuals on the 8x8 latent grid;
* text: 2-layer CLIP text model (width 32), tokenizer padding to 16 tokens;
* CLIP vision: 4 layers (hidden_states has 5 entries), 32x32 images, patch 8, width 32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import defaults
from ..errors import ConfigError

TINY_ID = "tiny (random weights)"


@dataclass(frozen=True)
class ModelIds:
    """Which pretrained models to load: each a hub id, a local folder, or a single checkpoint file.

    `base` is a Stable Diffusion 1.x folder/repo with subfolders unet, vae, text_encoder,
    tokenizer and scheduler, or one file (a whole SD checkpoint, or a UNet alone). `vae` = ""
    uses the base's VAE. `single_file_config` (hub id or folder of an SD 1.x pipeline) gives
    the architecture of single files and, for a UNet file, the other base parts.
    `clip_vision` is a hub id or folder only.
    """

    base: str = defaults.DEFAULT_BASE
    motion_adapter: str = defaults.DEFAULT_MOTION_ADAPTER
    controlnet: str = defaults.DEFAULT_CONTROLNET
    clip_vision: str = defaults.DEFAULT_CLIP_VISION
    vae: str = ""
    single_file_config: str = defaults.DEFAULT_BASE


# Stable Diffusion 1.x training noise schedule (the `scheduler/scheduler_config.json` values).
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def scheduler_config() -> dict[str, Any]:
    """The SD 1.5 DDIM scheduler config (used by both presets)."""
    return dict(SD_SCHEDULER_CONFIG)


# ---------------------------------------------------------------- UNet (UNet2DConditionModel)


def unet2d_config(size: str = "tiny") -> dict[str, Any]:
    """Keyword arguments for `UNet2DConditionModel` of the given size.

    "sd15": the SD 1.5 UNet (~860M parameters, latent 64x64 for 512x512 pixels).
    "small": SD 1.5's layout at 1/5 the width (64..256 channels), text width 768; for CPU runs.
    "tiny": 2 levels, 32/64 channels, text width 32, for tests.
    """
    sd_layout = {
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "layers_per_block": 2,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "cross_attention_dim": 768,
        "sample_size": 64,
    }
    if size == "sd15":
        return {**sd_layout, "block_out_channels": (320, 640, 1280, 1280)}
    if size == "small":
        return {**sd_layout, "block_out_channels": (64, 128, 256, 256), "attention_head_dim": 4}
    if size == "tiny":
        return {
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "attention_head_dim": 4,
            "norm_num_groups": 8,
            "cross_attention_dim": 32,
            "sample_size": 8,
        }
    raise ConfigError(f"unknown UNet size {size!r}; use 'sd15', 'small' or 'tiny'")


def motion_adapter_config(preset: str = "tiny") -> dict[str, Any]:
    """Keyword arguments for `MotionAdapter`, matching `unet2d_config(preset)`.

    "sd15" follows guoyww/animatediff-motion-adapter-v1-5-2 (AnimateDiff v2: motion modules
    in the mid block too, positional encoding for up to `defaults.MOTION_FRAME_LIMIT` frames).
    """
    if preset == "sd15":
        return {
            "block_out_channels": (320, 640, 1280, 1280),
            "motion_layers_per_block": 2,
            "motion_mid_block_layers_per_block": 1,
            "motion_num_attention_heads": 8,
            "motion_norm_num_groups": 32,
            "motion_max_seq_length": defaults.MOTION_FRAME_LIMIT,
            "use_motion_mid_block": True,
        }
    if preset == "tiny":
        return {
            "block_out_channels": (32, 64),
            "motion_layers_per_block": 1,
            "motion_mid_block_layers_per_block": 1,
            "motion_num_attention_heads": 4,
            "motion_norm_num_groups": 8,
            "motion_max_seq_length": defaults.MOTION_FRAME_LIMIT,
            "use_motion_mid_block": True,
        }
    raise ConfigError(f"unknown preset {preset!r}; use 'sd15' or 'tiny'")


def controlnet_embedding_channels(preset: str = "tiny") -> tuple[int, ...]:
    """`conditioning_embedding_out_channels` for `ControlNetModel.from_unet`.

    Its length L sets how much the control image is downsampled: 2 ** (L - 1) = 8 for both
    presets, the same as the VAE, so a control image at pixel size lands on the latent grid.
    """
    if preset == "sd15":
        return (16, 32, 96, 256)
    if preset == "tiny":
        return (8, 16, 16, 32)
    raise ConfigError(f"unknown preset {preset!r}; use 'sd15' or 'tiny'")


def vae_config(preset: str = "tiny") -> dict[str, Any]:
    """Keyword arguments for `AutoencoderKL`; 4 levels, so `vae_scale_factor` = 2 ** 3 = 8."""
    common = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4,
        "scaling_factor": 0.18215,
    }
    if preset == "sd15":
        return {**common, "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
                "norm_num_groups": 32, "sample_size": 512}
    if preset == "tiny":
        return {**common, "block_out_channels": (8, 16, 16, 16), "layers_per_block": 1,
                "norm_num_groups": 4, "sample_size": 64}
    raise ConfigError(f"unknown preset {preset!r}; use 'sd15' or 'tiny'")


# ---------------------------------------------------------------- CLIP text and vision


def byte_level_vocab() -> dict[str, int]:
    """A complete byte-level BPE vocabulary without merges (every text is spelled byte by byte).

    The 256 GPT-2 byte symbols, each also with CLIP's end-of-word suffix `</w>`, then
    `<|startoftext|>` and `<|endoftext|>`: 514 entries.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    symbols = [chr(c) for c in codes]
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


TINY_TOKENIZER_LENGTH = 16
SD_TOKENIZER_LENGTH = 77


def clip_text_config(preset: str = "tiny") -> dict[str, Any]:
    """Keyword arguments for `CLIPTextConfig`.

    "sd15": the CLIP ViT-L/14 text tower of SD 1.5 (width 768, 12 layers, 77 positions).
    The token ids used with it come from the in-memory byte-level tokenizer (ids < 514).
    """
    vocab = byte_level_vocab()
    ids = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
           "pad_token_id": vocab["<|endoftext|>"]}
    if preset == "sd15":
        return {**ids, "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
                "num_hidden_layers": 12, "num_attention_heads": 12,
                "max_position_embeddings": SD_TOKENIZER_LENGTH, "hidden_act": "quick_gelu",
                "projection_dim": 768}
    if preset == "tiny":
        return {**ids, "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 4,
                "max_position_embeddings": TINY_TOKENIZER_LENGTH, "hidden_act": "quick_gelu",
                "projection_dim": 32}
    raise ConfigError(f"unknown preset {preset!r}; use 'sd15' or 'tiny'")


def clip_vision_config(preset: str = "tiny") -> dict[str, Any]:
    """Keyword arguments for `CLIPVisionConfig`.

    "sd15": CLIP ViT-B/32 (the style-loss model): width 768, 12 layers, 224x224, patch 32.
    "tiny": 4 layers so that `hidden_states[3]` (used by the style loss) exists.
    """
    if preset == "sd15":
        return {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                "num_attention_heads": 12, "image_size": 224, "patch_size": 32,
                "projection_dim": 512, "hidden_act": "quick_gelu"}
    if preset == "tiny":
        return {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
                "num_attention_heads": 4, "image_size": 32, "patch_size": 8,
                "projection_dim": 32, "hidden_act": "quick_gelu"}
    raise ConfigError(f"unknown preset {preset!r}; use 'sd15' or 'tiny'")


def tokenizer_length(preset: str = "tiny") -> int:
    """How many tokens prompts are padded/truncated to."""
    return SD_TOKENIZER_LENGTH if preset == "sd15" else TINY_TOKENIZER_LENGTH


def motion_frame_limit(preset: str, motion_adapter: str) -> int:
    """Frames the motion module's position table holds, read without loading any weights.

    The tiny preset and the default adapter hold `defaults.MOTION_FRAME_LIMIT` (32); another
    adapter's `config.json` is read from its folder or the Hugging Face cache when it is there,
    else the v1.5 value is assumed (the loaded model is checked again before sampling).
    """
    if preset == "tiny":
        return motion_adapter_config("tiny")["motion_max_seq_length"]
    config_file = Path(motion_adapter).expanduser() / "config.json"
    if not config_file.is_file() and motion_adapter != defaults.DEFAULT_MOTION_ADAPTER:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(motion_adapter, "config.json")
            config_file = Path(cached) if isinstance(cached, str) else config_file
        except Exception:  # not a hub id, or no cache: fall back to the v1.5 limit
            pass
    try:
        return int(json.loads(config_file.read_text(encoding="utf-8")).get("motion_max_seq_length",
                                                                           defaults.MOTION_FRAME_LIMIT))
    except (OSError, ValueError):
        return defaults.MOTION_FRAME_LIMIT


# ---------------------------------------------------------------- IP-Adapter image encoder


def image_encoder_config(preset: str = "tiny") -> dict[str, Any]:
    """Keyword arguments for the IP-Adapter's `CLIPVisionConfig` (a `CLIPVisionModelWithProjection`).

    "sd15": CLIP ViT-H/14 as in h94/IP-Adapter models/image_encoder (width 1280, 32 layers,
    224x224, patch 14, image embeddings of 1024). "tiny": the tiny CLIP vision sizes, image
    embeddings of 32.
    """
    if preset == "sd15":
        return {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
                "num_attention_heads": 16, "image_size": 224, "patch_size": 14,
                "projection_dim": 1024, "hidden_act": "gelu"}
    if preset == "tiny":
        return clip_vision_config("tiny")
    raise ConfigError(f"unknown preset {preset!r}; use 'sd15' or 'tiny'")
