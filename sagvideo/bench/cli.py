"""The `sagvideo bench` arguments and dispatch; imports nothing heavy until a benchmark runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..defaults import GRADIENT_METHODS
from . import methods

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

COLUMNS = {
    "guidance": ["method", "n", "peak_mem_mb", "seconds", "eps_evals", "vjps", "grad_rel_err"],
    "pipeline": ["preset", "config", "frames", "guided", "size", "steps", "guided_steps", "network_evaluations",
                 "branch_evaluations", "vjps", "evaluations_vs_first", "windows", "devices", "windows_per_rank",
                 "communication_share", "speedup", "guided_passes", "seconds_per_frame",
                 "peak_mem_mb", "saved_peak_mb", "guided_over_unguided", "adapter_seconds", "adapter_mb",
                 "adapter_share"],
    "methods": ["task", "method", "setting", "n", "knobs", "loss_mean", "loss_std", "judge_accuracy", "accuracy",
                "evals", "vjps", "peak_mem_mb", "seconds"],
    "video-proxy": ["method", "setting", "style_loss", "warp_error", "warp_error_sq", "warp_error_reversed", "change",
                    "flicker", "window_0_loss",
                    "window_1_loss", "window_gap", "evals", "vjps", "seconds"],
    "decode": ["chunk", "frames", "size_px", "peak_mem_mb", "peak_mem_mb_per_frame_in_chunk", "seconds"],
    "memory": ["preset", "frames", "size", "dtype", "part", "lever", "saved_mb", "unet_mb", "motion_mb", "attention_mb",
               "resnets_mb", "controlnet_mb", "decoder_mb", "clip_mb", "largest_block_mb", "cuda_peak_mb",
               "peak_mb", "vjp_peak_mb", "loss_peak_mb", "weights_mb", "device", "error"],
}
DEFAULT_STEPS = {"guidance": 25, "pipeline": 25, "methods": methods.STEPS, "decode": 0, "memory": 0, "video-proxy": 10}
DEFAULT_SEEDS = {"methods": methods.SEEDS, "video-proxy": 16}


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_cell(r.get(c)).ljust(widths[c]) for c in columns))


def run_bench(args: argparse.Namespace) -> int:
    if args.steps is None and not (args.what == "pipeline" and args.configs):  # configs bring their own steps
        args.steps = DEFAULT_STEPS[args.what]
    if args.seeds is None:
        args.seeds = DEFAULT_SEEDS.get(args.what, methods.SEEDS)
    if args.what == "guidance":
        from .guidance import bench_guidance as bench
    elif args.what == "methods":
        from .method_sweep import bench_methods as bench
    elif args.what == "decode":
        from .decode import bench_decode as bench
    elif args.what == "video-proxy":
        from .video_proxy import bench_video_proxy as bench
    elif args.what == "memory":
        from .memory_parts import bench_memory as bench
    else:
        from .pipeline import bench_pipeline as bench
    args.progress = lambda line: print(line, file=sys.stderr, flush=True)
    rows = bench(args)
    print_table(rows, COLUMNS[args.what])
    if args.json:
        from ..files import atomic_write_bytes

        atomic_write_bytes(Path(args.json), json.dumps(rows, indent=2).encode())
    return 0


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["guidance", "pipeline", "methods", "decode", "memory", "video-proxy"])
    p.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8], help="guidance: clean-estimate evaluations")
    p.add_argument("--methods", nargs="+", default=list(GRADIENT_METHODS), choices=GRADIENT_METHODS)
    p.add_argument("--size", default="small", choices=["tiny", "small", "sd15"], help="guidance: UNet size")
    p.add_argument("--latent", type=int, default=32, help="guidance: latent side (64 = 512 px)")
    p.add_argument("--t", type=int, default=600, help="guidance: timestep of the guided step")
    p.add_argument("--device", default="auto", help="memory: meta (default: counts shapes, no memory), cpu or cuda")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", default=str(SAMPLES / "clip.mp4"), help="pipeline: input clip")
    p.add_argument("--style", default=str(SAMPLES / "style.png"), help="pipeline: style image")
    p.add_argument("--frames", type=int, nargs="+", default=[16], help="pipeline: frame counts, one row each")
    p.add_argument("--steps", type=int, default=None,
                   help=f"pipeline, methods: sampling steps (default 25 for pipeline, {methods.STEPS} for methods)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"methods, video-proxy: samples (seeds 0..N-1) per row (default {methods.SEEDS}; video-proxy 16)")
    p.add_argument("--size-px", dest="size_px", type=int, nargs="+", default=[512],
                   help="pipeline (sd15), decode: short side (the first); memory: one row set per size")
    p.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4], help="decode: frames per decode chunk")
    p.add_argument("--presets", nargs="+", choices=["tiny", "sd15"],
                   help="pipeline: model sizes (default tiny); memory: (default sd15)")
    p.add_argument("--ratio", action="store_true", help="pipeline: also run unguided, report guided/unguided time")
    p.add_argument("--adapter-cost", dest="adapter_cost", action="store_true",
                   help="pipeline: also time each row without the image prompt, report its share and MB")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="pipeline: config overrides")
    p.add_argument("--configs", nargs="+", metavar="NAME",
                   help="pipeline: shipped configs (e.g. video lightning lcm) whose sampling and guidance sections run "
                        "on the preset's networks, one row set each")
    p.add_argument("--devices", type=int, nargs="+", default=[1],
                   help="pipeline: processes sharing each clip's windows, one row each (e.g. 1 2)")
    p.add_argument("--clip-frames", dest="clip_frames", type=int, default=None,
                   help="video-proxy: frames per clip (default 12: two 8-frame windows)")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--plot", help="methods, video-proxy: write the Pareto plot (PNG) here")
    p.set_defaults(handler=run_bench)
