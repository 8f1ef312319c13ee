"""Adapts the diffusers networks into the guidance core's `eps(x, t)`, window by window.

One call evaluates ControlNet-depth on the latents, then the (motion) UNet over each window's
frames jointly, for the unconditional and conditional prompts in one batch, and combines them
with classifier-free guidance: `eps = eps_u + w (eps_c - eps_u)`. The ControlNet's embedding of
the depth maps does not depend on the latents, so it is computed once per job (`ControlCache`)
rather than in every call for both CFG branches.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ..guidance.frame_views import from_frames, to_frames
from ..guidance.windows import Span
from ..models.components import Components

# Above this many bytes of embedded depth the embedding is recomputed per call instead of kept.
CONTROL_CACHE_BYTES = 2 * 2**30


class ControlCache:
    """The depth control of a job: images (F, 3, H, W) in [0, 1] and, when it fits, their embedding.

    `frames(spans)` gives what the ControlNet needs for those windows' frames: the embedding
    (N, C0, h, w) when cached (`embedded` True), else the images.
    """

    def __init__(self, components: Components, control: Tensor):
        c = components
        self.images = control.to(c.device, c.dtype)
        self.embedded = False
        net = c.controlnet
        rgb = net.config.controlnet_conditioning_channel_order == "rgb"
        h, w = control.shape[-2] // c.vae_scale_factor, control.shape[-1] // c.vae_scale_factor
        width = net.config.block_out_channels[0]
        nbytes = control.shape[0] * width * h * w * self.images.element_size()
        if rgb and nbytes <= CONTROL_CACHE_BYTES:
            with torch.no_grad():  # a constant of the job: never part of a graph
                self.images = torch.cat([net.controlnet_cond_embedding(self.images[i:i + 16])
                                         for i in range(0, len(self.images), 16)])
            self.embedded = True

    def frames(self, spans: Sequence[Span]) -> Tensor:
        return torch.cat([self.images[start:stop] for start, stop in spans])


@contextmanager
def _embedding_bypassed(controlnet: torch.nn.Module, bypass: bool) -> Iterator[None]:
    """Let a ControlNet call take an already embedded control (its embedding replaced by identity)."""
    if not bypass:
        yield
        return
    original = controlnet.controlnet_cond_embedding
    controlnet.controlnet_cond_embedding = torch.nn.Identity()
    try:
        yield
    finally:
        controlnet.controlnet_cond_embedding = original


class DepthControlledEps:
    """eps(x, t) for latents x of shape (1, C, F, h, w); F = 1 is the image case.

    text: (2, L, D) embeddings, unconditional first. control: a `ControlCache` or None (no
    ControlNet). image_embeds: (2, 1, E) IP-Adapter image embeddings, unconditional (zeros) first,
    or None (no image prompt; the adapter must then not be attached). `predict` also takes several
    windows stacked along the batch (see `guidance.windows.WindowedEps`). `on_call(windows,
    with_graph)` is told of every call.
    """

    def __init__(
        self,
        components: Components,
        text: Tensor,
        control: ControlCache | None,
        *,
        cfg_scale: float = 7.5,
        controlnet_scale: float = 1.0,
        branches: tuple[int, ...] = (0, 1),
        on_call: Callable[[int, bool], None] | None = None,
        image_embeds: Tensor | None = None,
    ):
        self.c = components
        self.image_embeds = image_embeds
        self.text = text
        self.control = control
        self.cfg_scale = cfg_scale
        self.controlnet_scale = controlnet_scale
        self.branches = branches  # (0, 1): CFG; (1,): the conditional branch only
        self.on_call = on_call

    def single_branch(self, branch: int, *, report_calls: bool = True) -> "DepthControlledEps":
        """The same model on one CFG branch (0 unconditional, 1 conditional): half the batch."""
        return DepthControlledEps(self.c, self.text, self.control, cfg_scale=1.0, controlnet_scale=self.controlnet_scale,
                                  branches=(branch,), on_call=self.on_call if report_calls else None,
                                  image_embeds=self.image_embeds)

    def conditional_only(self) -> "DepthControlledEps":
        """The conditional prompt alone: for guidance gradients through that branch (`cond_only`)."""
        return self.single_branch(1)

    def _residuals(self, flat: Tensor, t: int, text: Tensor, spans: Sequence[Span]) -> dict:
        if self.control is None:
            return {}
        control = self.control.frames(spans).repeat(len(self.branches), 1, 1, 1)
        with _embedding_bypassed(self.c.controlnet, self.control.embedded):
            down, mid = self.c.controlnet(flat, t, encoder_hidden_states=text, controlnet_cond=control,
                                          conditioning_scale=self.controlnet_scale, return_dict=False)
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

    def _predict(self, x: Tensor, t: int, spans: Sequence[Span]) -> Tensor:
        """Noise prediction per branch: K windows (K, C, L, h, w) -> (branches * K, C, L, h, w)."""
        c, frames = self.c, x.shape[2]
        sample = torch.cat([x.to(c.dtype)] * len(self.branches))  # branch-major: u_w0 .. u_wK, c_w0 ..
        whole_clip = c.unet_motion is not None and frames > 1
        # per-frame view (branches * K * L, C, h, w); only if something reads it
        flat = to_frames(sample) if (self.control is not None or not whole_clip) else None
        per_frame_text = self.text[list(self.branches)].to(c.dtype).repeat_interleave(x.shape[0] * frames, dim=0)
        residuals = self._residuals(flat, t, per_frame_text, spans)
        if self.on_call is not None:
            self.on_call(len(spans), torch.is_grad_enabled() and x.requires_grad)
        if whole_clip:
            image = self._image_condition(x.shape[0])  # the motion UNet repeats it per frame
            return c.unet_motion(sample, t, encoder_hidden_states=per_frame_text, **residuals, **image).sample
        image = self._image_condition(x.shape[0] * frames)
        out = c.unet2d(flat, t, encoder_hidden_states=per_frame_text, **residuals, **image).sample
        return from_frames(out, sample)

    def _image_condition(self, per_branch: int) -> dict:
        """The UNet's `added_cond_kwargs` with the image prompt, (branches * per_branch, 1, E) branch-major."""
        if self.image_embeds is None:
            return {}
        embeds = self.image_embeds[list(self.branches)].to(self.c.dtype).repeat_interleave(per_branch, dim=0)
        return {"added_cond_kwargs": {"image_embeds": [embeds]}}

    def predict(self, x: Tensor, t: int, spans: Sequence[Span]) -> tuple[Tensor, Tensor]:
        """(CFG eps, eps_c - eps_u) for K windows x (K, C, L, h, w) covering the clip frames `spans`."""
        pred = self._predict(x, t, spans).to(x.dtype)
        if len(self.branches) == 1:
            return pred, pred
        k = x.shape[0]
        uncond, cond = pred[:k], pred[k:]
        diff = cond - uncond
        return uncond + self.cfg_scale * diff, diff

    def eps_with_reference(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """(CFG eps, eps_c - eps_u) for the whole clip (1, C, F, h, w) as one window."""
        return self.predict(x, t, [(0, x.shape[2])])

    def __call__(self, x: Tensor, t: int) -> Tensor:
        return self.eps_with_reference(x, t)[0]


@torch.no_grad()
def decode_latents(components: Components, latents: Tensor, chunk: int = 1) -> np.ndarray:
    """Latents (1, C, F, h, w) -> uint8 frames (F, H, W, 3), decoded `chunk` frames at a time."""
    frames = to_frames(latents)
    out = []
    for i in range(0, len(frames), chunk):
        images = ((decode_frames(components, frames[i:i + chunk]).float() + 1) / 2).clamp(0, 1)
        out.append((images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))
    return np.concatenate(out)


@torch.no_grad()
def encode_frames(components: Components, frames: np.ndarray, chunk: int = 1) -> Tensor:
    """uint8 frames (F, H, W, 3) -> latents (1, C, F, H/8, W/8): the VAE posterior means, scaled."""
    c = components
    out = []
    for i in range(0, len(frames), chunk):
        pixels = torch.from_numpy(np.ascontiguousarray(frames[i:i + chunk])).to(c.device).permute(0, 3, 1, 2)
        pixels = (pixels.to(c.dtype) / 127.5 - 1.0)
        out.append(c.vae.encode(pixels).latent_dist.mean * c.latent_scale)
    latents = torch.cat(out).float()  # (F, C, h, w)
    return latents.permute(1, 0, 2, 3).unsqueeze(0)


def decode_frames(components: Components, latents: Tensor) -> Tensor:
    """VAE decode (N, C, h, w) -> (N, 3, H, W) in about [-1, 1]; differentiable when grad is on."""
    return components.vae.decode(latents.to(components.dtype) / components.latent_scale).sample
