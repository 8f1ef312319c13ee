"""One rank's part of a shared clip, however the ranks were started (`launch.py`, or a batch's
processes for a job that asks for several devices): every rank runs the sharded pipeline, rank 0
alone writes the outputs.
"""

from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING, Any

from ..config import Config

if TYPE_CHECKING:  # imported when a rank runs: torch and the networks load then
    from ..outputs.job import JobFiles
    from ..pipeline.runtime import Runtime
    from .collective import Collective


def rank_config(config: Config, rank: int) -> Config:
    """The config a rank runs: no preview (its decode would be rank 0's alone); metrics on rank 0 only."""
    config = copy.deepcopy(config)
    config.output.preview = 0
    if rank != 0:
        config.output.metrics = False
    return config


def run_rank(video: str | os.PathLike, style: str | os.PathLike, prompt: str | None,
             output: str | os.PathLike | JobFiles, *, config: Config, runtime: Runtime, collective: Collective,
             depth_dir: str | os.PathLike | None = None, seed: int | None = None, progress: bool = False,
             report_extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """This rank's part of the clip over `collective`'s ranks: rank 0 writes `output` (atomically,
    through `api.stylize_to_files`) and returns the report; the other ranks write nothing and
    return None. Every rank of the collective must call it with the same inputs and `config`
    (this rank's `rank_config` is applied here)."""
    from ..api import _run_video, stylize_to_files
    from .pipeline import ShardedStylizePipeline

    def pipeline(runtime: Runtime, cfg: Config) -> ShardedStylizePipeline:
        return ShardedStylizePipeline(runtime, cfg, collective)

    own_config = rank_config(config, collective.rank)
    if collective.rank == 0:
        extra = dict(report_extra or {})
        if config.output.preview:
            extra["preview_note"] = "output.preview is off in a distributed run (the decode is shared out)"
        return stylize_to_files(video, style, prompt, output, config=own_config, runtime=runtime,
                                depth_dir=depth_dir, seed=seed, progress=progress, report_extra=extra,
                                pipeline_class=pipeline)
    _run_video(video, style, prompt, own_config, runtime, depth_dir, None, seed, None, False,
               pipeline_class=pipeline)
    return None
