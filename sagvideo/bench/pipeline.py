"""`sagvideo bench pipeline`: seconds per frame, peak memory and costs of whole stylizations.

Every row (preset x frames x guided or not) runs in a fresh child process. Peak memory is what
the run adds above the loaded networks: the CUDA allocator's peak, or the sampled resident size
on CPU. Each row also carries the run's memory account (`memory`: peaks per stage and the bytes
saved for backward per part, see `memory_account`); `saved_peak_mb` is its peak. The guided/unguided ratio of sampling time is computed within one run.

`--configs NAME ...` adds a row set per shipped config: its `sampling` and `guidance` sections (the
scheduler, steps, CFG, n, ...) on the preset's networks, its own steps unless `--steps` is given.
Each row counts its network evaluations (window calls; `branch_evaluations` counts CFG branches)
and VJPs; guided rows carry their evaluations over the first config's (`evaluations_vs_first`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .children import run_child
from .memory import PeakMemory

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _runtime(preset: str, config: Any, device: str):
    from ..models.components import random_components
    from ..pipeline.runtime import Runtime

    if preset == "tiny":
        runtime = Runtime.from_config(config)
    else:  # the real SD 1.5 + AnimateDiff + ControlNet sizes, random weights: no download
        runtime = Runtime.from_components(random_components("sd15", device=device, dtype=config.model.dtype))
    runtime.components  # loaded outside the measurement
    return runtime


def config_sections(name: str | None) -> dict[str, Any]:
    """The `sampling` and `guidance` sections of shipped config `name` as overrides ({} for None)."""
    import dataclasses

    from ..config import load_config

    if name is None:
        return {}
    named = load_config(name)
    return {"sampling": dataclasses.asdict(named.sampling), "guidance": dataclasses.asdict(named.guidance)}


def _costs(report: dict[str, Any], config: Any) -> dict[str, Any]:
    """Network evaluations (window calls and CFG branches) and VJPs of one run, with its sampler."""
    from ..schedule_settings import cfg_off

    calls = report["evaluations"]["window_evaluations"]
    branches = 1 if cfg_off(config.sampling.cfg_scale) else 2
    vjps = sum(r.get("cost", {}).get("vjps", 0) for r in report["guided_steps"])
    return {"scheduler": config.sampling.scheduler, "cfg_scale": config.sampling.cfg_scale, "n": config.guidance.n,
            "guided_steps": report["sampler"]["guided_steps"], "network_evaluations": calls,
            "branch_evaluations": calls * branches, "vjps": vjps}


def measure_pipeline(preset: str, frames: int, steps: int | None, guided: bool, size_px: int, device: str,
                     video: str, style: str, overrides: dict[str, Any], adapter: bool = False,
                     config_name: str | None = None, devices: int = 1) -> dict[str, Any] | None:
    """One row: one stylization of `frames` frames of `video`; seconds per stage, memory, evaluations,
    the image prompt's load + embedding seconds and MB; with `adapter`, its share of a job's time
    once loaded (see `adapter.adapter_cost`). With `devices` > 1 the clip's windows are shared out
    over that many processes (`sagvideo.distributed`); rank 0 returns the row, the others None."""
    import torch

    from .adapter import adapter_cost, adapter_weights_mb

    from ..api import read_video_clip
    from ..config import load_config
    from ..images import load_style_image
    from ..pipeline.stylize import StylizePipeline

    settings = {**config_sections(config_name), "video.frames": frames, "model.depth": "tiny",
                "guidance.enabled": guided, "model.device": device, "distributed.devices": devices, **overrides}
    if steps is not None:
        settings["sampling.steps"] = steps
    if preset != "tiny":
        settings["video.size"] = size_px
    config = load_config("tiny" if preset == "tiny" else None, settings)
    ranks = sharded_pipeline(config) if devices > 1 else None
    if ranks:
        config.model.device = device = str(ranks[0].device)  # this rank's own GPU (or the CPU)
    runtime = _runtime(preset, config, device)
    clip = read_video_clip(video, config)
    pipe = ranks[1](runtime, config) if ranks else StylizePipeline(runtime, config)
    dev = runtime.components.device
    style_image = load_style_image(style)
    with PeakMemory(dev) as mem:
        result = pipe(clip.frames, style_image, "a scene, painted")
    rep = result.report
    if ranks:
        for proc in ranks[2]:
            proc.wait()
        if ranks[0].global_rank != 0:
            return None
    cost = adapter_cost(runtime, config, clip.frames, style_image) if adapter else {}
    on = rep["ip_adapter"].get("enabled", True)
    seconds = rep["seconds"]
    work = seconds["sampling"] + seconds["decode"] + seconds.get("depth", 0.0)
    return {"preset": preset, "config": config_name, "frames": frames, "guided": guided, "size": list(clip.model_size),
            "steps": config.sampling.steps, **_costs(rep, config),
            "windows": rep["windows"]["count"], "guided_passes": len(rep["guided_steps"]),
            "seconds_per_frame": round(work / frames, 4), "sampling_seconds": seconds["sampling"],
            "seconds": seconds, "peak_mem_mb": round(mem.peak_mb, 1), "peak_memory": rep["peak_memory"],
            "evaluations": rep["evaluations"], "device": rep["device"], "dtype": rep["dtype"],
            "saved_peak_mb": rep["memory"]["saved_peak_mb"], "memory": rep["memory"],
            "metrics": {k: v for k, v in rep.get("metrics", {}).items() if k != "per_frame"},
            "torch": torch.__version__, "overrides": overrides, "ip_adapter": dict(rep["ip_adapter"], cost=cost),
            "adapter_seconds": seconds.get("image_prompt"), "adapter_mb": adapter_weights_mb(runtime) if on else None,
            "adapter_share": cost.get("share"), "threads": torch.get_num_threads(), **_distributed_columns(rep)}


def sharded_pipeline(config: Any):
    """(fabric, pipeline factory, started processes) for a row over `distributed.devices` processes."""
    from ..distributed.launch import start_ranks
    from ..distributed.pipeline import ShardedStylizePipeline

    fabric, collective, procs = start_ranks(config)
    return fabric, lambda runtime, cfg: ShardedStylizePipeline(runtime, cfg, collective), procs


def _distributed_columns(report: dict[str, Any]) -> dict[str, Any]:
    d = report.get("distributed")
    if d is None:
        return {"devices": 1}
    return {"devices": d["devices"], "windows_per_rank": d["windows_per_rank"],
            "communication_share": d["communication_share"],
            "rank_sampling_seconds": [r["stage_seconds"].get("sampling") for r in d["ranks"]],
            "rank_exchange_seconds": [r["exchange_seconds"] for r in d["ranks"]]}


def bench_pipeline(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows for every preset x config x frame count x device count, guided and (with --ratio)
    unguided; ratios, evaluations against the first config and multi-process speedups filled in."""
    from ..config import parse_set_items

    overrides = parse_set_items(args.set)
    rows = []
    for preset in args.presets or ["tiny"]:
        for name in getattr(args, "configs", None) or [None]:
            for frames in args.frames:
                for devices in args.devices:
                    for guided in ([True, False] if args.ratio else [True]):
                        rows.append(run_child("pipeline", {
                            "preset": preset, "frames": frames, "steps": args.steps, "guided": guided,
                            "size_px": args.size_px[0], "device": args.device, "video": args.video,
                            "style": args.style, "overrides": overrides, "adapter": args.adapter_cost,
                            "config_name": name, "devices": devices}))
    for row in rows:
        def same(r: dict[str, Any], **kw: Any) -> bool:
            return (r["preset"] == row["preset"] and r["frames"] == row["frames"]
                    and all(r[k] == v for k, v in kw.items()))

        twin = next((r for r in rows if same(r, config=row["config"], devices=row["devices"], guided=False)), None)
        if row["guided"] and twin is not None:
            row["guided_over_unguided"] = round(row["sampling_seconds"] / twin["sampling_seconds"], 2)
        first = next((r for r in rows if same(r, devices=row["devices"], guided=row["guided"])), None)
        if row["config"] is not None and first is not None:
            row["evaluations_vs_first"] = round(row["branch_evaluations"] / first["branch_evaluations"], 3)
        single = next((r for r in rows if same(r, config=row["config"], devices=1, guided=row["guided"])), None)
        if single is not None and row["devices"] > 1:
            row["speedup"] = round(single["seconds_per_frame"] / row["seconds_per_frame"], 2)
    return rows
