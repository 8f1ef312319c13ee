"""`sagvideo bench guidance`: memory, time and cost of one guidance gradient per (method, n).

Every (method, n) runs in a fresh child process so one run's allocations cannot hide another's;
peak memory is what the gradient adds above the weights and inputs.
"""

from __future__ import annotations

import argparse
import time

import torch

from .children import run_child
from .memory import PeakMemory


def latent_gram_loss(reference: torch.Tensor):
    """A style-like loss on latents (no VAE/CLIP): ||Gram(x0) - Gram(ref)||_F, shape-agnostic."""

    def gram_of(x: torch.Tensor) -> torch.Tensor:
        f = x.float().flatten(2)  # (B, C, N)
        return f @ f.transpose(1, 2) / f.shape[-1]

    ref = gram_of(reference)
    return lambda x0: (gram_of(x0) - ref).norm()


def measure_guidance(method: str, n: int, size: str, latent: int, device: str, dtype: str, t: int, seed: int) -> dict:
    """One (method, n) row: peak memory, seconds, counts, and the gradient itself (for errors)."""
    from ..guidance import GradientCost, sag_gradient
    from ..models.components import alphas_cumprod_from_config, resolve_device_dtype, sd_unet2d
    from ..models.presets import scheduler_config

    dev, dt = resolve_device_dtype(device, dtype)
    unet = sd_unet2d(size, seed=seed, device=dev, dtype=dt)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, unet.config.in_channels, latent, latent, generator=gen).to(dev, dt)
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=gen).to(dev, dt)
    loss = latent_gram_loss(torch.randn(x.shape, generator=gen).to(dev))
    alphas = alphas_cumprod_from_config(scheduler_config())  # SD 1.5's training schedule

    def eps_fn(z, step):
        return unet(z, step, encoder_hidden_states=text).sample

    cost = GradientCost()
    with PeakMemory(dev) as mem:
        grad, _ = sag_gradient(eps_fn, x, t, alphas, loss, n=n, method=method, cost=cost)
    timings = []
    for _ in range(2):  # warm runs for the time; the first run above measured memory
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        sag_gradient(eps_fn, x, t, alphas, loss, n=n, method=method)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        timings.append(time.perf_counter() - start)
    return {"method": method, "n": n, "peak_mem_mb": round(mem.peak_mb, 1), "seconds": round(min(timings), 4),
            "eps_evals": cost.total_evals, "eps_evals_no_graph": cost.eps_evals,
            "eps_evals_graph": cost.eps_evals_graph, "vjps": cost.vjps, "size": size, "latent": latent,
            "device": str(dev), "dtype": str(dt).replace("torch.", ""), "grad": grad.float().cpu().flatten().tolist()}


def _child(args: argparse.Namespace, method: str, n: int) -> dict:
    return run_child("guidance", {"method": method, "n": n, "size": args.size, "latent": args.latent,
                                  "device": args.device, "dtype": args.dtype, "t": args.t, "seed": args.seed})


def bench_guidance(args: argparse.Namespace) -> list[dict]:
    """Every (method, n), each in its own process; relative error against direct at the same n."""
    rows = [_child(args, m, n) for n in args.n for m in args.methods]
    direct = {r["n"]: torch.tensor(r["grad"]) for r in rows if r["method"] == "direct"}
    for r in rows:
        g = torch.tensor(r.pop("grad"))
        ref = direct.get(r["n"])
        r["grad_rel_err"] = float((g - ref).norm() / ref.norm()) if ref is not None else None
        r["evals_vs_2n_minus_1_plus_n_vjp"] = f"{r['eps_evals']} evals + {r['vjps']} VJPs vs {2 * r['n'] - 1} + {r['n']}"
    return rows
