"""An optional small decoder for the style loss (`model.loss_decoder`): an approximation lever.

The guidance loss decodes the clean estimate and back-propagates through the decoder; with SD
1.5's VAE decoder that backward is the largest part of the loss's memory (README, "Models and
memory"). A tiny autoencoder's decoder (diffusers' `AutoencoderTiny`, e.g. TAESD, trained to
decode SD latents) costs a fraction of it, but the frames the loss sees are its reconstruction,
not the VAE's: the gradient is that of a different loss. The report says so whenever it is on.
The final frames are always decoded by the VAE.

`model.loss_decoder`: "" (off, the VAE: exact), "tiny" (random weights built from a config at
the tiny preset's scale, for tests), a hub id or a diffusers folder of an `AutoencoderTiny`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ConfigError
from .hashing import RANDOM_WEIGHTS
from .hub import load_pretrained
from .sources import FILE, classify, describe

KEY = "model.loss_decoder"
NOTE = ("model.loss_decoder: the style loss sees the frames of a small decoder, not the VAE's, so its gradient "
        "is that of an approximate loss (the output frames are decoded by the VAE)")


def _random_tiny(scale_factor: int, latent_channels: int, seed: int = 0) -> torch.nn.Module:
    """A random-weight `AutoencoderTiny` that upsamples by `scale_factor` (a power of 2)."""
    from diffusers import AutoencoderTiny

    blocks = int(math.log2(scale_factor)) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderTiny(encoder_block_out_channels=(16,) * blocks, decoder_block_out_channels=(16,) * blocks,
                               num_encoder_blocks=(1,) * blocks, num_decoder_blocks=(1,) * blocks,
                               latent_channels=latent_channels)


def load_loss_decoder(name: str, components: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(an `AutoencoderTiny` on the components' device and dtype, frozen; its report entry),
    checked to decode the VAE's latents (channels and scale factor)."""
    from diffusers import AutoencoderTiny

    c = components
    if name == "tiny":
        model, entry = _random_tiny(c.vae_scale_factor, c.vae.config.latent_channels), {
            "source": "tiny (random weights)", "kind": "random", "sha256_16": RANDOM_WEIGHTS}
    else:
        ref = classify(name, KEY)
        if ref.kind == FILE:
            raise ConfigError(f"config key '{KEY}' is a file ({name}); a loss decoder is loaded from a hub id or a "
                              f"diffusers folder of an AutoencoderTiny (e.g. madebyollin/taesd). To fix: give one.")
        model = load_pretrained(AutoencoderTiny.from_pretrained, name, what="loss decoder (AutoencoderTiny)",
                                config_key=KEY)
        entry = describe(ref)
    channels = model.config.latent_channels
    factor = 2 ** (len(model.config.decoder_block_out_channels) - 1)
    if channels != c.vae.config.latent_channels or factor != c.vae_scale_factor:
        raise ConfigError(f"config key '{KEY}' ({name}) decodes {channels}-channel latents {factor}x up, but the "
                          f"VAE's are {c.vae.config.latent_channels}-channel, {c.vae_scale_factor}x. To fix: use "
                          f"the tiny autoencoder trained for this VAE (SD 1.5: madebyollin/taesd), or '' for the VAE.")
    model = model.to(c.device, c.dtype).requires_grad_(False).eval()
    return model, dict(entry, note=NOTE)


def tiny_decode(decoder: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Scaled SD latents (N, C, h, w) -> frames (N, 3, H, W) in about [-1, 1], differentiable.

    An `AutoencoderTiny` for SD takes the latents as the UNet sees them (scaling factor 1)."""
    dtype = next(decoder.parameters()).dtype
    return decoder.decode(latents.to(dtype) / decoder.config.scaling_factor).sample
