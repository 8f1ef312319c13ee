"""Memory levers that change networks: attention slicing, VAE slicing and tiling, gradient checkpointing.

The `model.*` switches (attention_slicing, vae_slicing, vae_tiling) are set once by the
`Runtime` when it loads the networks (`set_memory_levers`): they are model settings, so every
job of a Runtime shares them (the batch makes a new Runtime when any `model.*` key changes),
and they must hold for the VAE encode and final decode too, which run outside the sampling
block. Gradient checkpointing is a `guidance.*` setting of one job: `applied_levers` switches
it (and, when asked, the other levers) for a block and restores each module's previous state
on exit, whatever happened inside, since a `Runtime` is shared by every job of a process.

Slicing changes memory, not results (to float round-off); VAE tiling encodes/decodes
overlapping tiles of frames larger than the VAE's `sample_size` and blends the seams, so on
such frames the pixels differ slightly.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .models.components import Components


def _checkpointing_modules(components: Components) -> list[torch.nn.Module]:
    return [m for m in (components.unet, components.controlnet) if getattr(m, "_supports_gradient_checkpointing", False)]


def _set_checkpointing(module: torch.nn.Module, enabled: bool) -> None:
    if enabled:
        module.enable_gradient_checkpointing()
    else:
        module.disable_gradient_checkpointing()


def attention_layers(components: Components) -> list[torch.nn.Module]:
    """The diffusers `Attention` layers of the UNet(s) and ControlNet (each once)."""
    from diffusers.models.attention_processor import Attention

    seen: dict[int, torch.nn.Module] = {}
    for net in (components.unet, components.controlnet):
        for module in net.modules():
            if isinstance(module, Attention):
                seen.setdefault(id(module), module)
    return list(seen.values())


def set_attention_slicing(components: Components, enabled: bool) -> None:
    """Attention in two slices of heads ("auto", as diffusers' `set_attention_slice`), or the default kernel."""
    for layer in attention_layers(components):
        layer.set_attention_slice(max(1, layer.sliceable_head_dim // 2) if enabled else None)


def set_memory_levers(components: Components, *, attention_slicing: bool, vae_slicing: bool,
                      vae_tiling: bool) -> list[str]:
    """Switch the levers on the networks of `components` (in place); return the names of those on.

    vae_slicing: `vae.encode`/`vae.decode` run one frame at a time (what `denoiser.encode_frames`
    and `decode_frames` call, so both the loss's decodes and the final decode are sliced).
    vae_tiling: frames larger than the VAE's `sample_size` go through in overlapping tiles.
    """
    set_attention_slicing(components, attention_slicing)
    vae = components.vae
    if vae_slicing:
        vae.enable_slicing()
    else:
        vae.disable_slicing()
    if vae_tiling:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    on = {"attention_slicing": attention_slicing, "vae_slicing": vae_slicing, "vae_tiling": vae_tiling}
    return [name for name, value in on.items() if value]


@contextmanager
def applied_levers(components: Components, *, gradient_checkpointing: bool, attention_slicing: bool | None = None,
                   vae_slicing: bool | None = None, vae_tiling: bool | None = None) -> Iterator[None]:
    """Inside the block, UNet and ControlNet checkpoint activations during VJPs when asked, and the
    other levers are as given (None: left as they are); after it, every module is as it was."""
    modules = _checkpointing_modules(components)
    before = [bool(getattr(m, "is_gradient_checkpointing", False)) for m in modules]
    layers = attention_layers(components)
    processors = [layer.processor for layer in layers]
    vae = components.vae
    vae_state = (vae.use_slicing, vae.use_tiling)
    try:
        for module in modules:
            _set_checkpointing(module, gradient_checkpointing)
        if attention_slicing is not None:
            set_attention_slicing(components, attention_slicing)
        vae.use_slicing = vae_state[0] if vae_slicing is None else vae_slicing
        vae.use_tiling = vae_state[1] if vae_tiling is None else vae_tiling
        yield
    finally:
        for module, state in zip(modules, before):
            _set_checkpointing(module, state)
        for layer, processor in zip(layers, processors):
            layer.set_processor(processor)
        vae.use_slicing, vae.use_tiling = vae_state
