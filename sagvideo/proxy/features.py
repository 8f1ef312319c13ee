"""The proxy style task: a Gram loss on the features of a fixed, seeded, random shallow conv net.

Random shallow conv features with a ReLU already separate textures well (Ustyuzhaninov et al.
2017, "What does it take to generate natural textures?"), and a fixed seed makes the loss the
same function in every run, with no weights to download.

The default style target (`style_texture()`) is a synthetic texture, not a digit: diagonal
stripes with a 4-pixel period. Digit samples have blob-and-stroke statistics far from it, so
guidance toward it has visible work to do, while the digit's class is what the CFG condition
keeps.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FEATURE_SEED = 0
FEATURE_CHANNELS = (16, 32, 32)


def style_texture(kind: str = "stripes", size: int = 16, period: int = 4) -> Tensor:
    """A synthetic style target in {-1, 1}: (1, 1, size, size).

    "stripes": diagonal stripes, `period` pixels per on/off cycle; "checkerboard": squares of
    `period // 2` pixels.
    """
    if period < 2 or period % 2:
        raise ValueError(f"period must be an even number >= 2, got {period}.")
    i = torch.arange(size).view(-1, 1)
    j = torch.arange(size).view(1, -1)
    half = period // 2
    if kind == "stripes":
        on = ((i + j) // half) % 2 == 0
    elif kind == "checkerboard":
        on = (i // half + j // half) % 2 == 0
    else:
        raise ValueError(f"kind must be 'stripes' or 'checkerboard', got {kind!r}.")
    return (on.to(torch.float32) * 2.0 - 1.0).view(1, 1, size, size)


class RandomConvFeatures(nn.Module):
    """3x3 conv + ReLU layers with fixed He-normal random weights, no bias: (B, 1, H, W) -> (B, C, H, W).

    The weights come from a private generator seeded with `seed`, so the global RNG is untouched;
    they are buffers, not parameters, and follow the input's dtype (float64 tests work).
    """

    def __init__(self, channels: Sequence[int] = FEATURE_CHANNELS, seed: int = FEATURE_SEED):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        c_in = 1
        for k, c_out in enumerate(channels):
            std = (2.0 / (c_in * 9)) ** 0.5  # He init keeps the feature scale steady through ReLUs
            self.register_buffer(f"w{k}", torch.randn((c_out, c_in, 3, 3), generator=gen) * std)
            c_in = c_out
        self.depth = len(channels)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for k in range(self.depth):
            h = F.relu(F.conv2d(h, getattr(self, f"w{k}").to(h.dtype), padding=1))
        return h


class RandomGramLoss:
    """E(x) = mean_b ||G(x_b) - G_target||_F with `G = F F^T / (H W)` of the random features.

    target_images: (K, 1, H, W) in [-1, 1] (e.g. `style_texture()`); G_target is the mean of
    their per-image Gram matrices, so a single target image gives exactly zero loss on itself.
    Called on x (B, 1, H, W) in [-1, 1] -> scalar; differentiable in x.
    """

    def __init__(self, target_images: Tensor | None = None, channels: Sequence[int] = FEATURE_CHANNELS,
                 seed: int = FEATURE_SEED):
        target = style_texture() if target_images is None else target_images
        self._check(target, "target_images")
        self.features = RandomConvFeatures(channels, seed)
        with torch.no_grad():
            self.target_gram = self.gram(target.to(torch.float32)).mean(dim=0)  # (C, C), fixed once

    @staticmethod
    def _check(x: Tensor, what: str) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 1:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{what} must be a (B, 1, H, W) tensor in [-1, 1], got {got}.")

    def gram(self, x: Tensor) -> Tensor:
        """Per-image Gram matrices of the features: (B, 1, H, W) -> (B, C, C)."""
        f = self.features(x).flatten(2)
        return f @ f.transpose(1, 2) / f.shape[2]

    def per_image(self, x: Tensor) -> Tensor:
        """||G(x_b) - G_target||_F for each image: (B, 1, H, W) -> (B,)."""
        self._check(x, "x")
        diff = self.gram(x) - self.target_gram.to(x.device, x.dtype)
        return diff.flatten(1).norm(dim=1)

    def __call__(self, x: Tensor) -> Tensor:
        """Mean over the batch: (B, 1, H, W) -> scalar."""
        return self.per_image(x).mean()
