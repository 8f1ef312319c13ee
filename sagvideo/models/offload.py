"""`model.cpu_offload`: keep the big networks in CPU memory and bring each to the GPU only to run.

The text encoder, ControlNet, UNet(s) and VAE get an accelerate `ModelHook` each. Before a
network's forward, every other network of the group that is on the GPU goes back to the CPU,
and this one moves to the execution device with its inputs: one network resident at a time,
whatever order the sampler calls them in (ControlNet and UNet alternate every step, the VAE
runs only on guided steps; a fixed chain such as `cpu_offload_with_hook`'s would leave the UNet
resident while the ControlNet runs). The CLIP vision model (small, called through a submodule
by the style loss) stays on the GPU. Costs a host-to-GPU copy per call: slower, less memory.
"""

from __future__ import annotations

import torch
from accelerate.hooks import ModelHook, add_hook_to_module
from accelerate.utils import send_to_device

from .components import Components


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


class _OneResident(ModelHook):
    """Move `module` to `device` before its forward, after sending `others` to the CPU."""

    def __init__(self, device: torch.device, others: list[torch.nn.Module]):
        self.device, self.others = device, others

    def init_hook(self, module):
        return module.to("cpu")

    def pre_forward(self, module, *args, **kwargs):
        for other in self.others:
            if _device_of(other) != torch.device("cpu"):
                other.to("cpu")
        if _device_of(module) != self.device:
            module.to(self.device)
        return send_to_device(args, self.device), send_to_device(kwargs, self.device)


class _FollowInputs(ModelHook):
    """For a submodule called on its own (the ControlNet's control-image embedding): move it to `device`."""

    def __init__(self, device: torch.device):
        self.device = device

    def pre_forward(self, module, *args, **kwargs):
        if _device_of(module) != self.device:
            module.to(self.device)
        return send_to_device(args, self.device), send_to_device(kwargs, self.device)


def offloaded_modules(c: Components) -> list[torch.nn.Module]:
    """The networks `enable_cpu_offload` moves: text encoder, ControlNet, UNet(s), VAE."""
    return [m for m in (c.text_encoder, c.controlnet, c.unet_motion, c.unet2d, c.vae) if m is not None]


def enable_cpu_offload(c: Components, device: str | torch.device) -> Components:
    """Hook the networks of `c` (in place) so each sits on the CPU until it runs on `device`.

    `c.device` becomes `device` (where inputs and results live); `clip_vision` and the schedule
    move there. The image UNet shares its layers with the motion UNet; each has its own hook,
    and running one sends the other (and so the shared layers) through the same path.
    """
    device = torch.device(device)
    group = offloaded_modules(c)
    params = {id(m): {id(p) for p in m.parameters()} for m in group}
    for module in group:
        # networks sharing weights with this one (image and motion UNet) are not sent away
        others = [m for m in group if params[id(m)].isdisjoint(params[id(module)])]
        add_hook_to_module(module, _OneResident(device, others))
    add_hook_to_module(c.controlnet.controlnet_cond_embedding, _FollowInputs(device))  # ControlCache calls it
    torch.nn.Module.to(c.clip_vision, device=device)
    c.alphas_cumprod = c.alphas_cumprod.to(device)
    c.device = device
    return c

