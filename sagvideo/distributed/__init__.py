"""One clip sampled by several processes (GPUs, machines) through Lightning Fabric.

    sagvideo stylize in.mp4 --style s.png -o out.mp4 --devices 4 [--num-nodes 2] [--accelerator gpu]

Every rank reads the clip and builds the same pipeline; at every network evaluation each rank
predicts its share of the context windows (`guidance.sharded_windows`), the predictions are
gathered and blended on every rank in the one-device order, so the output is the same bytes as
one device for the same seed. Rank 0 writes the outputs. `launch.py` starts the ranks and
turns a failed rank into one message; `rank.py` is one rank's part (also run by a batch job
with `devices: N`, `batch/shared.py`); `pipeline.py` is the sharded pipeline; `collective.py`
the all-gathers.
"""

from __future__ import annotations

import os
from typing import Any

from .launch import RankFailed, stylize_to_files_distributed

__all__ = ["RankFailed", "stylize_to_files", "stylize_to_files_distributed"]


def stylize_to_files(video: str | os.PathLike, style: str | os.PathLike, prompt: str | None, output: Any, *,
                     config: Any = None, **options: Any) -> dict[str, Any] | None:
    """`api.stylize_to_files` in one process, or over the processes `config.distributed` asks for.

    The package's `sagvideo.stylize_to_files` and the command line's `stylize` call this. With
    several processes (call it from a script: the launcher re-runs the script for each extra
    rank) rank 0 writes the outputs and returns the report, the other ranks return None; each
    rank builds its own networks, so `runtime` and `on_step` are refused there.
    """
    from ..api import stylize_to_files as in_one_process
    from ..config import load_config, wants_distributed
    from ..errors import ConfigError

    config = config or load_config()
    if not wants_distributed(config):
        return in_one_process(video, style, prompt, output, config=config, **options)
    unsupported = sorted(k for k in ("runtime", "on_step", "pipeline_class") if options.get(k) is not None)
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)} cannot be given to a run over several processes (each rank "
                          f"builds its own networks). To fix: leave them out, or set distributed.devices to 1.")
    options = {k: v for k, v in options.items() if k not in ("runtime", "on_step", "pipeline_class")}
    return stylize_to_files_distributed(video, style, prompt, output, config=config, **options)
