"""Classifier-free guidance's two branches differentiated one after the other.

`eps = eps_u + w (eps_c - eps_u) = (1 - w) eps_u + w eps_c` is linear in the two branch
predictions, so its vector-Jacobian product is the sum of one VJP per branch with the
cotangent scaled by that branch's weight:

    J^T v = J_u^T ((1 - w) v) + J_c^T (w v)

The same gradient (to round-off), with one branch's graph alive at a time: the UNet and
ControlNet activations of a VJP halve, for one more pass over the weights. `SplitCFGEps` is an
`EpsWithVJP` (so the guidance core never keeps its graph between calls) whose predictions are
the joint CFG ones.

When it is used (`guidance.cfg_split`): `true`, `false`, or `auto`, which splits on a CUDA
device when the joint VJP's estimated saved bytes exceed half the free device memory (the other
half is left to the loss, the recomputation of one block and the allocator); never on the CPU,
where memory is rarely the limit and the split costs time.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .denoiser import DepthControlledEps
from ..guidance.vjp import input_vjp

Span = tuple[int, int]

# Bytes a VJP keeps saved per CFG branch, frame and latent cell with every block checkpointed, in
# float32 (the motion UNet + ControlNet at SD 1.5 sizes: 1726 MB for 16 frames of 32x57 cells),
# measured by `sagvideo bench memory --presets sd15` (README, "Models and memory").
SAVED_BYTES_PER_BRANCH_CELL_FP32 = 62_000


def branch_weights(eps: DepthControlledEps) -> list[float]:
    """Each branch's weight in the CFG combination: (1 - w, w), or (1,) for one branch."""
    if len(eps.branches) == 1:
        return [1.0]
    return [1.0 - eps.cfg_scale, eps.cfg_scale]


def estimated_joint_vjp_bytes(frames: int, height: int, width: int, dtype: torch.dtype) -> int:
    """Saved bytes of a joint (two-branch) VJP over `frames` latent frames of `height` x `width` cells."""
    scale = torch.finfo(dtype).bits / 32
    return int(2 * SAVED_BYTES_PER_BRANCH_CELL_FP32 * scale * frames * height * width)


def wants_split(setting: bool | str, device: torch.device, frames: int, height: int, width: int,
                dtype: torch.dtype) -> bool:
    """Resolve `guidance.cfg_split` (True, False or "auto") for a window of latents (see the module doc)."""
    if setting != "auto":
        return bool(setting)
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return estimated_joint_vjp_bytes(frames, height, width, dtype) > free / 2


class SplitCFGEps:
    """The CFG predictor of `eps` whose VJPs run one branch at a time (same values, same gradient)."""

    def __init__(self, eps: DepthControlledEps):
        self.eps = eps
        # one predictor per branch; only the first reports its calls (one evaluation per VJP)
        self.single = [eps.single_branch(b, report_calls=i == 0) for i, b in enumerate(eps.branches)]
        self.weights = branch_weights(eps)

    def eps_with_reference(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        return self.eps.eps_with_reference(x, t)

    def __call__(self, x: Tensor, t: int) -> Tensor:
        return self.eps(x, t)

    def predict(self, x: Tensor, t: int, spans: Sequence[Span]) -> tuple[Tensor, Tensor]:
        """(CFG eps, eps_c - eps_u) for K windows (K, C, L, h, w); see `DepthControlledEps.predict`."""
        return self.eps.predict(x, t, spans)

    def window_vjp(self, x: Tensor, t: int, spans: Sequence[Span], cotangent: Tensor) -> Tensor:
        """`(d eps / d x)^T cotangent` for K windows x (K, C, L, h, w), one branch's graph at a time."""
        out = torch.zeros_like(x)
        for branch, weight in zip(self.single, self.weights):
            # this branch's graph is gone before the next is built
            out += input_vjp(lambda leaf: branch.predict(leaf, t, spans)[0], x, weight * cotangent)
        return out

    def vjp(self, x: Tensor, t: int, cotangent: Tensor) -> Tensor:
        """`(d eps(x, t) / d x)^T cotangent` for the whole clip (1, C, F, h, w) as one window."""
        return self.window_vjp(x, t, [(0, x.shape[2])], cotangent)
