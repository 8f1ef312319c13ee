"""Guidance methods as samplers with one shared signature, and their registry.

    result = sampler(eps_fn, x_T, alphas_cumprod, timesteps, *, loss_fn, params, settings,
                     generator=None, grad_eps_fn=None, on_step=None, on_record=None)

`eps_fn`, `params` (`SAGParams`: strength, start/end, repeats, n, gradient, scheme), the callbacks
and the returned `SampleResult` mean what they mean in `sagvideo.guidance.sample`; `settings` is
the method's own dataclass from `sagvideo.method_settings` (None: the papers' defaults).
`GUIDANCE` holds the pipeline's methods (named as `defaults.GUIDANCE_METHODS`); `CLASS_GUIDANCE`
the class-conditional ones of the benchmark (`gfcg` has its own signature, see gfcg.py).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from ...method_settings import (
    CGSettings, DOODLSettings, FreeDoMSettings, GFCGSettings, MPGDSettings, SAGSettings, UGSettings,
)
from .cg import sample_cg
from .classes import UNCONDITIONAL, ClassConditional, ClassifierLoss
from .doodl import chain_gradient, chain_grid, sample_doodl
from .freedom import sample_freedom
from .gfcg import ClassCFG, sample_gfcg
from .mpgd import sample_mpgd
from .sag import sample_sag
from .ug import backward_guidance, sample_ug


class Method(NamedTuple):
    """A guidance method: its sampler and its settings class."""

    sampler: Callable
    settings: type


GUIDANCE: dict[str, Method] = {
    "sag": Method(sample_sag, SAGSettings),
    "freedom": Method(sample_freedom, FreeDoMSettings),
    "ug": Method(sample_ug, UGSettings),
    "mpgd": Method(sample_mpgd, MPGDSettings),
    "doodl": Method(sample_doodl, DOODLSettings),
}

CLASS_GUIDANCE: dict[str, Method] = {
    "cg": Method(sample_cg, CGSettings),
    "gfcg": Method(sample_gfcg, GFCGSettings),
}

__all__ = [
    "CLASS_GUIDANCE", "GUIDANCE", "UNCONDITIONAL", "ClassCFG", "ClassConditional", "ClassifierLoss", "Method",
    "backward_guidance", "chain_gradient", "chain_grid", "sample_cg", "sample_doodl", "sample_freedom",
    "sample_gfcg", "sample_mpgd", "sample_sag", "sample_ug",
]
