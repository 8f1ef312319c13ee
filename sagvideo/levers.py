"""Memory levers that change networks, applied for one job and undone after it.

A `Runtime` is shared by every job of a process (the batch runs many), so a job that switches
gradient checkpointing on must switch it back: `applied_levers` restores each module's previous
state on exit, whatever happened inside.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .models.components import Components


def _checkpointing_modules(components: Components) -> list[torch.nn.Module]:
    return [m for m in (components.unet, components.controlnet) if getattr(m, "_supports_gradient_checkpointing", False)]


def _set_checkpointing(module: torch.nn.Module, enabled: bool) -> None:
    if enabled:
        module.enable_gradient_checkpointing()
    else:
        module.disable_gradient_checkpointing()


@contextmanager
def applied_levers(components: Components, *, gradient_checkpointing: bool) -> Iterator[None]:
    """Inside the block, UNet and ControlNet checkpoint activations during VJPs when asked; after it,
    every module is as it was."""
    modules = _checkpointing_modules(components)
    before = [bool(getattr(m, "is_gradient_checkpointing", False)) for m in modules]
    try:
        for module in modules:
            _set_checkpointing(module, gradient_checkpointing)
        yield
    finally:
        for module, state in zip(modules, before):
            _set_checkpointing(module, state)
