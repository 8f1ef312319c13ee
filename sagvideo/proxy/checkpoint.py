"""Saving and loading the proxy checkpoint: one torch file with both networks and their record.

The file holds plain tensors and plain Python values only, so `torch.load(weights_only=True)`
reads it. Weights are stored in `STORE_DTYPE` and cast to float32 on load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..files import atomic_path
from .model import DigitClassifier, ProxyUNet, UNetConfig
from .schedule import proxy_alphas_cumprod

DEFAULT_CHECKPOINT = Path(__file__).with_name("proxy_digits.pt")
TRAIN_COMMAND = "python -m sagvideo.proxy.train"
FORMAT_VERSION = 1
STORE_DTYPE = torch.float32  # ~0.4M parameters fit the 5 MB budget without going to float16


def checkpoint_target(out: str | os.PathLike, default: Path, overwrite: bool) -> Path:
    """Where a proxy trainer writes `out`; InputError now, before minutes of training, when its folder
    is missing or it is a file of the user's (anything but the package's own `default`, which the
    trainer exists to re-create) and `overwrite` is off."""
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"output folder '{out.parent}' does not exist. To fix: create it or pass another --out.")
    if out.exists() and not overwrite and out.resolve() != default.resolve():
        raise InputError(f"'{out}' already exists. To fix: pass --overwrite to replace it, or another --out.")
    return out


def run_command(main: Callable[[], Any]) -> None:
    """A trainer's `main` as a command: a refused input ends it with its message and exit code 2, no traceback."""
    import sys

    try:
        main()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@dataclass
class Proxy:
    """The trained proxy: noise predictor, classifier, schedule (float64, (1000,)) and the training record."""

    model: ProxyUNet
    classifier: DigitClassifier
    alphas_cumprod: Tensor
    meta: dict[str, Any]


def _stored(module: nn.Module) -> dict[str, Tensor]:
    return {k: (v.detach().to(STORE_DTYPE) if v.is_floating_point() else v.detach()).clone()
            for k, v in module.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, model: ProxyUNet, classifier: DigitClassifier,
                    meta: dict[str, Any]) -> Path:
    """Write both networks and `meta` (plain values) to `path` atomically; returns the path."""
    payload = {
        "format": FORMAT_VERSION,
        "model": _stored(model),
        "model_config": model.config.as_dict(),
        "classifier": _stored(classifier),
        "classifier_channels": classifier.channels,
        "meta": meta,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _frozen(module: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    module.eval()
    module.requires_grad_(False)
    return module


def load_proxy(path: str | os.PathLike | None = None) -> Proxy:
    """Load the proxy (default: the checkpoint shipped in this package) in eval mode, float32, CPU, frozen."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        command = TRAIN_COMMAND if path == DEFAULT_CHECKPOINT else f"{TRAIN_COMMAND} --out {path}"
        raise FileNotFoundError(
            f"proxy checkpoint '{path}' not found. To fix: re-create it with `{command}` "
            f"(a few minutes on 2 CPU cores)."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file fails in many ways (pickle, struct, zip errors)
        raise ValueError(f"'{path}' is damaged or not a proxy checkpoint (torch.load raised {type(err).__name__}). "
                         f"To fix: re-create it with `{TRAIN_COMMAND}`.") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"'{path}' is not a proxy checkpoint of format {FORMAT_VERSION}. "
            f"To fix: re-create it with `{TRAIN_COMMAND}`."
        )
    model = _frozen(ProxyUNet(UNetConfig(**payload["model_config"])), payload["model"])
    classifier = _frozen(DigitClassifier(payload["classifier_channels"]), payload["classifier"])
    return Proxy(model, classifier, proxy_alphas_cumprod(), dict(payload["meta"]))
