"""Train the proxy: `python -m sagvideo.proxy.train [--out PATH]` (about 3 minutes on 2 idle CPU cores).

Stages, each a function: load the seeded digit split, train the noise predictor (epsilon
prediction, uniform t, label dropout to the null label for CFG, EMA of the weights), train the
classifier, measure (final training loss, test denoising loss, classifier test accuracy,
classifier accuracy on CFG samples), save one checkpoint atomically.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import sklearn
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import DEFAULT_CHECKPOINT, checkpoint_target, run_command, save_checkpoint
from .data import SPLIT_SEED, DigitSplit, digit_split
from .evaluate import EVAL_CFG_SCALE, EVAL_STEPS, accuracy, cfg_sample_accuracy
from .model import NULL_LABEL, DigitClassifier, ProxyUNet, UNetConfig
from .schedule import BETA_END, BETA_START, NUM_TRAIN_TIMESTEPS, add_noise, proxy_alphas_cumprod


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides the result; saved in the checkpoint."""

    steps: int = 900
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 50
    label_dropout: float = 0.15
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    clf_epochs: int = 15
    clf_lr: float = 2e-3
    clf_batch_size: int = 64
    seed: int = 0
    threads: int = 2
    log_every: int = 100
    eval_per_class: int = 10
    eval_cfg_scale: float = EVAL_CFG_SCALE
    eval_steps: int = EVAL_STEPS


def _lr_factor(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to 0 at the last step."""
    if step < settings.warmup:
        return (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _batches(n: int, batch_size: int, gen: torch.Generator):
    """Endless index batches (batch_size,), a fresh seeded permutation every epoch."""
    while True:
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def diffusion_loss(model: ProxyUNet, x0: Tensor, labels: Tensor, alphas_cumprod: Tensor, gen: torch.Generator,
                   label_dropout: float = 0.0) -> Tensor:
    """E ||eps - eps_theta(x_t, t, y)||^2 with t uniform on 0..999 (Ho et al. 2020, Algorithm 1).

    x0: (B, 1, 16, 16); labels: (B,); a `label_dropout` fraction of labels becomes the null label.
    """
    b = x0.shape[0]
    t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    drop = torch.rand(b, generator=gen) < label_dropout
    labels = torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)
    return F.mse_loss(model(add_noise(x0, noise, t, alphas_cumprod), t, labels), noise)


def fit(model: nn.Module, batch_loss: Callable[[int], Tensor], settings: Any, name: str,
        log: Callable[[str], None] = print) -> tuple[nn.Module, float]:
    """The proxies' optimisation loop: AdamW, warm-up then cosine decay (`_lr_factor`), gradient
    clipping, an exponential moving average of the weights, a log line every `log_every` steps.

    `batch_loss(step)` -> the scalar loss of that step's batch (drawing its own batch and noise).
    `settings` has steps, lr, warmup, grad_clip, ema_decay, log_every. Returns (the EMA model in
    eval mode, frozen; the mean loss of the last `log_every` steps)."""
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, settings))
    window: list[float] = []
    start = time.perf_counter()
    for step in range(settings.steps):
        loss = batch_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        sched.step()
        decay = min(settings.ema_decay, (1 + step) / (10 + step))  # short warm-up: early EMA follows the model
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1.0 - decay)
        window = (window + [loss.item()])[-settings.log_every:]
        if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
            log(f"{name} step {step + 1}/{settings.steps}  loss {sum(window) / len(window):.4f}  "
                f"lr {sched.get_last_lr()[0]:.2e}  {time.perf_counter() - start:.0f}s")
    return ema.eval(), sum(window) / max(1, len(window))


def train_diffusion(data: DigitSplit, config: UNetConfig, settings: TrainSettings,
                    log: Callable[[str], None] = print) -> tuple[ProxyUNet, float]:
    """Train the noise predictor; returns (EMA model in eval mode, mean loss of the last log window)."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    alphas = proxy_alphas_cumprod().float()
    model = ProxyUNet(config)
    batches = _batches(len(data.train_labels), min(settings.batch_size, len(data.train_labels)), gen)

    def batch_loss(step: int) -> Tensor:
        idx = next(batches)
        return diffusion_loss(model, data.train_images[idx], data.train_labels[idx], alphas, gen,
                              settings.label_dropout)

    return fit(model, batch_loss, settings, "diffusion", log)


@torch.no_grad()
def test_denoising_loss(model: ProxyUNet, data: DigitSplit, seed: int = 1) -> float:
    """Conditional epsilon MSE on the test digits at seeded t and noise (no label dropout)."""
    gen = torch.Generator().manual_seed(seed)
    return float(diffusion_loss(model, data.test_images, data.test_labels, proxy_alphas_cumprod().float(), gen))


def _shift(images: Tensor, gen: torch.Generator) -> Tensor:
    """Random translation by up to 1 pixel (background -1 fills the border): (B, 1, 16, 16)."""
    padded = F.pad(images, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2,), generator=gen).tolist()
    return padded[:, :, dy:dy + images.shape[2], dx:dx + images.shape[3]]


def train_classifier(data: DigitSplit, settings: TrainSettings, channels: int = 16,
                     log: Callable[[str], None] = print) -> tuple[DigitClassifier, float]:
    """Train the clean-image classifier; returns (classifier in eval mode, test accuracy)."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    clf = DigitClassifier(channels)
    opt = torch.optim.AdamW(clf.parameters(), lr=settings.clf_lr)
    n = len(data.train_labels)
    batch = min(settings.clf_batch_size, n)
    for epoch in range(settings.clf_epochs):
        clf.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(clf(_shift(data.train_images[idx], gen)), data.train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if (epoch + 1) % 10 == 0 or epoch + 1 == settings.clf_epochs:
            clf.eval()
            log(f"classifier epoch {epoch + 1}/{settings.clf_epochs}  loss {loss.item():.4f}  "
                f"test accuracy {accuracy(clf, data.test_images, data.test_labels):.3f}")
    clf.eval()
    return clf, accuracy(clf, data.test_images, data.test_labels)


def run(out: str | Path = DEFAULT_CHECKPOINT, config: UNetConfig = UNetConfig(),
        settings: TrainSettings = TrainSettings(), log: Callable[[str], None] = print, overwrite: bool = False) -> dict:
    """All stages; writes the checkpoint to `out` (see `checkpoint_target`) and returns its `meta` record."""
    out = checkpoint_target(out, DEFAULT_CHECKPOINT, overwrite)
    torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    data = digit_split()
    model, final_loss = train_diffusion(data, config, settings, log)
    clf, clf_acc = train_classifier(data, settings, log=log)
    test_loss = test_denoising_loss(model, data)
    sample_acc = None
    if settings.eval_per_class > 0:
        sample_acc = cfg_sample_accuracy(model, clf, proxy_alphas_cumprod(), per_class=settings.eval_per_class,
                                         cfg_scale=settings.eval_cfg_scale, steps=settings.eval_steps)
    meta = {
        "settings": asdict(settings),
        "schedule": {"beta_start": BETA_START, "beta_end": BETA_END, "num_train_timesteps": NUM_TRAIN_TIMESTEPS},
        "data": {"source": "sklearn.datasets.load_digits", "size": 16, "split_seed": SPLIT_SEED,
                 "train": len(data.train_labels), "test": len(data.test_labels)},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "final_train_loss": final_loss,
        "test_denoising_loss": test_loss,
        "classifier_test_accuracy": clf_acc,
        "cfg_sample_accuracy": sample_acc,
        "sklearn_version": str(sklearn.__version__),
        "torch_version": str(torch.__version__),  # TorchVersion would not load with weights_only
        "machine": f"{platform.machine()}, {settings.threads} threads",
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    save_checkpoint(out, model, clf, meta)
    log(f"final training loss {final_loss:.4f}, test denoising loss {test_loss:.4f}, "
        f"classifier test accuracy {clf_acc:.3f}, CFG sample accuracy "
        f"{'n/a' if sample_acc is None else f'{sample_acc:.3f}'} (scale {settings.eval_cfg_scale}, "
        f"{settings.eval_steps} DDIM steps), {meta['train_seconds']}s; wrote {out}")
    return meta


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m sagvideo.proxy.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_CHECKPOINT), help="checkpoint path (default: the package's)")
    parser.add_argument("--steps", type=int, default=TrainSettings.steps, help="diffusion training steps")
    parser.add_argument("--channels", type=int, default=UNetConfig.channels, help="U-Net width at 16x16")
    parser.add_argument("--clf-epochs", type=int, default=TrainSettings.clf_epochs, help="classifier epochs")
    parser.add_argument("--eval-per-class", type=int, default=TrainSettings.eval_per_class,
                        help="CFG samples per digit for the final check (0 skips it)")
    parser.add_argument("--log-every", type=int, default=TrainSettings.log_every)
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (the package's is always)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.channels < 1 or args.clf_epochs < 1:
        parser.error("--steps, --channels and --clf-epochs must be positive.")
    settings = TrainSettings(steps=args.steps, clf_epochs=args.clf_epochs, eval_per_class=args.eval_per_class,
                             log_every=args.log_every, seed=args.seed)
    return run(args.out, UNetConfig(channels=args.channels), settings, overwrite=args.overwrite)


if __name__ == "__main__":
    run_command(main)
