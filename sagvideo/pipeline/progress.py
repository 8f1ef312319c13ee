"""Progress bars: depth frame by frame, and sampling as steps x windows with an ETA.

Sampling progress is counted in window evaluations of the network (one window through ControlNet
+ UNet), a call with a graph counting twice (its VJP follows), so guided steps, which cost many
evaluations, move the bar in proportion to their cost and the ETA is honest. The bar's total is
the method's estimate (`method_registry`: `run_cost(...).forward_units` per window).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm


class ProgressDepth:
    """A depth estimator run a few frames at a time under a progress bar (same results)."""

    def __init__(self, estimator: Any, chunk: int = 4):
        self.estimator, self.name, self.chunk = estimator, estimator.name, chunk

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (F, H, W, 3) -> float32 (F, H, W), as the wrapped estimator."""
        parts = []
        with tqdm(total=len(frames), desc="depth", unit="frame", leave=False) as bar:
            for i in range(0, len(frames), self.chunk):
                parts.append(self.estimator(frames[i:i + self.chunk]))
                bar.update(len(parts[-1]))
        return np.concatenate(parts)


class SamplingProgress:
    """Counts network window evaluations (`on_call`) and shows step, window count, loss and ETA.

    `plan` is the expected units per step (`GuidanceMethod.step_plan`). After each step the total is corrected
    by what the step really cost, so the bar always ends at total/total, whatever the method."""

    def __init__(self, plan: list[int], steps: int, windows: int, enabled: bool = True):
        self.steps, self.windows = steps, windows
        self.calls = 0  # window evaluations
        self.graph_calls = 0  # of which with a graph
        self.expected_through = np.cumsum(plan).tolist() if plan else [0]
        self.correction = 0  # units the steps so far cost beyond (or below) their plan
        self.bar = tqdm(total=self.expected_through[-1], desc="sampling", unit="eval", disable=not enabled)
        self.step, self.loss = 0, None

    def on_call(self, windows: int, with_graph: bool) -> None:
        self.calls += windows
        self.graph_calls += windows if with_graph else 0
        self.bar.update(windows * (2 if with_graph else 1))

    def on_step(self, index: int, loss: float | None) -> None:
        self.step, self.loss = index + 1, loss if loss is not None else self.loss
        expected = self.expected_through[min(index, len(self.expected_through) - 1)] + self.correction
        if self.bar.n != expected:
            self.correction += self.bar.n - expected
            self.bar.total = self.expected_through[-1] + self.correction
        text = f"step {self.step}/{self.steps} x {self.windows} window{'s' * (self.windows > 1)}"
        self.bar.set_postfix_str(text + (f", style loss {self.loss:.4g}" if self.loss is not None else ""))

    def counts(self) -> dict[str, int]:
        """Window evaluations so far: all, and those with a graph (for the report)."""
        return {"window_evaluations": self.calls, "window_evaluations_with_graph": self.graph_calls}

    def close(self, finished: bool = True) -> None:
        if finished and self.bar.total != self.bar.n:  # stopped early by on_step: the run is complete as it is
            self.bar.total = self.bar.n
            self.bar.refresh()
        self.bar.close()

    def __enter__(self) -> "SamplingProgress":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(finished=exc_type is None)
