"""Activation checkpointing of every block of the networks a guidance gradient goes through.

diffusers' `enable_gradient_checkpointing()` (0.42) checkpoints the resnets and spatial
transformers of a motion UNet but not its motion modules (the temporal transformers), whose
saved activations are then the largest part of a VJP's memory. This module owns the lever: it
wraps each block (every entry of the `resnets`, `attentions`, `motion_modules`, `downsamplers`
and `upsamplers` lists of the down, mid and up blocks) of the UNet, the ControlNet and the VAE
decoder in `torch.utils.checkpoint` (non-reentrant). A wrapped block keeps only its inputs for
the backward and re-runs its forward during it, so the gradient is the same computation: bit
for bit in float64, to round-off in float32. Calls without a graph (no_grad, inference mode, or
no input that requires grad) run the block as it is.

`checkpointed(modules)` wraps for the duration of a block of code and restores every module
after it, whatever happened inside.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import torch
from torch.utils.checkpoint import checkpoint

# the lists inside a diffusers down/mid/up block whose entries are checkpointed one by one
BLOCK_PARTS = ("resnets", "attentions", "motion_modules", "downsamplers", "upsamplers")
_WRAPPED = "_sagvideo_checkpointed"  # attribute marking a module whose forward is wrapped


def _blocks(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The down, mid and up blocks of a UNet, ControlNet or VAE decoder (in that order)."""
    out = list(getattr(net, "down_blocks", None) or [])
    if getattr(net, "mid_block", None) is not None:
        out.append(net.mid_block)
    out.extend(getattr(net, "up_blocks", None) or [])
    return out


def checkpoint_targets(net: torch.nn.Module) -> list[tuple[str, str, torch.nn.Module]]:
    """(qualified name, part, module) of every block entry of `net` that checkpointing wraps.

    part is one of `BLOCK_PARTS`; each module appears once even when shared.
    """
    names = {id(m): name for name, m in net.named_modules()}
    seen: set[int] = set()
    out = []
    for block in _blocks(net):
        for part in BLOCK_PARTS:
            for module in getattr(block, part, None) or []:
                if module is not None and id(module) not in seen:
                    seen.add(id(module))
                    out.append((names.get(id(module), part), part, module))
    return out


def _needs_graph(args: tuple, kwargs: dict) -> bool:
    if not torch.is_grad_enabled():
        return False
    values = (*args, *kwargs.values())
    return any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)


def _wrap(module: torch.nn.Module) -> None:
    forward = module.forward  # the bound method (or a wrapper somebody else installed)

    def checkpointed_forward(*args: Any, **kwargs: Any) -> Any:
        if not _needs_graph(args, kwargs):
            return forward(*args, **kwargs)
        names, count = list(kwargs), len(args)

        def call(*flat: Any) -> Any:
            return forward(*flat[:count], **dict(zip(names, flat[count:])))

        # keyword tensors passed on positionally: torch saves positional inputs through the
        # saved-tensor hooks (so the memory account sees what a checkpoint holds), keywords it does not
        # frozen networks in eval mode draw no random numbers: no RNG state to save and restore
        return checkpoint(call, *args, *kwargs.values(), use_reentrant=False, preserve_rng_state=False)

    had_own = "forward" in module.__dict__
    setattr(module, _WRAPPED, (had_own, forward))
    module.forward = checkpointed_forward


def _unwrap(module: torch.nn.Module) -> None:
    had_own, forward = getattr(module, _WRAPPED)
    delattr(module, _WRAPPED)
    if had_own:
        module.forward = forward
    else:
        del module.forward


def is_checkpointed(module: torch.nn.Module) -> bool:
    """Whether `module` (a block entry) is wrapped by `checkpointed` now."""
    return hasattr(module, _WRAPPED)


def all_checkpointed(net: torch.nn.Module) -> bool:
    """Whether every block entry of `net` is wrapped (False when it has none)."""
    targets = checkpoint_targets(net)
    return bool(targets) and all(is_checkpointed(m) for _, _, m in targets)


@contextmanager
def checkpointed(nets: Iterable[torch.nn.Module | None], enabled: bool = True) -> Iterator[None]:
    """Inside the block, every block entry of `nets` checkpoints its activations (see module doc).

    diffusers' own checkpointing is switched off meanwhile (it would nest a second checkpoint
    around the same blocks) and restored after, with each wrapped module's forward.
    """
    nets = [n for n in nets if n is not None]
    if not enabled:
        yield
        return
    own = [n for n in nets if getattr(n, "_supports_gradient_checkpointing", False)]
    before = [bool(getattr(n, "is_gradient_checkpointing", False)) for n in own]
    wrapped: list[torch.nn.Module] = []
    try:
        for net in own:
            net.disable_gradient_checkpointing()
        for net in nets:
            for _, _, module in checkpoint_targets(net):
                if not is_checkpointed(module):
                    _wrap(module)
                    wrapped.append(module)
        yield
    finally:
        for module in reversed(wrapped):
            _unwrap(module)
        for net, state in zip(own, before):
            if state:
                net.enable_gradient_checkpointing()
