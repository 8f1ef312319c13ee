"""What the stylized frames show: distance to the style, CLIP-embedding consistency, depth kept.

Each metric runs a model the caller passes in (a per-frame style loss, a transformers
CLIPVisionModel, a depth estimator) over the output frames a chunk at a time, without a graph.
Frames are uint8 (F, H, W, 3); models see float (N, 3, H, W) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..guidance.losses import CLIP_MEAN, CLIP_STD
from .frames import check_clip, check_same_length, resize

CHUNK = 8  # frames per model call: bounds memory on long clips
FLAT_RTOL = 1e-6  # a map whose std is below this fraction of its largest |value| counts as constant


@dataclass(frozen=True)
class PerFrame:
    """mean over the defined values (None if there are none) and the per-frame (or per-pair) values."""

    mean: float | None
    values: list[float | None] = field(default_factory=list)

    @classmethod
    def of(cls, values: list[float | None]) -> "PerFrame":
        defined = [v for v in values if v is not None]
        return cls(float(np.mean(defined)) if defined else None, list(values))


def _as_images(frames: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def style_distance(frames: np.ndarray, per_frame_loss: Callable[[Tensor], Tensor], chunk: int = CHUNK) -> PerFrame:
    """Per-frame style loss of the final frames, e.g. ||G_f - G_style||_F of `GramStyleLoss.per_frame`.

    frames: uint8 (F, H, W, 3); per_frame_loss: images (N, 3, H, W) float32 in [0, 1] -> (N,).
    Returns the F values and their mean.
    """
    frames = check_clip(frames, "frames")
    values: list[float | None] = []
    for i in range(0, len(frames), chunk):
        images = _as_images(frames[i:i + chunk])
        out = torch.as_tensor(per_frame_loss(images)).detach().float().reshape(-1).cpu()
        if out.numel() != len(images):
            raise InputError(f"per_frame_loss must return one value per image, shape ({len(images)},), "
                             f"got {out.numel()} values. To fix: pass a per-frame loss such as "
                             f"GramStyleLoss(...).per_frame, not the frame-averaged loss.")
        values.extend(out.tolist())
    return PerFrame.of(values)


def clip_embedding_kind(model: Any) -> str:
    """Which embedding `clip_consistency` compares: "projected" (the image embedding of CLIP's joint
    space, `visual_projection(pooler_output)`, as papers report) for a model with a projection
    (CLIPVisionModelWithProjection), else "pooled" (the post-layernorm CLS token, pooler_output)."""
    return "projected" if hasattr(model, "visual_projection") else "pooled"


def _clip_embed(model: Any, images: Tensor) -> Tensor:
    """Unit-norm CLIP image embeddings (`clip_embedding_kind`): (N, 3, H, W) in [0, 1] -> (N, D) float32."""
    param = next(model.parameters())
    size = int(model.config.image_size)
    x = F.interpolate(images.to(param.device), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    out = model(pixel_values=((x - mean) / std).to(param.dtype))
    embedding = out.image_embeds if clip_embedding_kind(model) == "projected" else out.pooler_output
    return F.normalize(embedding.float(), dim=-1)


@torch.no_grad()
def clip_consistency(frames: np.ndarray, clip_vision_model: Any, chunk: int = CHUNK) -> PerFrame:
    """Cosine similarity of the CLIP embeddings of consecutive frames.

    frames: uint8 (F, H, W, 3); clip_vision_model: a transformers CLIPVisionModelWithProjection
    (or CLIPVisionModel; any device or dtype; put it in eval mode). Each frame is resized to
    config.image_size squared (bicubic, antialiased; as the style loss does, the aspect is not
    kept), normalised with the CLIP mean/std; e_t = the projected image embedding (image_embeds,
    as papers report; pooler_output for a model without a projection, see `clip_embedding_kind`)
    over its norm; s_t = e_t . e_{t+1}. Returns the F - 1
    values s_t and their mean (None for F = 1). 1.0: consecutive frames show the same content.
    """
    frames = check_clip(frames, "frames")
    sims: list[float | None] = []
    last: Tensor | None = None  # the previous chunk's last embedding, to pair across chunks
    for i in range(0, len(frames), chunk):
        emb = _clip_embed(clip_vision_model, _as_images(frames[i:i + chunk]))
        seq = emb if last is None else torch.cat([last, emb])
        sims.extend((seq[:-1] * seq[1:]).sum(-1).clamp(-1.0, 1.0).cpu().tolist())
        last = emb[-1:]
    return PerFrame.of(sims)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two equally shaped maps, in [-1, 1]; None if either is constant."""
    x = a.astype(np.float64).ravel()
    y = b.astype(np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    nx, ny = np.sqrt(x @ x), np.sqrt(y @ y)
    flat = [n / np.sqrt(x.size) <= FLAT_RTOL * np.abs(m).max() for n, m in ((nx, a), (ny, b))]
    if any(flat):
        return None
    return float(np.clip((x @ y) / (nx * ny), -1.0, 1.0))


def _check_depth(input_depth: np.ndarray, frames: np.ndarray) -> np.ndarray:
    depth = np.asarray(input_depth)
    if depth.ndim != 3 or not np.issubdtype(depth.dtype, np.floating) or not np.isfinite(depth).all():
        raise InputError(f"input_depth must be finite float depth maps (F, h, w) in [0, 1], got {depth.dtype} "
                         f"{depth.shape}. To fix: pass the normalised clip depth the run was conditioned on.")
    check_same_length(frames, depth, "input_depth")
    return depth


def depth_fidelity(frames: np.ndarray, input_depth: np.ndarray, depth_estimator: Callable[[np.ndarray], np.ndarray],
                   chunk: int = CHUNK) -> PerFrame:
    """Does the output keep the input's depth: Pearson r between estimated and input depth, per frame.

    frames: uint8 (F, H, W, 3); input_depth: float (F, h, w) in [0, 1] (the conditioning maps);
    depth_estimator: uint8 (N, H, W, 3) -> float32 (N, H', W'), e.g. a `DepthEstimator`. Each
    estimate is resized to (h, w) and r_f = corr(estimate_f, input_f) over pixels: 1.0 = same
    depth up to scale and offset, 0 = unrelated, -1 = inverted. A constant map (either side)
    has no correlation: r_f is None and is left out of the mean (None if all are).
    """
    frames = check_clip(frames, "frames")
    depth = _check_depth(input_depth, frames)
    values: list[float | None] = []
    for i in range(0, len(frames), chunk):
        batch = frames[i:i + chunk]
        estimate = np.asarray(depth_estimator(batch), dtype=np.float32)
        if estimate.ndim != 3 or len(estimate) != len(batch):
            raise InputError(f"depth_estimator must map {len(batch)} frames to depth maps ({len(batch)}, H, W), "
                             f"got shape {estimate.shape}. To fix: pass a DepthEstimator (sagvideo.video.depth).")
        for est, target in zip(estimate, depth[i:i + chunk]):
            values.append(pearson(resize(est, target.shape), target))
    return PerFrame.of(values)
