"""Memory levers that change networks: attention slicing, VAE slicing and tiling, activation checkpointing.

The `model.*` switches (attention_slicing, vae_slicing, vae_tiling) are set once by the
`Runtime` when it loads the networks (`set_memory_levers`): they are model settings, so every
job of a Runtime shares them (the batch makes a new Runtime when any `model.*` key changes),
and they must hold for the VAE encode and final decode too, which run outside the sampling
block. Activation checkpointing (`guidance.gradient_checkpointing` for every block of the UNet,
motion modules included, and the ControlNet; `guidance.decoder_checkpointing` for the VAE
decoder in the loss; see `models.checkpointing`) is a `guidance.*` setting of one job:
`applied_levers` switches it (and, when asked, the other levers) for a block and restores each
module's previous state on exit, whatever happened inside, since a `Runtime` is shared by every
job of a process.

Slicing changes memory, not results (to float round-off); VAE tiling encodes/decodes
overlapping tiles of frames larger than the VAE's `sample_size` and blends the seams, so on
such frames the pixels differ slightly.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch

from ..models.checkpointing import checkpointed
from ..models.components import Components


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
def applied_levers(components: Components, *, gradient_checkpointing: bool, decoder_checkpointing: bool = False,
                   attention_slicing: bool | None = None, vae_slicing: bool | None = None,
                   vae_tiling: bool | None = None) -> Iterator[None]:
    """Inside the block, every block of the UNet (motion modules included) and the ControlNet, and
    of the VAE decoder, checkpoints its activations when a graph is built, when asked; the other
    levers are as given (None: left as they are). After it, every module is as it was."""
    c = components
    layers = attention_layers(components)
    processors = [layer.processor for layer in layers]
    vae = components.vae
    vae_state = (vae.use_slicing, vae.use_tiling)
    stack = ExitStack()
    try:
        stack.enter_context(checkpointed([c.unet, c.controlnet], gradient_checkpointing))
        stack.enter_context(checkpointed([getattr(vae, "decoder", None)], decoder_checkpointing))
        if attention_slicing is not None:
            set_attention_slicing(components, attention_slicing)
        vae.use_slicing = vae_state[0] if vae_slicing is None else vae_slicing
        vae.use_tiling = vae_state[1] if vae_tiling is None else vae_tiling
        yield
    finally:
        stack.close()
        for layer, processor in zip(layers, processors):
            layer.set_processor(processor)
        vae.use_slicing, vae.use_tiling = vae_state
