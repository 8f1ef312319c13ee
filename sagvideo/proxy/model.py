"""The proxy networks: a class-conditional noise predictor, a digit classifier, and the CFG wrapper.

All three work on (B, 1, 16, 16) images in [-1, 1]. Labels 0..9 are digits; `NULL_LABEL` (10)
is the "no class" label the noise predictor learns through label dropout, which is what makes
classifier-free guidance (Ho & Salimans 2022) possible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES
IMAGE_SHAPE = (1, 16, 16)


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of `ProxyUNet`: `channels` at 16x16 (twice that at 8x8)."""

    channels: int = 32
    emb_dim: int = 128
    groups: int = 8

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017) of timesteps (B,) -> (B, dim), float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding added as a per-channel shift in between."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = _norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """h: (B, c_in, H, W), emb: (B, emb_dim) -> (B, c_out, H, W)."""
        r = self.conv1(F.silu(self.norm1(h))) + self.emb(emb)[:, :, None, None]
        r = self.conv2(F.silu(self.norm2(r)))
        return self.skip(h) + r


class ProxyUNet(nn.Module):
    """eps_theta(x_t, t, y): a two-level U-Net (16x16 and 8x8) with time and class embeddings."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = config
        c, e, g = config.channels, config.emb_dim, config.groups
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.class_emb = nn.Embedding(NUM_CLASSES + 1, e)
        self.conv_in = nn.Conv2d(1, c, 3, padding=1)
        self.enc16 = ResBlock(c, c, e, g)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.enc8 = ResBlock(2 * c, 2 * c, e, g)
        self.mid = ResBlock(2 * c, 2 * c, e, g)
        self.dec8 = ResBlock(4 * c, 2 * c, e, g)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, c, 3, padding=1))
        self.dec16 = ResBlock(2 * c, c, e, g)
        self.out = nn.Sequential(_norm(c, g), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: Tensor, t: int | Tensor, labels: Tensor) -> Tensor:
        """x: (B, 1, 16, 16); t: int or (B,) in 0..999; labels: (B,) in 0..10 (10 = null) -> eps (B, 1, 16, 16)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"x must be (B, 1, 16, 16), got {tuple(x.shape)}.")
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(b) if t.dim() == 0 else t
        if t.shape != (b,) or labels.shape != (b,):
            raise ValueError(
                f"t and labels must be (B,) = ({b},), got t {tuple(t.shape)} and labels {tuple(labels.shape)}."
            )
        emb = self.time_mlp(timestep_embedding(t, self.config.emb_dim)) + self.class_emb(labels)
        h16 = self.enc16(self.conv_in(x), emb)
        h8 = self.enc8(self.down(h16), emb)
        h = self.mid(h8, emb)
        h = self.dec8(torch.cat([h, h8], dim=1), emb)
        h = self.dec16(torch.cat([self.up(h), h16], dim=1), emb)
        return self.out(h)


class DigitClassifier(nn.Module):
    """A small CNN on clean images: (B, 1, 16, 16) in [-1, 1] -> logits (B, 10)."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.channels = c = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 4 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * c * 16, NUM_CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ProxyEps:
    """`eps_fn(x, t)` with classifier-free guidance: `eps_u + w (eps_c - eps_u)`.

    Both branches run as one batch of 2B. `labels`: an int (same class for every image) or a
    (B,) tensor; `cfg_scale`: w (1 = conditional only). x: (B, 1, 16, 16); t: python int.
    """

    def __init__(self, model: ProxyUNet, labels: int | Tensor, cfg_scale: float):
        self.model = model
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if self.labels.dim() > 1 or bool(((self.labels < 0) | (self.labels >= NUM_CLASSES)).any()):
            raise ValueError(f"labels must be an int or a (B,) tensor of digits 0..9, got {labels!r}.")
        self.cfg_scale = float(cfg_scale)

    def _branches(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        labels = self.labels.to(x.device).expand(b) if self.labels.dim() == 0 else self.labels.to(x.device)
        if labels.shape != (b,):
            raise ValueError(f"ProxyEps was built for {labels.shape[0]} labels but x has batch size {b}.")
        both = torch.cat([labels, torch.full_like(labels, NULL_LABEL)])
        eps = self.model(torch.cat([x, x]), torch.full((2 * b,), int(t), device=x.device), both)
        eps_c, eps_u = eps.chunk(2)
        return eps_c, eps_u

    def __call__(self, x: Tensor, t: int) -> Tensor:
        """Guided noise prediction, (B, 1, 16, 16)."""
        return self.eps_with_reference(x, t)[0]

    def eps_with_reference(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """(guided eps, eps_c - eps_u), both (B, 1, 16, 16); the difference sets SAG's step size."""
        eps_c, eps_u = self._branches(x, t)
        diff = eps_c - eps_u
        return eps_u + self.cfg_scale * diff, diff
