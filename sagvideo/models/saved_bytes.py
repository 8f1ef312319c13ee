"""How many bytes a guidance gradient would save for backward without checkpointing: the estimate
behind `guidance.gradient_checkpointing: auto` and `guidance.decoder_checkpointing: auto`.

Checkpointing buys memory with time (each checkpointed block runs its forward twice, plus
autograd's bookkeeping per block). Where the activations are a few megabytes, as on the tiny
preset, that is time spent for nothing; at SD 1.5 sizes it is what lets the exact gradient fit a
GPU. `auto` checkpoints when the estimate below exceeds `AUTO_THRESHOLD_BYTES`.

The estimates scale a count measured at SD 1.5 sizes (`sagvideo bench memory --presets sd15`,
fp32, no checkpointing) by a width of the network read from its config, linear in frames, latent
cells and bytes per element (the saved bytes are linear in each: README, "Models and memory"):

* UNet + ControlNet, per CFG branch, frame and latent cell: `UNET_BYTES_PER_WIDTH` x the width
  sum_l C_l x layers_per_block / 4^l over the down levels l (block_out_channels C_l; level l has
  4^-l of the cells). SD 1.5 (width 1160) saves 5635 MB for 2 branches x 8 frames x 448 cells;
  the tiny preset (width 48) is estimated at 58 MB at its defaults (8 frames at 112x64 px, CFG)
  where 68 MB is counted.
* VAE decoder, per decoded frame and latent cell: `DECODER_BYTES_PER_WIDTH` x the width
  sum_i C_i x (layers_per_block + 1) x 4^i over the decoder's up blocks i (reversed
  block_out_channels; block i runs at 4^i times the latent cells). SD 1.5's (width 44544) saves
  622 MB for one frame of 448 cells; the tiny one (width 1696) is estimated at 5.9 MB where
  6.4 MB is counted (one 112x64 px frame).

A UNet without motion modules or ControlNet saves less than estimated (the estimate errs toward
checkpointing).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

MB = 2**20
AUTO_THRESHOLD_BYTES = 256 * MB  # `auto` checkpoints above this estimate
UNET_BYTES_PER_WIDTH = 710.6  # 5635 MB / (2 x 8 x 448) / 1160, fp32
DECODER_BYTES_PER_WIDTH = 32.68  # 622 MB / 448 / 44544, fp32


def _get(config: Mapping[str, Any] | Any, key: str) -> Any:
    return config[key] if isinstance(config, Mapping) else getattr(config, key)


def unet_width(config: Mapping[str, Any] | Any) -> float:
    """sum_l C_l x layers_per_block / 4^l of a UNet's (or ControlNet's) config."""
    channels = _get(config, "block_out_channels")
    layers = _get(config, "layers_per_block")
    layers = layers if isinstance(layers, (list, tuple)) else [layers] * len(channels)  # per level, or one for all
    return float(sum(c * n / 4**level for level, (c, n) in enumerate(zip(channels, layers))))


def decoder_width(config: Mapping[str, Any] | Any) -> float:
    """sum_i C_i x (layers_per_block + 1) x 4^i over an AutoencoderKL config's decoder up blocks."""
    layers = _get(config, "layers_per_block") + 1  # a decoder up block has one resnet more
    channels = list(reversed(_get(config, "block_out_channels")))
    return float(sum(c * layers * 4**i for i, c in enumerate(channels)))


def _cells(frames: int, height: int, width: int, dtype: torch.dtype) -> float:
    return frames * height * width * torch.finfo(dtype).bits / 32


def unet_vjp_bytes(unet_config: Any, branches: int, frames: int, height: int, width: int,
                   dtype: torch.dtype) -> int:
    """Estimated bytes one UNet + ControlNet VJP saves unchecked: `branches` CFG branches of
    `frames` latent frames of height x width cells, in `dtype`."""
    return int(UNET_BYTES_PER_WIDTH * unet_width(unet_config) * branches * _cells(frames, height, width, dtype))


def decoder_bytes(vae_config: Any, frames: int, height: int, width: int, dtype: torch.dtype) -> int:
    """Estimated bytes the VAE decoder saves unchecked when decoding `frames` latents of
    height x width cells with a graph, in `dtype`."""
    return int(DECODER_BYTES_PER_WIDTH * decoder_width(vae_config) * _cells(frames, height, width, dtype))


def wants_checkpointing(setting: bool | str, estimated_bytes: int) -> bool:
    """Resolve a checkpointing key (True, False or "auto") against the estimate (module doc)."""
    if setting != "auto":
        return bool(setting)
    return estimated_bytes > AUTO_THRESHOLD_BYTES
