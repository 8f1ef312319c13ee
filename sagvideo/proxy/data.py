"""The proxy data set: scikit-learn's handwritten digits at 16x16 in [-1, 1], with a seeded split.

`sklearn.datasets.load_digits` ships inside the scikit-learn package (1797 images, 8x8, grey
levels 0..16), so nothing is downloaded. Images are upsampled bicubically to 16x16 so the
networks have room for one downsampling level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGE_SIZE = 16
MAX_GREY = 16.0  # load_digits grey levels run 0..16
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digit_images(size: int = IMAGE_SIZE) -> tuple[Tensor, Tensor]:
    """All 1797 digits: images (N, 1, size, size) float32 in [-1, 1] (background -1), labels (N,) int64."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the proxy data set needs scikit-learn; install it with `pip install 'scikit-learn>=1.3'`."
        ) from err
    digits = load_digits()
    small = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / MAX_GREY
    big = F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)
    images = big.clamp(0.0, 1.0) * 2.0 - 1.0  # bicubic overshoots a little; keep the range exact
    return images.contiguous(), torch.as_tensor(digits.target, dtype=torch.long)


@dataclass(frozen=True)
class DigitSplit:
    """A fixed train/test split: images (N, 1, 16, 16) in [-1, 1], labels (N,)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def digit_split(seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> DigitSplit:
    """Shuffle with a seeded generator and hold out `test_fraction` of the digits for testing."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}.")
    images, labels = load_digit_images()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return DigitSplit(images[train], labels[train], images[test], labels[test])
