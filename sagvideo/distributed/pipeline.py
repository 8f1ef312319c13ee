"""`StylizePipeline` with its context windows and its final decode shared out over ranks.

Every rank builds this pipeline on the same inputs and runs every stage in the same order. The
sampler is unchanged: only the windowed noise predictor is the sharded one, so each rank's
sampler sees the same blended predictions and VJPs, bitwise, and keeps the same x. What is
computed once per clip (the style loss's decode and Gram matrices, the DDIM updates, the noise,
drawn on the CPU from the seed) is computed on every rank alike: cheaper than sending it.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import torch

from ..pipeline.cfg_split import SplitCFGEps
from ..config import Config
from ..pipeline.denoiser import DepthControlledEps, decode_latents
from ..guidance.sharded_windows import ShardedWindowedEps, windows_per_rank
from ..guidance.windows import ContextWindows
from ..pipeline.stylize import StylizePipeline
from ..results import StylizeResult
from ..pipeline.runtime import Runtime
from ..video.depth import clip_depth
from .collective import Collective, chunk_spans, split_chunks


class ShardedDepth:
    """A depth estimator whose batches of frames (its own `batch_size`, so each batch is estimated as
    on one device) run on the ranks round-robin; every rank gets all the maps, in frame order."""

    def __init__(self, estimator: Any, collective: Collective):
        self.estimator, self.name, self.collective = estimator, estimator.name, collective
        self.batch = getattr(estimator, "batch_size", 4)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (F, H, W, 3) -> raw depth float32 (F, H, W), as the wrapped estimator."""
        spans = chunk_spans(len(frames), self.batch)
        if len(spans) < self.collective.world:
            return np.asarray(self.estimator(frames), dtype=np.float32)
        return split_chunks(self.collective, spans,
                            lambda a, b: np.asarray(self.estimator(frames[a:b]), dtype=np.float32), "depth")


class ShardedStylizePipeline(StylizePipeline):
    """One rank's part of a clip sampled by `collective.world` ranks (see the module doc)."""

    def __init__(self, runtime: Runtime, config: Config, collective: Collective):
        super().__init__(runtime, config)
        self.collective = collective
        self.shards: list[ShardedWindowedEps] = []
        self.decode_split = False

    def _windowed(self, eps: DepthControlledEps, windows: ContextWindows, split: bool = False):
        """The sharded windows of the clip (the one-device `WindowedEps` groups, dealt round-robin)."""
        splitter = SplitCFGEps(eps) if split else None
        sharded = ShardedWindowedEps(eps.predict, windows, rank=self.collective.rank, world=self.collective.world,
                                     exchange=self.collective.exchange, batch=self.config.video.window_batch,
                                     window_vjp=splitter.window_vjp if splitter else None, on_remote=eps.on_call)
        self.shards.append(sharded)
        return sharded

    def prepare_depth(self, frames: np.ndarray, *, cache_dir: Any = None, progress: bool = False) -> np.ndarray:
        """uint8 (F, H, W, 3) -> clip-normalised depth (F, H, W): the estimator's batches dealt to ranks.

        No depth cache: whether a rank finds the cached maps must not decide whether it joins the
        collective (the ranks of several machines do not share a folder)."""
        estimator = ShardedDepth(self.runtime.depth_estimator(), self.collective)
        return clip_depth(frames, estimator, None)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Clean latents (1, C, F, h, w) -> uint8 (F, H, W, 3): the one-device decode chunks, dealt to ranks.

        Each chunk is decoded exactly as on one device (same frames per VAE call), so the frames are
        the same bytes; with fewer chunks than ranks every rank decodes the whole clip."""
        chunk = self.config.guidance.decode_chunk
        spans = chunk_spans(latents.shape[2], chunk)
        self.decode_split = len(spans) >= self.collective.world
        if not self.decode_split:
            return super().decode(latents)
        return split_chunks(self.collective, spans,
                            lambda a, b: decode_latents(self.components, latents[:, :, a:b], chunk), "decode")

    def __call__(self, *args: Any, **kwargs: Any) -> StylizeResult:
        result = super().__call__(*args, **kwargs)
        result.report["distributed"] = self.describe(result.report.get("seconds", {}))
        return result

    def describe(self, seconds: dict[str, float]) -> dict[str, Any]:
        """The report's `distributed` entry (collective: every rank calls it): the ranks, their share of
        the windows, their seconds per stage and the seconds spent exchanging results (waiting for a
        slower rank included); `communication_share` = the most exchange seconds / sampling seconds."""
        c = self.collective
        mine = {"rank": c.rank, "host": socket.gethostname(), "device": str(self.components.device),
                "threads": torch.get_num_threads(), "stage_seconds": dict(seconds),
                "windows": [shard.times.as_dict() for shard in self.shards],
                "exchange_seconds": round(sum(s.times.exchange["eps"] + s.times.exchange["vjp"] for s in self.shards), 4),
                "decode_exchange_seconds": c.seconds.get("decode", 0.0),
                "depth_exchange_seconds": c.seconds.get("depth", 0.0)}
        ranks = c.objects(mine)
        windows = self.shards[0].windows if self.shards else None
        sampling = max(r["stage_seconds"].get("sampling", 0.0) for r in ranks) or None
        return {
            "devices": c.world, "num_nodes": self.config.distributed.num_nodes,
            "windows_per_rank": windows_per_rank(windows, self.config.video.window_batch, c.world) if windows else None,
            "decode_split": self.decode_split, "depth_split": "depth" in c.seconds,
            "communication_share": (round(max(r["exchange_seconds"] for r in ranks) / sampling, 4)
                                    if sampling else None),
            "ranks": ranks,
        }
