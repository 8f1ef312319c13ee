"""`sagvideo bench decode`: memory and time of the style loss's decode + backward per chunk size.

The loss decodes `guidance.decode_chunk` frames at a time with a graph (VAE decoder + CLIP), so
its peak memory grows with the chunk while its time falls a little. Random weights at real
SD 1.5 VAE and CLIP ViT-B/32 sizes; one child process per chunk size.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .children import run_child
from .memory import PeakMemory


def measure_decode(chunk: int, frames: int, size_px: int, device: str, dtype: str, seed: int) -> dict[str, Any]:
    """One row: `LatentStyleLoss.value_and_grad` on (1, 4, frames, size/8, size/8) latents in chunks of `chunk`."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from ..guidance import GramStyleLoss, LatentStyleLoss
    from ..models import presets
    from ..models.components import resolve_device_dtype

    dev, dt = resolve_device_dtype(device, dtype)
    with torch.random.fork_rng(devices=[]), torch.device(dev):
        torch.manual_seed(seed)
        vae = torch.nn.Module.to(AutoencoderKL(**presets.vae_config("sd15")), dtype=dt).eval().requires_grad_(False)
        clip = CLIPVisionModel(CLIPVisionConfig(**presets.clip_vision_config("sd15"))).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    style = torch.rand(3, 224, 224, generator=gen)
    latents = torch.randn(1, 4, frames, size_px // 8, size_px // 8, generator=gen).to(dev)
    loss = LatentStyleLoss(lambda z: vae.decode(z.to(dt) / 0.18215).sample.float(), GramStyleLoss(clip, style),
                           chunk=chunk)
    with PeakMemory(dev) as mem:
        loss.value_and_grad(latents)
    start = time.perf_counter()
    loss.value_and_grad(latents)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    return {"chunk": chunk, "frames": frames, "size_px": size_px, "peak_mem_mb": round(mem.peak_mb, 1),
            "peak_mem_mb_per_frame_in_chunk": round(mem.peak_mb / chunk, 1), "seconds": round(seconds, 3),
            "device": str(dev), "dtype": str(dt).replace("torch.", "")}


def bench_decode(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per chunk size, each in its own process."""
    return [run_child("decode", {"chunk": c, "frames": args.frames[0], "size_px": args.size_px[0],
                                 "device": args.device, "dtype": args.dtype, "seed": args.seed})
            for c in args.chunks]
