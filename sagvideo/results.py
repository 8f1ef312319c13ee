"""What a run hands back and what it calls while it runs: below both the pipeline and the file side.

`StylizeResult` is made by the pipeline (frames at model size) and by `api` (a new one with the
frames at the source size and the input recorded in the report); the writers in `outputs/` read
it. `StepCallback` is the guided-sampling loop's per-step hook (`guidance.loop` owns its shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .guidance.loop import StepCallback

__all__ = ["StepCallback", "StylizeResult"]


@dataclass
class StylizeResult:
    """frames: uint8 (F, H, W, 3) (model size from the pipeline; the source size from `api`);
    model_frames: the same at model size; depth: (F, H, W) in [0, 1]; style: uint8 (h, w, 3);
    clip: the `video.io.Clip` read (from `api`, for the writers: fps, audio, source size)."""

    frames: np.ndarray
    report: dict[str, Any]
    model_frames: np.ndarray | None = None
    depth: np.ndarray | None = None
    style: np.ndarray | None = None
    clip: Any = None
