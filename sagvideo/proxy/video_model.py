"""The video proxy's noise predictor: per-frame convolutions with a temporal-attention block, as
AnimateDiff adds motion modules to an image U-Net, conditioned frame by frame on a control map
(`video_data.structure_maps`: the clip blurred, as the real pipeline's ControlNet is on depth).

x (B, 1, F, 16, 16) in [-1, 1] and the control of the same shape -> eps of the same shape. The
control enters as a second input channel. Frames share the 2D layers (they see frames as a
batch); at 8x8 the temporal attention lets every position attend over the F frames (with a
sinusoidal frame-position embedding), which is how the frames agree on one digit's strokes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..guidance.frame_views import from_frames, to_frames
from .model import ResBlock, _norm, timestep_embedding


@dataclass(frozen=True)
class VideoConfig:
    channels: int = 16
    emb_dim: int = 64
    groups: int = 8
    heads: int = 4

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TemporalAttention(nn.Module):
    """Self-attention over frames at each spatial position: (B*F, C, h, w) -> same, residual."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)  # starts as the identity, like AnimateDiff's zero-initialised modules
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor, frames: int) -> Tensor:
        bf, c, hh, ww = h.shape
        b = bf // frames
        seq = self.norm(h).view(b, frames, c, hh * ww).permute(0, 3, 1, 2).reshape(b * hh * ww, frames, c)
        seq = seq + timestep_embedding(torch.arange(frames, device=h.device) * 50, c).to(seq.dtype)
        mixed, _ = self.attn(seq, seq, seq, need_weights=False)
        mixed = self.out(mixed).view(b, hh * ww, frames, c).permute(0, 2, 3, 1).reshape(bf, c, hh, ww)
        return h + mixed


class VideoDenoiser(nn.Module):
    """eps_theta(x_t, t, control): 16x16 -> 8x8 (temporal attention) -> 16x16, a time embedding."""

    def __init__(self, config: VideoConfig = VideoConfig()):
        super().__init__()
        self.config = config
        c, e, g = config.channels, config.emb_dim, config.groups
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.conv_in = nn.Conv2d(2, c, 3, padding=1)  # x_t and the control
        self.enc16 = ResBlock(c, c, e, g)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.enc8 = ResBlock(2 * c, 2 * c, e, g)
        self.motion = TemporalAttention(2 * c, config.heads, g)
        self.mid = ResBlock(2 * c, 2 * c, e, g)
        self.motion_mid = TemporalAttention(2 * c, config.heads, g)
        self.dec8 = ResBlock(4 * c, 2 * c, e, g)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, c, 3, padding=1))
        self.dec16 = ResBlock(2 * c, c, e, g)
        self.out = nn.Sequential(_norm(c, g), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: Tensor, t: int | Tensor, control: Tensor) -> Tensor:
        """x, control: (B, 1, F, 16, 16); t: int or (B,) -> eps (B, 1, F, 16, 16)."""
        if x.dim() != 5 or x.shape[1] != 1 or tuple(x.shape[3:]) != (16, 16):
            raise ValueError(f"x must be (B, 1, F, 16, 16), got {tuple(x.shape)}.")
        if control.shape != x.shape:
            raise ValueError(f"control must have x's shape {tuple(x.shape)}, got {tuple(control.shape)}.")
        b, frames = x.shape[0], x.shape[2]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(b) if t.dim() == 0 else t
        emb = self.time_mlp(timestep_embedding(t, self.config.emb_dim))
        emb = emb.repeat_interleave(frames, dim=0)  # (B*F, e): every frame of a clip gets its clip's embedding
        h16 = self.enc16(self.conv_in(to_frames(torch.cat([x, control.to(x.dtype)], dim=1))), emb)
        h8 = self.motion(self.enc8(self.down(h16), emb), frames)
        h = self.motion_mid(self.mid(h8, emb), frames)
        h = self.dec8(torch.cat([h, h8], dim=1), emb)
        h = self.dec16(torch.cat([self.up(h), h16], dim=1), emb)
        return from_frames(self.out(h), x)
