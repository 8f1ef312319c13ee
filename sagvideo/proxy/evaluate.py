"""How good is the proxy: classifier accuracy, and class accuracy of DDIM samples drawn with CFG."""

from __future__ import annotations

import torch
from torch import Tensor

from ..guidance import ddim_timesteps, sample
from .model import IMAGE_SHAPE, NUM_CLASSES, DigitClassifier, ProxyEps, ProxyUNet
from .schedule import NUM_TRAIN_TIMESTEPS

EVAL_CFG_SCALE = 3.0
EVAL_STEPS = 50


@torch.no_grad()
def accuracy(classifier: DigitClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of images (N, 1, 16, 16) in [-1, 1] whose predicted digit equals labels (N,)."""
    return float((classifier(images).argmax(dim=1) == labels).float().mean())


def balanced_labels(per_class: int) -> Tensor:
    """(10 * per_class,) labels 0, 1, ..., 9, 0, 1, ... so any prefix is nearly balanced."""
    return torch.arange(NUM_CLASSES).repeat(per_class)


@torch.no_grad()
def sample_digits(model: ProxyUNet, labels: Tensor, alphas_cumprod: Tensor, *, cfg_scale: float = EVAL_CFG_SCALE,
                  steps: int = EVAL_STEPS, seed: int = 0) -> Tensor:
    """Plain DDIM (eta 0) samples of the digits `labels` (B,) with CFG: (B, 1, 16, 16), unclamped."""
    x_T = torch.randn((len(labels), *IMAGE_SHAPE), generator=torch.Generator().manual_seed(seed))
    eps_fn = ProxyEps(model, labels, cfg_scale)
    return sample(eps_fn, x_T, alphas_cumprod, ddim_timesteps(NUM_TRAIN_TIMESTEPS, steps)).x0


def cfg_sample_accuracy(model: ProxyUNet, classifier: DigitClassifier, alphas_cumprod: Tensor, *, per_class: int = 10,
                        cfg_scale: float = EVAL_CFG_SCALE, steps: int = EVAL_STEPS, seed: int = 0) -> float:
    """Classifier accuracy on `10 * per_class` CFG samples, each judged against the class it was asked for."""
    labels = balanced_labels(per_class)
    images = sample_digits(model, labels, alphas_cumprod, cfg_scale=cfg_scale, steps=steps, seed=seed)
    return accuracy(classifier, images.clamp(-1.0, 1.0), labels)
