"""The image prompt's price in `sagvideo bench pipeline`: load and embedding seconds, weights and run-time share.

In the row's own child process, after the row's run (which loads everything): one run with
`ip_adapter.scale` 0 and one with the row's scale, same inputs, back to back. The share is
(seconds with - seconds without) / seconds without, over the whole job (image prompt, depth,
sampling, decode): what the adapter costs once loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _mb(modules: list[torch.nn.Module]) -> float:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters()) / 2**20


def _job_seconds(report: dict[str, Any]) -> float:
    return sum(v for k, v in report["seconds"].items() if k not in ("load_models", "metrics"))


def adapter_cost(runtime: Any, config: Any, frames: np.ndarray, style: torch.Tensor) -> dict[str, Any]:
    """{"load_seconds", "embed_seconds", "weights_mb", "job_seconds_with", "job_seconds_without",
    "share"} for the pipeline of `config` on `frames` (F, H, W, 3) at model size."""
    from ..config import merge
    from ..pipeline import StylizePipeline

    if config.ip_adapter.scale == 0:
        return {}
    seconds = {}
    for label, scale in (("without", 0.0), ("with", config.ip_adapter.scale)):
        job = merge(config, {"ip_adapter.scale": scale, "output.metrics": False})
        report = StylizePipeline(runtime, job)(frames, style, None).report
        seconds[label] = _job_seconds(report)
        if scale:
            embed = report["ip_adapter"]["embed_seconds"]
    models = runtime.image_prompt_models()
    parts = [models.layers.projection, *models.layers.processors.values()]
    return {"load_seconds": round(models.load_seconds, 4), "embed_seconds": embed,
            "weights_mb": round(_mb(parts + ([models.encoder] if models.encoder is not None else [])), 1),
            "job_seconds_with": round(seconds["with"], 4), "job_seconds_without": round(seconds["without"], 4),
            "share": round(seconds["with"] / seconds["without"] - 1, 4)}
