"""Video latents (B, C, F, h, w) <-> per-frame batches (B*F, C, h, w), batch-major.

Per-frame networks (VAE, ControlNet, the image UNet, CLIP) see frames as a batch; the motion
UNet and the guidance see whole clips. Image latents (B, C, h, w) pass through unchanged.
"""

from __future__ import annotations

from torch import Tensor


def to_frames(latents: Tensor) -> Tensor:
    """(B, C, F, h, w) -> (B*F, C, h, w), ordered b0f0, b0f1, ...; 4-D input is returned as is."""
    if latents.dim() == 5:
        return latents.permute(0, 2, 1, 3, 4).flatten(0, 1)
    return latents


def from_frames(frames: Tensor, like: Tensor) -> Tensor:
    """Inverse of `to_frames`: (B*F, C', h', w') -> (B, C', F, h', w') with B, F taken from `like`."""
    if like.dim() == 5:
        b, _, f = like.shape[:3]
        return frames.reshape(b, f, *frames.shape[1:]).permute(0, 2, 1, 3, 4)
    return frames
