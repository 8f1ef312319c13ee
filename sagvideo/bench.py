"""`sagvideo bench guidance | pipeline`: measured costs, one process per measurement.

Memory is measured in a fresh child process per (method, n) so one run's allocations cannot
hide another's: on CUDA the allocator's peak, on the CPU the peak resident size sampled every
millisecond, both minus the memory held before the gradient call (weights, inputs).
Ratios between rows of one run are what to compare; absolute seconds depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from .errors import SagVideoError


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator peak, or sampled CPU RSS."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self.base, self._max, self._stop = _rss_mb(), _rss_mb(), threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, _rss_mb())
            time.sleep(0.001)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self._max, _rss_mb()) - self.base


def latent_gram_loss(reference: torch.Tensor):
    """A style-like loss on latents (no VAE/CLIP): ||Gram(x0) - Gram(ref)||_F, shape-agnostic."""

    def gram_of(x: torch.Tensor) -> torch.Tensor:
        f = x.float().flatten(2)  # (B, C, N)
        return f @ f.transpose(1, 2) / f.shape[-1]

    ref = gram_of(reference)
    return lambda x0: (gram_of(x0) - ref).norm()


def measure_guidance(method: str, n: int, size: str, latent: int, device: str, dtype: str, t: int, seed: int) -> dict:
    """One (method, n) row: peak memory, seconds, counts, and the gradient itself (for errors)."""
    from .guidance import GradientCost, sag_gradient
    from .models.components import alphas_cumprod_from_config, resolve_device_dtype, sd_unet2d
    from .models.presets import scheduler_config

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
    cmd = [sys.executable, "-m", "sagvideo.bench", "--one", method, str(n), args.size, str(args.latent),
           args.device, args.dtype, str(args.t), str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SagVideoError(f"benchmark child for {method} n={n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_guidance(args: argparse.Namespace) -> list[dict]:
    """Every (method, n), each in its own process; relative error against direct at the same n."""
    rows = [_child(args, m, n) for n in args.n for m in args.methods]
    direct = {r["n"]: torch.tensor(r["grad"]) for r in rows if r["method"] == "direct"}
    for r in rows:
        g = torch.tensor(r.pop("grad"))
        ref = direct.get(r["n"])
        r["grad_rel_err"] = float((g - ref).norm() / ref.norm()) if ref is not None else None
        r["evals_vs_2n_plus_n_vjp"] = f"{r['eps_evals']} evals + {r['vjps']} VJPs vs {2 * r['n']} + {r['n']}"
    return rows


def bench_pipeline(args: argparse.Namespace) -> list[dict]:
    """Seconds per frame and peak memory of a whole stylization, tiny preset and (on CUDA) SD sizes."""
    from .config import load_config
    from .models.components import random_components
    from .pipeline import Runtime, stylize_video

    video = Path(args.video)
    style = Path(args.style)
    rows = []
    presets = args.presets or (["tiny", "sd15"] if torch.cuda.is_available() else ["tiny"])
    for preset in presets:
        overrides = {"video.frames": args.frames, "sampling.steps": args.steps, "model.depth": "tiny"}
        if preset == "tiny":
            config = load_config("tiny", overrides)
            runtime = Runtime.from_config(config)
        else:  # the real SD 1.5 + AnimateDiff + ControlNet sizes, random weights: no download
            overrides.update({"video.size": args.size_px, "model.device": args.device})
            config = load_config(None, overrides)
            components = random_components("sd15", device=args.device, dtype=config.model.dtype)
            runtime = Runtime(components, "tiny")
        if runtime.components.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result = stylize_video(video, style, "a scene, painted", config=config, runtime=runtime)
        rep = result.report
        sampling = rep["seconds"]["sampling"] + rep["seconds"]["decode"]
        rows.append({"preset": preset, "frames": len(result.frames), "size": rep["input"]["model_size"],
                     "steps": args.steps, "guided_passes": len(rep["guided_steps"]),
                     "seconds_per_frame": round(sampling / len(result.frames), 4),
                     "seconds": rep["seconds"], "peak_memory": rep["peak_memory"], "device": rep["device"]})
    return rows


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c)).ljust(widths[c]) for c in columns))


def run_bench(args: argparse.Namespace) -> int:
    if args.what == "guidance":
        rows = bench_guidance(args)
        print_table(rows, ["method", "n", "peak_mem_mb", "seconds", "eps_evals", "vjps", "grad_rel_err"])
    else:
        rows = bench_pipeline(args)
        print_table(rows, ["preset", "frames", "size", "steps", "guided_passes", "seconds_per_frame", "peak_memory"])
    if args.json:
        from .files import atomic_path

        with atomic_path(Path(args.json)) as tmp:
            tmp.write_text(json.dumps(rows, indent=2))
    return 0


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["guidance", "pipeline"])
    p.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8], help="clean-estimate evaluations")
    p.add_argument("--methods", nargs="+", default=["symplectic", "direct", "adjoint"],
                   choices=["symplectic", "direct", "adjoint"])
    p.add_argument("--size", default="small", choices=["tiny", "small", "sd15"], help="UNet size (guidance)")
    p.add_argument("--latent", type=int, default=32, help="latent side (64 = 512 px)")
    p.add_argument("--t", type=int, default=600, help="timestep of the guided step")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", default=str(Path(__file__).resolve().parent.parent / "samples" / "clip.mp4"))
    p.add_argument("--style", default=str(Path(__file__).resolve().parent.parent / "samples" / "style.png"))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--size-px", dest="size_px", type=int, default=512, help="short side for the SD-size run")
    p.add_argument("--presets", nargs="+", choices=["tiny", "sd15"],
                   help="pipeline: which model sizes (default tiny, plus sd15 on CUDA)")
    p.add_argument("--json", help="write the records here")
    p.set_defaults(handler=run_bench)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        method, n, size, latent, device, dtype, t, seed = sys.argv[2:10]
        row = measure_guidance(method, int(n), size, int(latent), device, dtype, int(t), int(seed))
        print(json.dumps(row))
