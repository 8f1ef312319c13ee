"""Guidance methods as samplers with one shared signature.

    result = sampler(eps_fn, x_T, alphas_cumprod, timesteps, *, loss_fn, params, settings,
                     generator=None, grad_eps_fn=None, on_step=None, on_record=None)

`eps_fn`, `params` (`SAGParams`: strength, start/end, passes, n, gradient, scheme), the callbacks
and the returned `SampleResult` mean what they mean in `sagvideo.guidance.sample`; `settings` is
the method's own dataclass from `sagvideo.method_registry` (None: the papers' defaults). Which
methods exist, their defaults and costs: `sagvideo.method_registry.METHODS` (`gfcg` has its own
signature, see gfcg.py).
"""

from __future__ import annotations

from .cg import sample_cg
from .classes import UNCONDITIONAL, ClassConditional, ClassifierLoss
from .doodl import chain_gradient, chain_grid, sample_doodl
from .freedom import sample_freedom
from .gfcg import ClassCFG, sample_gfcg
from .mpgd import sample_mpgd
from .sag import sample_sag
from .ug import backward_guidance, sample_ug

__all__ = [
    "UNCONDITIONAL", "ClassCFG", "ClassConditional", "ClassifierLoss",
    "backward_guidance", "chain_gradient", "chain_grid", "sample_cg", "sample_doodl", "sample_freedom",
    "sample_gfcg", "sample_mpgd", "sample_sag", "sample_ug",
]
