"""The image prompt's price in `sagvideo bench pipeline`: load and embedding seconds, weights and run-time share.

In the row's own child process, after the row's run (which loads everything): runs with
`ip_adapter.scale` 0 and with the row's scale, same inputs, interleaved (off, on, off, on), one
thread each, timed in process CPU seconds on a CPU (robust to other work on a shared machine;
wall clock is not) and wall seconds on a GPU; the fastest of each is kept. The share is (CPU seconds with - without) / without
over the whole job (image prompt, depth, sampling, decode): what the adapter costs once loaded.
"""

from __future__ import annotations

from typing import Any

import time

import numpy as np
import torch


def adapter_weights_mb(runtime: Any) -> float:
    """MB of the loaded IP-Adapter layers and image encoder (the encoder counts while it is held)."""
    models = runtime.image_prompt_models()
    parts = [models.layers.projection, *models.layers.processors.values()]
    parts += [models.encoder] if models.encoder is not None else []
    return round(sum(p.numel() * p.element_size() for m in parts for p in m.parameters()) / 2**20, 1)


def adapter_cost(runtime: Any, config: Any, frames: np.ndarray, style: torch.Tensor) -> dict[str, Any]:
    """{"load_seconds", "embed_seconds", "weights_mb", "job_seconds_with", "job_seconds_without", "clock",
    "share"} for the pipeline of `config` on `frames` (F, H, W, 3) at model size."""
    from ..config import merge
    from ..pipeline.stylize import StylizePipeline

    if config.ip_adapter.scale == 0:
        return {}
    seconds: dict[str, float] = {"without": float("inf"), "with": float("inf")}
    embed = 0.0
    cuda = runtime.components.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time  # GPU work is not process CPU time
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for label, scale in (("without", 0.0), ("with", config.ip_adapter.scale)) * 2:
            job = merge(config, {"ip_adapter.scale": scale, "output.metrics": False})
            start = clock()
            report = StylizePipeline(runtime, job)(frames, style, "a scene, painted").report
            if cuda:
                torch.cuda.synchronize()
            seconds[label] = min(seconds[label], clock() - start)
            embed = report["ip_adapter"].get("embed_seconds", 0.0) if scale else embed
    finally:
        torch.set_num_threads(threads)
    return {"load_seconds": round(runtime.image_prompt_models().load_seconds, 4), "embed_seconds": embed,
            "weights_mb": adapter_weights_mb(runtime),
            "job_seconds_with": round(seconds["with"], 4), "job_seconds_without": round(seconds["without"], 4),
            "clock": "wall" if cuda else "process CPU",
            "share": round(seconds["with"] / seconds["without"] - 1, 4)}
