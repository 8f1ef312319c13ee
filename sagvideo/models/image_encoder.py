"""The IP-Adapter's CLIP image encoder (`model.image_encoder`) and the IP-Adapter weights it feeds.

`load_image_prompt_models` gives the encoder (a `CLIPVisionModelWithProjection`) and the
converted adapter layers, each with its report entry, checked against each other and the UNet:
pretrained ones by hub id, folder or single file; for the tiny preset, random
weights built from configs unless a path is given. `embed_image` turns the style image into the
image embedding (1, D) the adapter projects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import defaults
from ..errors import ConfigError
from ..guidance.losses import CLIP_MEAN, CLIP_STD
from .hashing import DIGEST_CHARS, RANDOM_WEIGHTS, file_sha256
from .hub import load_pretrained
from .ip_adapter import KEY as ADAPTER_KEY
from .ip_adapter import IPAdapterLayers, convert, random_ip_adapter_weights, read_ip_adapter_file
from .presets import TINY_ID, image_encoder_config
from .sources import FILE, FOLDER, HUB, ModelRef, classify, describe, read_state_dict

ENCODER_KEY = "model.image_encoder"


def _random_encoder(preset: str, seed: int = 0) -> torch.nn.Module:
    """A random-weight encoder at a preset's sizes ("tiny", or "sd15" for benchmarks)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPVisionModelWithProjection(CLIPVisionConfig(**image_encoder_config(preset)))


def _encoder_subfolder(ref: ModelRef) -> str:
    """The folder inside a hub repo / local folder holding the encoder: h94's layout, else the root."""
    if ref.kind == FOLDER:
        for sub in (defaults.IMAGE_ENCODER_SUBFOLDER, "image_encoder"):
            if (ref.path / sub / "config.json").is_file():
                return sub
        return ""
    return defaults.IMAGE_ENCODER_SUBFOLDER if ref.name == defaults.DEFAULT_IMAGE_ENCODER else ""


def _encoder_architecture(preset: str) -> Any:
    """The `CLIPVisionConfig` a single-file encoder is read into: the tiny preset's, or that of the
    default encoder (h94/IP-Adapter's ViT-H/14, whose config must be in the Hugging Face cache)."""
    from transformers import CLIPVisionConfig

    if preset == "tiny":
        return CLIPVisionConfig(**image_encoder_config("tiny"))
    return load_pretrained(CLIPVisionConfig.from_pretrained, defaults.DEFAULT_IMAGE_ENCODER,
                           what="IP-Adapter image encoder config (the architecture of a single-file encoder)",
                           config_key=ENCODER_KEY, subfolder=defaults.IMAGE_ENCODER_SUBFOLDER)


def load_encoder_file(ref: ModelRef, preset: str) -> torch.nn.Module:
    """A `CLIPVisionModelWithProjection` from one checkpoint file (transformers' key names, as the
    single-file CLIP vision files of ComfyUI workflows use), every weight checked against the
    architecture: a file for another encoder is a ConfigError naming it."""
    from transformers import CLIPVisionModelWithProjection

    weights = read_state_dict(ref.path, ENCODER_KEY)
    encoder = CLIPVisionModelWithProjection(_encoder_architecture(preset))
    try:
        encoder.load_state_dict(weights, strict=True)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)[:200]]
        raise ConfigError(f"config key '{ENCODER_KEY}' is {ref.path}, whose weights are not those of the image "
                          f"encoder the IP-Adapter needs ({first[0].strip()}). To fix: give the CLIP ViT-H/14 image "
                          f"encoder (e.g. {defaults.DEFAULT_IMAGE_ENCODER}, {defaults.IMAGE_ENCODER_SUBFOLDER}), "
                          f"as a folder or one file with transformers' key names.") from exc
    return encoder


def load_encoder(name: str, dtype: torch.dtype, preset: str = "default") -> tuple[torch.nn.Module, dict[str, Any]]:
    """A pretrained `CLIPVisionModelWithProjection` from a hub id, a folder or one checkpoint file,
    and its report entry."""
    from transformers import CLIPVisionModelWithProjection

    ref = classify(name, ENCODER_KEY)
    if ref.kind == FILE:
        return torch.nn.Module.to(load_encoder_file(ref, preset), dtype=dtype), describe(ref)
    sub = _encoder_subfolder(ref)
    extra = {"subfolder": sub} if sub else {}
    encoder = load_pretrained(CLIPVisionModelWithProjection.from_pretrained, name, what="IP-Adapter image encoder",
                              config_key=ENCODER_KEY, **extra)
    if getattr(encoder.config, "projection_dim", None) is None or not hasattr(encoder, "visual_projection"):
        raise ConfigError(f"config key '{ENCODER_KEY}' ({name}) is not a CLIP vision model with a projection. "
                          f"To fix: use {defaults.DEFAULT_IMAGE_ENCODER} (its {defaults.IMAGE_ENCODER_SUBFOLDER}).")
    return torch.nn.Module.to(encoder, dtype=dtype), describe(ref, (sub,))


def _adapter_file(name: str) -> tuple[Path, ModelRef]:
    """The IP-Adapter weight file a reference names: the file, or h94's layout in a folder / hub repo."""
    ref = classify(name, ADAPTER_KEY)
    if ref.kind == FILE:
        return ref.path, ref
    candidates = (defaults.IP_ADAPTER_WEIGHT, Path(defaults.IP_ADAPTER_WEIGHT).name,
                  Path(defaults.IP_ADAPTER_WEIGHT).with_suffix(".bin").as_posix(),
                  Path(defaults.IP_ADAPTER_WEIGHT).with_suffix(".bin").name)
    if ref.kind == FOLDER:
        for candidate in candidates:
            if (ref.path / candidate).is_file():
                return ref.path / candidate, ref
        raise ConfigError(f"config key '{ADAPTER_KEY}' is the folder {ref.path}, which has none of "
                          f"{', '.join(candidates)}. To fix: give the IP-Adapter file itself.")
    from huggingface_hub import hf_hub_download

    path = load_pretrained(lambda repo, **kw: hf_hub_download(repo, defaults.IP_ADAPTER_WEIGHT, **kw), name,
                           what="IP-Adapter", config_key=ADAPTER_KEY)
    return Path(path), ref


def _adapter_source(path: Path, ref: ModelRef) -> dict[str, Any]:
    shown = ref.shown if ref.kind != HUB else f"{ref.name}/{defaults.IP_ADAPTER_WEIGHT}"
    return {"source": shown, "kind": ref.kind, "sha256_16": file_sha256(path)[:DIGEST_CHARS]}


def load_image_prompt_models(ip_adapter: str, image_encoder: str, unet2d: torch.nn.Module, *, preset: str,
                             dtype: torch.dtype) -> tuple[torch.nn.Module, dict[str, Any], IPAdapterLayers]:
    """(image encoder, its report entry, adapter layers) for `unet2d`, checked to fit together.

    For random-weight components (`preset` "tiny", or "sd15" sizes in benchmarks) each of the two
    that is still its default hub id is built with random weights of that preset's sizes.
    """
    rand = preset in ("tiny", "sd15")
    random_entry = {"source": TINY_ID if preset == "tiny" else f"{preset} sizes (random weights)", "kind": "random",
                    "sha256_16": RANDOM_WEIGHTS}
    if rand and image_encoder == defaults.DEFAULT_IMAGE_ENCODER:
        encoder, encoder_entry = torch.nn.Module.to(_random_encoder(preset), dtype=dtype), dict(random_entry)
    else:
        encoder, encoder_entry = load_encoder(image_encoder, dtype, preset)
    encoder.requires_grad_(False).eval()
    if rand and ip_adapter == defaults.DEFAULT_IP_ADAPTER:
        parts, where = random_ip_adapter_weights(unet2d, encoder.config.projection_dim), random_entry["source"]
        layers = convert(parts, unet2d, where, dict(random_entry))
    else:
        path, ref = _adapter_file(ip_adapter)
        layers = convert(read_ip_adapter_file(path), unet2d, str(path), _adapter_source(path, ref))
    if encoder.config.projection_dim != layers.embed_dim:
        raise ConfigError(f"config key '{ENCODER_KEY}' ({image_encoder}) gives image embeddings of "
                          f"{encoder.config.projection_dim}, but the IP-Adapter of '{ADAPTER_KEY}' ({ip_adapter}) "
                          f"takes {layers.embed_dim}. To fix: use the image encoder the adapter was trained with "
                          f"(for h94's ip-adapter_sd15: {defaults.DEFAULT_IMAGE_ENCODER}, "
                          f"{defaults.IMAGE_ENCODER_SUBFOLDER}).")
    return encoder, encoder_entry, layers


@torch.no_grad()
def embed_image(encoder: torch.nn.Module, style: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Style image (3, H, W) in [0, 1] -> CLIP image embedding (1, projection_dim), float32.

    As CLIPImageProcessor does: short side resized to the encoder's size (bicubic), centre crop,
    CLIP mean/std.
    """
    size = int(encoder.config.image_size)
    x = style.to(device, torch.float32).unsqueeze(0)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                      align_corners=False, antialias=True)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size].clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    dtype = next(encoder.parameters()).dtype
    return encoder(pixel_values=((x - mean) / std).to(dtype)).image_embeds.float()
