"""The held-out judge: a second digit classifier, of another architecture, trained on digits the
guidance classifier never saw.

`bench methods` guides the class task with the proxy's CNN classifier (`DigitClassifier`), so that
classifier's accuracy on guided samples partly measures how well guidance fooled it. The judge is
an MLP (no convolutions, no weight sharing with the guide) trained only on the proxy split's test
digits (`digit_split().test_*`, 359 images the CNN and the diffusion model never trained on): the
first `JUDGE_TRAIN` of them train it, the rest measure it. `python -m sagvideo.proxy.judge`
re-creates `proxy_judge.pt` (seconds on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..files import atomic_path
from .checkpoint import checkpoint_target, run_command
from .data import digit_split
from .model import NUM_CLASSES
from .train import _shift  # random 1-pixel translation, as the guide classifier trains

DEFAULT_JUDGE = Path(__file__).with_name("proxy_judge.pt")
JUDGE_TRAIN = 259  # of the 359 held-out digits; the other 100 measure the judge
JUDGE_COMMAND = "python -m sagvideo.proxy.judge"


class DigitJudge(nn.Module):
    """An MLP on clean images: (B, 1, 16, 16) in [-1, 1] -> logits (B, 10)."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.hidden = hidden
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, hidden), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, NUM_CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def train_judge(epochs: int = 200, seed: int = 0, threads: int = 2) -> tuple[DigitJudge, dict]:
    """Train on the first JUDGE_TRAIN held-out digits; returns (judge in eval mode, its record)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    split = digit_split()
    train_x, train_y = split.test_images[:JUDGE_TRAIN], split.test_labels[:JUDGE_TRAIN]
    eval_x, eval_y = split.test_images[JUDGE_TRAIN:], split.test_labels[JUDGE_TRAIN:]
    judge = DigitJudge()
    opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=1e-2)
    for _ in range(epochs):
        judge.train()
        order = torch.randperm(len(train_y), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(judge(_shift(train_x[idx], gen)), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    judge.eval().requires_grad_(False)
    with torch.no_grad():
        held_out = float((judge(eval_x).argmax(1) == eval_y).float().mean())
        on_guide_train = float((judge(split.train_images).argmax(1) == split.train_labels).float().mean())
    record = {"architecture": "MLP 256-128-64-10", "trained_on": f"digit_split().test_*[:{JUDGE_TRAIN}]",
              "epochs": epochs, "seed": seed, "threads": threads, "eval_accuracy": held_out,
              "eval_images": len(eval_y), "accuracy_on_guide_training_digits": on_guide_train,
              "train_seconds": round(time.perf_counter() - start, 1)}
    return judge, record


def save_judge(path: str | os.PathLike, judge: DigitJudge, record: dict) -> Path:
    """Write the judge's weights and record atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": 1, "hidden": judge.hidden, "state": judge.state_dict(), "meta": record}, tmp)
    return path


def load_judge(path: str | os.PathLike | None = None) -> tuple[DigitJudge, dict]:
    """(the judge in eval mode, frozen, CPU float32; its training record)."""
    path = Path(path) if path is not None else DEFAULT_JUDGE
    if not path.is_file():
        raise FileNotFoundError(f"judge checkpoint '{path}' not found. To fix: re-create it with `{JUDGE_COMMAND}`.")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    judge = DigitJudge(payload["hidden"])
    judge.load_state_dict(payload["state"])
    return judge.eval().requires_grad_(False), dict(payload["meta"])


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog=JUDGE_COMMAND, description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_JUDGE))
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (the package's is always)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be positive.")
    out = checkpoint_target(args.out, DEFAULT_JUDGE, args.overwrite)
    judge, record = train_judge(args.epochs)
    save_judge(out, judge, record)
    print(f"judge: held-out accuracy {record['eval_accuracy']:.3f} on {record['eval_images']} digits, "
          f"{record['train_seconds']}s; wrote {out}")
    return record


if __name__ == "__main__":
    run_command(main)
