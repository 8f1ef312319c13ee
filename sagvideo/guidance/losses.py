"""The frame-averaged Gram style loss on CLIP features, and its latent-space wrapper.

`GramStyleLoss` takes decoded frames in [0, 1] and any `transformers` CLIPVisionModel:
resize to the model's input size (bicubic, antialiased), normalise with the CLIP mean/std
(not the [-1, 1] normalisation the authors' code applies to [0, 1] images), take the tokens of
`hidden_states[layer]` without CLS, `G = F^T F`, and average `||G_f - G_ref||_F` over frames.
Always fp32. Only the blocks up to `layer` run (3 of CLIP ViT-B/32's 12 by default): the
later ones cannot change the features the loss reads. `LatentStyleLoss` puts a decoder in front and computes value and gradient chunk
by chunk, so only one chunk's decoder + CLIP graph is alive at a time.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .frame_views import from_frames, to_frames

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def gram(features: Tensor) -> Tensor:
    """Gram matrices `F^T F` of token features (frames, tokens, dim) -> (frames, dim, dim)."""
    return features.transpose(1, 2) @ features


def _run_block(block: torch.nn.Module, hidden: Tensor) -> Tensor:
    """One CLIP encoder block without attention masks, across transformers versions.

    Older versions take `(hidden, attention_mask, causal_attention_mask)` and return a tuple;
    newer ones take `(hidden, attention_mask)` and return the tensor.
    """
    if "causal_attention_mask" in inspect.signature(block.forward).parameters:
        out = block(hidden, None, None)
    else:
        out = block(hidden, None)
    return out[0] if isinstance(out, tuple) else out


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
        # built once: the normalisation constants of every call
        self.mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        style = style_image if style_image.dim() == 4 else style_image.unsqueeze(0)
        if style.shape[:2] != (1, 3):
            raise ValueError(f"style_image must be (3, H, W) RGB in [0, 1], got {tuple(style_image.shape)}.")
        with torch.no_grad():
            self.ref_gram = gram(self.features(style))[0]  # computed once per style image

    def features(self, frames: Tensor) -> Tensor:
        """CLIP tokens after block `layer`, CLS dropped: (F, 3, H, W) in [0, 1] -> (F, N, D) fp32.

        Equal to `model(..., output_hidden_states=True).hidden_states[layer][:, 1:]`, computed
        with the first `layer` blocks only.
        """
        x = frames.to(self.device, torch.float32)
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True)
        vision = getattr(self.model, "vision_model", self.model)  # transformers < 5 nests the tower
        with torch.autocast(x.device.type, enabled=False):
            hidden = vision.pre_layrnorm(vision.embeddings((x - self.mean) / self.std))
            for block in vision.encoder.layers[: self.layer]:
                hidden = _run_block(block, hidden)
        return hidden[:, 1:].float()

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
    `frame_losses` holds the per-frame losses (B*F,) of the latest `value_and_grad` call, for reports.
    """

    def __init__(self, decode: Callable[[Tensor], Tensor], frame_loss: Any, chunk: int = 1):
        self.decode = decode
        self.frame_loss = frame_loss
        self.chunk = max(1, int(chunk))
        self.frame_losses: Tensor | None = None

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
        grads, losses = [], []
        for i in range(0, total, self.chunk):
            leaf = frames[i : i + self.chunk].detach().requires_grad_(True)
            with torch.enable_grad():
                chunk_losses = self._chunk_losses(leaf)
                (g,) = torch.autograd.grad(chunk_losses.sum() / total, leaf)
            grads.append(g)
            losses.append(chunk_losses.detach().float())
        self.frame_losses = torch.cat(losses)
        return self.frame_losses.mean(), from_frames(torch.cat(grads), latents).to(latents.dtype)
