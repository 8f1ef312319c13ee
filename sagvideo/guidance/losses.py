"""The frame-averaged Gram style loss on CLIP features, and its latent-space wrapper.

`GramStyleLoss` takes decoded frames in [0, 1] and any `transformers` CLIPVisionModel:
resize to the model's input size (bicubic, antialiased), normalise with the CLIP mean/std
(not the [-1, 1] normalisation the authors' code applies to [0, 1] images), take the tokens of
`hidden_states[layer]` without CLS, `G = F^T F`, and average `||G_f - G_ref||_F` over frames.
Always fp32. `LatentStyleLoss` puts a decoder in front and computes value and gradient chunk
by chunk, so only one chunk's decoder + CLIP graph is alive at a time.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .layout import from_frames, to_frames

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def gram(features: Tensor) -> Tensor:
    """Gram matrices `F^T F` of token features (frames, tokens, dim) -> (frames, dim, dim)."""
    return features.transpose(1, 2) @ features


class GramStyleLoss:
    """E(frames) = mean_f ||G(frame_f) - G(style)||_F; frames (F, 3, H, W) in [0, 1] -> scalar."""

    def __init__(self, clip_vision: Any, style_image: Tensor, layer: int = 3):
        """clip_vision: a CLIPVisionModel; style_image: (3, H, W) or (1, 3, H, W) in [0, 1]."""
        num_layers = clip_vision.config.num_hidden_layers
        if not 1 <= layer <= num_layers:
            raise ValueError(f"layer must be between 1 and {num_layers} for this CLIP model, got {layer}.")
        self.model = clip_vision
        self.layer = layer
        self.size = int(clip_vision.config.image_size)
        self.device = next(clip_vision.parameters()).device
        style = style_image if style_image.dim() == 4 else style_image.unsqueeze(0)
        if style.shape[:2] != (1, 3):
            raise ValueError(f"style_image must be (3, H, W) RGB in [0, 1], got {tuple(style_image.shape)}.")
        with torch.no_grad():
            self.ref_gram = gram(self.features(style))[0]  # computed once per style image

    def features(self, frames: Tensor) -> Tensor:
        """CLIP tokens after block `layer`, CLS dropped: (F, 3, H, W) in [0, 1] -> (F, N, D) fp32."""
        x = frames.to(self.device, torch.float32)
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        with torch.autocast(x.device.type, enabled=False):
            out = self.model(pixel_values=(x - mean) / std, output_hidden_states=True)
        return out.hidden_states[self.layer][:, 1:].float()

    def per_frame(self, frames: Tensor) -> Tensor:
        """||G_f - G_ref||_F for each frame: (F, 3, H, W) -> (F,)."""
        diff = gram(self.features(frames)) - self.ref_gram
        return diff.flatten(1).norm(dim=1)

    def __call__(self, frames: Tensor) -> Tensor:
        return self.per_frame(frames).mean()


class LatentStyleLoss:
    """E(x0_hat) on latents: decode frames in chunks, map to [0, 1] without clamping, frame loss.

    decode: latents (N, C, h, w) -> images (N, 3, H, W) in about [-1, 1].
    frame_loss: has `per_frame(images (N, 3, H, W) in [0, 1]) -> (N,)`.
    Latents are (B, C, F, h, w) (video) or (B, C, h, w) (image); the loss averages all B*F frames.
    """

    def __init__(self, decode: Callable[[Tensor], Tensor], frame_loss: Any, chunk: int = 1):
        self.decode = decode
        self.frame_loss = frame_loss
        self.chunk = max(1, int(chunk))

    def _chunk_losses(self, frames: Tensor) -> Tensor:
        images = (self.decode(frames) + 1.0) / 2.0  # no clamp: a clamp zeroes saturated pixels' gradient
        return self.frame_loss.per_frame(images)

    def __call__(self, latents: Tensor) -> Tensor:
        frames = to_frames(latents)
        losses = [self._chunk_losses(frames[i : i + self.chunk]) for i in range(0, len(frames), self.chunk)]
        return torch.cat(losses).mean()

    def value_and_grad(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, dE/dlatents) with one chunk's graph alive at a time."""
        frames = to_frames(latents.detach())
        total = len(frames)
        grads, value = [], torch.zeros((), dtype=torch.float32, device=latents.device)
        for i in range(0, total, self.chunk):
            leaf = frames[i : i + self.chunk].detach().requires_grad_(True)
            with torch.enable_grad():
                part = self._chunk_losses(leaf).sum() / total
                (g,) = torch.autograd.grad(part, leaf)
            grads.append(g)
            value = value + part.detach().float()
        return value, from_frames(torch.cat(grads), latents).to(latents.dtype)
