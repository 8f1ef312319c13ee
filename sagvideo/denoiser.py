"""Adapts the diffusers networks into the guidance core's `eps(x, t)`.

One call evaluates ControlNet-depth on the same latents, then the (motion) UNet over all frames
jointly, for the unconditional and conditional prompts in one batch, and combines them with
classifier-free guidance: `eps = eps_u + w (eps_c - eps_u)`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .guidance.layout import from_frames, to_frames
from .models.components import Components


class DepthControlledEps:
    """eps(x, t) for latents x of shape (1, C, F, h, w); F = 1 is the image case.

    text: (2, L, D) embeddings, unconditional first. control: (F, 3, H, W) depth images in [0, 1]
    at pixel size, or None to run without ControlNet.
    """

    def __init__(
        self,
        components: Components,
        text: Tensor,
        control: Tensor | None,
        *,
        cfg_scale: float = 7.5,
        controlnet_scale: float = 1.0,
        branches: tuple[int, ...] = (0, 1),
    ):
        self.c = components
        self.text = text
        self.control = control
        self.cfg_scale = cfg_scale
        self.controlnet_scale = controlnet_scale
        self.branches = branches  # (0, 1): CFG; (1,): the conditional branch only

    def conditional_only(self) -> "DepthControlledEps":
        """The same model on the conditional prompt alone (half the batch): for guidance gradients."""
        return DepthControlledEps(
            self.c, self.text, self.control, cfg_scale=1.0,
            controlnet_scale=self.controlnet_scale, branches=(1,),
        )

    def _predict(self, x: Tensor, t: int) -> Tensor:
        """Noise prediction per branch: (1, C, F, h, w) -> (branches, C, F, h, w)."""
        c, branches, frames = self.c, len(self.branches), x.shape[2]
        sample = x.to(c.dtype).expand(branches, -1, -1, -1, -1)
        whole_clip = c.unet_motion is not None and frames > 1
        # per-frame view (branches * F, C, h, w), branch-major like the text; only if something reads it
        flat = to_frames(sample) if (self.control is not None or not whole_clip) else None
        text = self.text[list(self.branches)].to(c.dtype)
        per_frame_text = text.repeat_interleave(frames, dim=0)  # (branches * F, L, D)
        residuals = {}
        if self.control is not None:
            control = self.control.to(c.device, c.dtype).repeat(branches, 1, 1, 1)
            down, mid = c.controlnet(
                flat, t, encoder_hidden_states=per_frame_text, controlnet_cond=control,
                conditioning_scale=self.controlnet_scale, return_dict=False,
            )
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        if whole_clip:
            return c.unet_motion(sample, t, encoder_hidden_states=per_frame_text, **residuals).sample
        out = c.unet2d(flat, t, encoder_hidden_states=per_frame_text, **residuals).sample
        return from_frames(out, sample)

    def eps_with_reference(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """(CFG eps, eps_c - eps_u), both shaped like x; the reference sets the guidance step size."""
        pred = self._predict(x, t).to(x.dtype)
        if len(self.branches) == 1:
            return pred, pred
        uncond, cond = pred[0:1], pred[1:2]
        diff = cond - uncond
        return uncond + self.cfg_scale * diff, diff

    def __call__(self, x: Tensor, t: int) -> Tensor:
        return self.eps_with_reference(x, t)[0]


@torch.no_grad()
def decode_latents(components: Components, latents: Tensor, chunk: int = 1) -> Tensor:
    """Latents (1, C, F, h, w) -> frames (F, 3, H, W) in [0, 1], decoded `chunk` frames at a time."""
    frames = to_frames(latents)
    out = [decode_frames(components, frames[i : i + chunk]) for i in range(0, len(frames), chunk)]
    return ((torch.cat(out).float() + 1) / 2).clamp(0, 1)


def decode_frames(components: Components, latents: Tensor) -> Tensor:
    """VAE decode (N, C, h, w) -> (N, 3, H, W) in about [-1, 1]; differentiable when grad is on."""
    vae = components.vae
    return vae.decode(latents.to(components.dtype) / components.latent_scale).sample


@torch.no_grad()
def initial_noise(shape: tuple[int, ...], seed: int, device: torch.device) -> Tensor:
    """Initial latent noise drawn on the CPU from `seed`, so every device gets the same start."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device)
