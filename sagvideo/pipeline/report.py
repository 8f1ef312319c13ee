"""What a run records about itself: stage timings, peak memory, and the report skeleton."""

from __future__ import annotations

import platform
import resource
import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from ..config import Config
from ..method_registry import METHODS
from ..models.components import Components
from ..version import package_version

TINY_LABEL = "tiny preset: random-weight models, the output shows the plumbing, not a real stylization"


class Stopwatch:
    """Seconds per named stage, for the report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak memory so far: CUDA allocator peak on a GPU, and the process's peak resident size."""
    out = {"process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def base_report(config: Config, components: Components, seed: int, kind: str) -> dict[str, Any]:
    """Resolved config, models, versions, device and seed; `status` is "running" until written.

    `models` holds the ids per role, `depth`, `preset`, `sources` (per role: source, kind and
    `sha256_16` of the weights read, "random weights" for random presets), `loras` (path, scale,
    sha256_16, target) and `levers` (the memory levers in effect, e.g. "attention_slicing").
    """
    import diffusers
    import transformers

    resolved = config.to_dict()
    if components.preset != "pretrained":  # what ran, not the hub ids the config would otherwise load
        resolved["model"].update({role: name for role, name in components.ids.items() if name is not None})
        resolved["model"].update(vae="", single_file_config="")  # nothing was loaded from files
    report: dict[str, Any] = {
        "status": "running",
        "kind": kind,
        "config": resolved,
        "models": dict(components.ids, depth=config.model.depth, preset=components.preset,
                       sources=components.sources, loras=components.loras, levers=components.levers),
        "device": str(components.device),
        "dtype": str(components.dtype).replace("torch.", ""),
        "seed": seed,
        "versions": {"sagvideo": package_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
    }
    g = config.guidance
    if g.enabled:
        method = METHODS[g.method]
        report["guidance_method"] = {"name": method.name, "paper": method.paper, "uses": sorted(method.uses),
                                     "passes": method.passes(g.passes) if "passes" in method.uses else None}
    if components.preset == "tiny":
        report["label"] = TINY_LABEL
    return report
