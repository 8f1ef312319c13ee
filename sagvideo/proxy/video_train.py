"""Train the video proxy: `python -m sagvideo.proxy.video_train [--out PATH] [--steps N]`.

Epsilon prediction on 8-frame moving-digit clips (`video_data`, training digits) given their
control maps, uniform t on the proxy's DDPM
linear schedule, AdamW with warm-up and cosine decay, an EMA of the weights; saves one
checkpoint (float32, weights_only-loadable) with its record: settings, final loss, seconds,
threads. 8 frames is the model's window: longer clips go through `guidance.WindowedEps`.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..files import atomic_path
from .checkpoint import checkpoint_target, run_command
from .train import fit
from .schedule import NUM_TRAIN_TIMESTEPS, add_noise, proxy_alphas_cumprod
from .video_data import digit_split, moving_digit_clips, structure_maps
from .video_model import VideoConfig, VideoDenoiser

DEFAULT_VIDEO_CHECKPOINT = Path(__file__).with_name("proxy_video.pt")
VIDEO_TRAIN_COMMAND = "python -m sagvideo.proxy.video_train"
WINDOW = 8  # frames per training clip = the model's context window


@dataclass(frozen=True)
class VideoTrainSettings:
    steps: int = 5000
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    seed: int = 0
    threads: int = 2
    log_every: int = 100


def train_video(settings: VideoTrainSettings = VideoTrainSettings(), config: VideoConfig = VideoConfig(),
                log: Callable[[str], None] = print) -> tuple[VideoDenoiser, dict]:
    """Train; returns (EMA model in eval mode, frozen; its record)."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    digits, alphas = digit_split("train"), proxy_alphas_cumprod().float()
    model = VideoDenoiser(config)

    def batch_loss(step: int) -> torch.Tensor:
        x0, _ = moving_digit_clips(settings.batch_size, WINDOW, gen, digits)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (settings.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        return F.mse_loss(model(add_noise(x0, noise, t, alphas), t, structure_maps(x0)), noise)

    start = time.perf_counter()
    ema, final_loss = fit(model, batch_loss, settings, "video", log)
    record = {"settings": asdict(settings), "config": config.as_dict(), "window": WINDOW,
              "final_train_loss": final_loss,
              "num_parameters": sum(p.numel() for p in model.parameters()),
              "train_seconds": round(time.perf_counter() - start, 1),
              "load_average_at_end": os.getloadavg()[0], "torch_version": str(torch.__version__)}
    return ema, record


def save_video_proxy(path: str | os.PathLike, model: VideoDenoiser, record: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": 1, "config": model.config.as_dict(), "state": model.state_dict(), "meta": record}, tmp)
    return path


def load_video_proxy(path: str | os.PathLike | None = None) -> tuple[VideoDenoiser, dict]:
    """(the video model in eval mode, frozen, CPU float32; its training record)."""
    path = Path(path) if path is not None else DEFAULT_VIDEO_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"video proxy checkpoint '{path}' not found. To fix: re-create it with "
                                f"`{VIDEO_TRAIN_COMMAND}` (minutes on 2 CPU cores).")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = VideoDenoiser(VideoConfig(**payload["config"]))
    model.load_state_dict(payload["state"])
    return model.eval().requires_grad_(False), dict(payload["meta"])


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog=VIDEO_TRAIN_COMMAND, description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_VIDEO_CHECKPOINT))
    parser.add_argument("--steps", type=int, default=VideoTrainSettings.steps)
    parser.add_argument("--channels", type=int, default=VideoConfig.channels)
    parser.add_argument("--log-every", type=int, default=VideoTrainSettings.log_every)
    parser.add_argument("--threads", type=int, default=VideoTrainSettings.threads,
                        help="torch threads (1 beats 2 on a machine that other jobs load)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (the package's is always)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.channels < 1:
        parser.error("--steps and --channels must be positive.")
    out = checkpoint_target(args.out, DEFAULT_VIDEO_CHECKPOINT, args.overwrite)
    model, record = train_video(VideoTrainSettings(steps=args.steps, log_every=args.log_every, threads=args.threads),
                                VideoConfig(channels=args.channels))
    save_video_proxy(out, model, record)
    print(f"video proxy: final loss {record['final_train_loss']:.4f}, {record['train_seconds']}s; wrote {out}")
    return record


if __name__ == "__main__":
    run_command(main)
