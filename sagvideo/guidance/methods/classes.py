"""Class-conditional guidance's interfaces: a class-conditional model with a classifier, and the class loss.

`gfcg` needs what a text-conditioned video model does not have (per-class predictions and a
classifier of clean images), so it is written against `ClassConditional`; `cg` and the other
methods use `ClassifierLoss` as an ordinary loss on the clean estimate.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

UNCONDITIONAL = -1  # the label asking `eps_for_class` for the unconditional (null-class) prediction


@runtime_checkable
class ClassConditional(Protocol):
    """A class-conditional noise predictor and a classifier of clean samples."""

    def eps_for_class(self, x: Tensor, t: int, labels: Tensor) -> Tensor:
        """eps(x, t | label) for x (N, ...) and labels (N,) int64; `UNCONDITIONAL` entries get the null class."""

    def classify(self, x0: Tensor) -> Tensor:
        """Logits (N, K) of clean samples x0 (N, ...)."""


class ClassifierLoss:
    """E(x0) = cross-entropy of `classify(x0)` against `labels`: -log p(y | x0), summed over the batch.

    Summed, not averaged, so that each sample's gradient is its own `-grad log p(y_b | x0_b)`, the
    quantity classifier guidance scales (a mean would divide it by the batch size).
    classify: x0 (B, ...) -> logits (B, K); labels: (B,) int64.
    """

    def __init__(self, classify: Callable[[Tensor], Tensor], labels: Tensor):
        self.classify = classify
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if self.labels.dim() != 1:
            raise ValueError(f"labels must be a (B,) tensor of class indices, got shape {tuple(self.labels.shape)}.")

    def per_sample(self, x0: Tensor) -> Tensor:
        """-log p(y_b | x0_b) for each sample: (B, ...) -> (B,)."""
        logits = self.classify(x0)
        if logits.shape[0] != len(self.labels):
            raise ValueError(f"the classifier saw {logits.shape[0]} samples but {len(self.labels)} labels were given.")
        return F.cross_entropy(logits.float(), self.labels.to(logits.device), reduction="none")

    def __call__(self, x0: Tensor) -> Tensor:
        return self.per_sample(x0).sum()
