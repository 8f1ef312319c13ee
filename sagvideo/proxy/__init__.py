"""A small diffusion model trained here, on which guidance methods can be compared for real.

Class-conditional 16x16 digits (scikit-learn's `load_digits`), a DDPM linear schedule, a
classifier that judges samples, and a random-feature Gram loss as the style task:

    from sagvideo.proxy import load_proxy, ProxyEps, RandomGramLoss, style_texture
    proxy = load_proxy()                       # the checkpoint shipped beside this file
    eps_fn = ProxyEps(proxy.model, labels=3, cfg_scale=3.0)
    loss_fn = RandomGramLoss(style_texture())  # x0 (B, 1, 16, 16) in [-1, 1] -> scalar

Re-create the checkpoint with `python -m sagvideo.proxy.train` (a few minutes on 2 CPU cores).
"""

from .checkpoint import DEFAULT_CHECKPOINT, Proxy, load_proxy
from .data import DigitSplit, digit_split, load_digit_images
from .evaluate import accuracy, cfg_sample_accuracy, sample_digits
from .features import RandomConvFeatures, RandomGramLoss, style_texture
from .model import NULL_LABEL, NUM_CLASSES, DigitClassifier, ProxyEps, ProxyUNet, UNetConfig
from .schedule import NUM_TRAIN_TIMESTEPS, proxy_alphas_cumprod

__all__ = [
    "DEFAULT_CHECKPOINT", "NULL_LABEL", "NUM_CLASSES", "NUM_TRAIN_TIMESTEPS", "DigitClassifier", "DigitSplit",
    "Proxy", "ProxyEps", "ProxyUNet", "RandomConvFeatures", "RandomGramLoss", "UNetConfig", "accuracy",
    "cfg_sample_accuracy", "digit_split", "load_digit_images", "load_proxy", "proxy_alphas_cumprod",
    "sample_digits", "style_texture",
]
