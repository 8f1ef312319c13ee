"""IP-Adapter for SD 1.5: the style image as an image prompt, through diffusers' own IP-Adapter layers.

An IP-Adapter checkpoint (h94/IP-Adapter `ip-adapter_sd15`, original layout) holds
`image_proj.*` (a linear map of the CLIP image embedding to 4 extra context tokens) and
`ip_adapter.{k}.to_{k,v}_ip.weight` (key/value maps of those tokens for every cross-attention
layer, k = 1, 3, 5, ... in the UNet's processor order). diffusers converts both
(`_convert_ip_adapter_image_proj_to_diffusers`, `_convert_ip_adapter_attn_to_diffusers`) into an
`ImageProjection` (the UNet's `encoder_hid_proj`) and `IPAdapterAttnProcessor2_0` processors.

Here the converted layers are kept outside the UNet and put in only while a job with a scale
above 0 samples (`attached`): with scale 0, or after a job, the UNet is the one without an
adapter, exactly. Processors go on the spatial cross-attention layers, which the image UNet and
the motion UNet share, so both see them; per-layer scales follow `MODE_BLOCKS`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from .. import defaults
from ..errors import ConfigError
from .sources import KIND_WORDS, checkpoint_kind, read_checkpoint

KEY = "model.ip_adapter"
TOKENS = 4  # context tokens of the plain IP-Adapter's image projection

# Blocks that receive the image in each mode, by processor-name prefix. "style" and "style+layout"
# are InstantStyle's SD 1.5 settings (infer_style_sd15.py in github.com/InstantStyle/InstantStyle:
# target_blocks=["up_blocks.1"] for style only, ["down_blocks.2", "mid_block", "up_blocks.1"] for
# style+layout); in diffusers' set_ip_adapter_scale terms {"up": {"block_1": 1}} and that plus
# {"down": {"block_2": 1}, "mid": 1}. The other cross-attention layers get scale 0, which diffusers'
# processor skips. "all" is the plain IP-Adapter.
MODE_BLOCKS: dict[str, tuple[str, ...]] = {
    "style": ("up_blocks.1.",),
    "style+layout": ("down_blocks.2.", "mid_block.", "up_blocks.1."),
    "all": ("",),
}
assert tuple(MODE_BLOCKS) == defaults.IP_ADAPTER_MODES


def cross_attention_names(unet: torch.nn.Module) -> list[str]:
    """The UNet's spatial cross-attention processors (attn2 outside the motion modules), in processor order."""
    return [name for name in unet.attn_processors
            if name.endswith("attn2.processor") and "motion_modules" not in name]


def blocks_of(names: list[str], mode: str) -> list[str]:
    """The attention blocks (e.g. "up_blocks.1.attentions.0") among `names` that `mode` feeds."""
    prefixes = MODE_BLOCKS[mode]
    out = []
    for name in names:
        block = name.split(".transformer_blocks.")[0]
        if name.startswith(prefixes) and block not in out:
            out.append(block)
    return out


@dataclass
class IPAdapterLayers:
    """Converted IP-Adapter layers for one UNet, outside it until `attached`.

    projection: image embedding (B, N, embed_dim) -> context tokens (B, N, TOKENS, cross_dim).
    processors: processor name -> `IPAdapterAttnProcessor2_0` for each cross-attention layer.
    embed_dim: the image-embedding width the projection takes (the encoder's `projection_dim`).
    source: the report's entry (source, kind, sha256_16).
    """

    projection: torch.nn.Module
    processors: dict[str, torch.nn.Module]
    embed_dim: int
    source: dict[str, Any] = field(default_factory=dict)


def split_state_dict(raw: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]] | None:
    """{"image_proj": ..., "ip_adapter": ...} from a nested (.bin) or flat prefixed (.safetensors) dict."""
    if isinstance(raw.get("image_proj"), dict) and isinstance(raw.get("ip_adapter"), dict):
        return {"image_proj": raw["image_proj"], "ip_adapter": raw["ip_adapter"]}
    parts: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in raw.items():
        head, _, rest = key.partition(".")
        if head in parts and rest and isinstance(value, torch.Tensor):
            parts[head][rest] = value
    return parts if parts["image_proj"] and parts["ip_adapter"] else None


def read_ip_adapter_file(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """An IP-Adapter checkpoint file split into its two parts; ConfigError naming the file otherwise."""
    raw = read_checkpoint(path, KEY)
    parts = split_state_dict(raw) if isinstance(raw, dict) else None
    if parts is None:
        flat = list(raw) if isinstance(raw, dict) else []
        raise ConfigError(f"config key '{KEY}' is {path}, which seems to hold {KIND_WORDS[checkpoint_kind(flat)]}, "
                          f"not an IP-Adapter (no image_proj / ip_adapter weights). To fix: give the SD 1.5 "
                          f"IP-Adapter, e.g. {defaults.IP_ADAPTER_WEIGHT} of {defaults.DEFAULT_IP_ADAPTER}.")
    return parts


def _check_fits(parts: dict[str, dict[str, torch.Tensor]], unet2d: torch.nn.Module, names: list[str],
                where: str) -> None:
    """ConfigError unless the weights are a plain IP-Adapter made for this UNet (its text width and layers)."""
    proj = parts["image_proj"]
    if "proj.weight" not in proj:
        variant = ("IP-Adapter Plus" if "latents" in proj else "IP-Adapter Full Face" if "proj.3.weight" in proj
                   else "IP-Adapter Face ID" if "norm.weight" in proj or "perceiver_resampler.proj_in.weight" in proj
                   else "an unknown IP-Adapter variant")
        raise ConfigError(f"config key '{KEY}' is {where}, which holds {variant}; sagvideo feeds the plain "
                          f"IP-Adapter (one image embedding, {TOKENS} tokens). To fix: use "
                          f"{defaults.IP_ADAPTER_WEIGHT} of {defaults.DEFAULT_IP_ADAPTER}.")
    width = unet2d.config.cross_attention_dim
    made_for = proj["proj.weight"].shape[0] // TOKENS
    layers = sum(1 for k in parts["ip_adapter"] if k.endswith("to_k_ip.weight"))
    if made_for != width or layers != len(names):
        raise ConfigError(f"config key '{KEY}' is {where}, an IP-Adapter for another base model: it has "
                          f"{layers} cross-attention layers of text width {made_for}, but model.base has "
                          f"{len(names)} of width {width} (SD 1.5: 16 of 768; SDXL adapters have width 2048). "
                          f"To fix: use an SD 1.5 IP-Adapter, e.g. {defaults.IP_ADAPTER_WEIGHT} of "
                          f"{defaults.DEFAULT_IP_ADAPTER}.")


def convert(parts: dict[str, dict[str, torch.Tensor]], unet2d: torch.nn.Module, where: str,
            source: dict[str, Any]) -> IPAdapterLayers:
    """diffusers' conversion of original IP-Adapter weights into layers for `unet2d` (checked first)."""
    names = cross_attention_names(unet2d)
    _check_fits(parts, unet2d, names, where)
    from diffusers.models.attention_processor import AttnProcessor2_0

    # The converter re-creates every other layer's processor from its class with no arguments, which a
    # lever's processor (attention slicing) does not allow: convert against plain processors, then restore.
    saved = unet2d.attn_processors
    unet2d.set_attn_processor(AttnProcessor2_0())
    try:
        procs = unet2d._convert_ip_adapter_attn_to_diffusers([parts], low_cpu_mem_usage=False)
        projection = unet2d._convert_ip_adapter_image_proj_to_diffusers(parts["image_proj"], low_cpu_mem_usage=False)
    except (RuntimeError, KeyError, ValueError) as exc:  # shapes of one layer that do not fit
        raise ConfigError(f"config key '{KEY}' is {where}, whose layers do not fit model.base ({exc}). To fix: use "
                          f"an IP-Adapter made for this SD 1.5 base.") from exc
    finally:
        unet2d.set_attn_processor(saved)
    from diffusers.models.embeddings import MultiIPAdapterImageProjection

    layers = IPAdapterLayers(MultiIPAdapterImageProjection([projection]), {n: procs[n] for n in names},
                             int(parts["image_proj"]["proj.weight"].shape[1]), source)
    for module in (layers.projection, *layers.processors.values()):
        module.requires_grad_(False).eval()
    return layers


def random_ip_adapter_weights(unet2d: torch.nn.Module, embed_dim: int, seed: int = 0
                              ) -> dict[str, dict[str, torch.Tensor]]:
    """Random weights in the original IP-Adapter layout for `unet2d` (the tiny preset's adapter).

    Scaled so that the image tokens visibly change the tiny UNet's output.
    """
    g = torch.Generator().manual_seed(seed)
    width = unet2d.config.cross_attention_dim
    proj = {"proj.weight": torch.randn(TOKENS * width, embed_dim, generator=g) / embed_dim ** 0.5,
            "proj.bias": torch.zeros(TOKENS * width), "norm.weight": torch.ones(width), "norm.bias": torch.zeros(width)}
    attn = {}
    for i, name in enumerate(cross_attention_names(unet2d)):
        hidden = unet2d.get_submodule(name.removesuffix(".processor")).to_k.out_features
        for part in ("to_k_ip", "to_v_ip"):
            attn[f"{2 * i + 1}.{part}.weight"] = torch.randn(hidden, width, generator=g) / width ** 0.5
    return {"image_proj": proj, "ip_adapter": attn}


@contextmanager
def attached(unets: list[torch.nn.Module], layers: IPAdapterLayers, scale: float, mode: str) -> Iterator[list[str]]:
    """Put the adapter into `unets` (image and motion UNet, sharing their attention layers) for a block.

    Layers of the blocks `mode` feeds get `scale`, the others 0. Yields the blocks fed. On exit the
    original processors and `encoder_hid_proj` come back, so the UNets are as before, bit for bit.
    While attached, the cross-attention layers run unsliced even with attention slicing (81 context
    tokens: small; the self-attention layers, where slicing matters, keep theirs).
    """
    first = unets[0]
    param = next(first.parameters())
    for module in (layers.projection, *layers.processors.values()):
        torch.nn.Module.to(module, device=param.device, dtype=param.dtype)
    names = list(layers.processors)
    fed = set(blocks_of(names, mode))
    originals = {}
    for name, proc in layers.processors.items():
        attention = first.get_submodule(name.removesuffix(".processor"))
        originals[name] = attention.processor
        proc.scale = [scale if name.split(".transformer_blocks.")[0] in fed else 0.0]
        attention.set_processor(proc)
    saved = [(unet, unet.encoder_hid_proj, unet.config.encoder_hid_dim_type) for unet in unets]
    try:
        for unet in unets:
            unet.encoder_hid_proj = layers.projection
            unet.config.encoder_hid_dim_type = "ip_image_proj"
        yield blocks_of(names, mode)
    finally:
        for name, proc in originals.items():
            first.get_submodule(name.removesuffix(".processor")).set_processor(proc)
        for unet, proj, kind in saved:
            unet.encoder_hid_proj = proj
            unet.config.encoder_hid_dim_type = kind
