"""The live preview: a few frames of the current clean estimate, replaced atomically as the run goes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..images import write_image

if TYPE_CHECKING:
    from ..results import StepCallback

# latents (1, C, F', h, w) -> uint8 frames (F', H, W, 3): the pipeline's decoder, handed in
Decode = Callable[[Any], np.ndarray]


class PreviewWriter:
    """An `on_step` that writes the decoded clean estimate of a few frames every `every` steps.

    The PNG at `path` is replaced atomically each time, so a viewer never sees half an image; it
    is a live view, removed when the run ends (`JobFiles.open`). Chains to the caller's `then`.
    """

    def __init__(self, path: Path, every: int, decode: Decode, then: "StepCallback | None" = None, frames: int = 4):
        self.path, self.every, self.decode, self.then, self.count = path, every, decode, then, frames

    def __call__(self, i: int, t: int, x: Any, x0_hat: Any, loss: float | None) -> Any:
        if (i + 1) % self.every == 0:
            picks = np.linspace(0, x0_hat.shape[2] - 1, min(self.count, x0_hat.shape[2])).round().astype(int)
            frames = self.decode(x0_hat[:, :, sorted(set(picks.tolist()))])
            write_image(np.concatenate(list(frames), axis=1), self.path)  # atomic
        return None if self.then is None else self.then(i, t, x, x0_hat, loss)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
