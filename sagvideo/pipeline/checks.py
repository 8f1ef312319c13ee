"""Checks of settings against the input, made before any model loads (no torch needed)."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from ..models.presets import motion_frame_limit


def check_frame_settings(config: Config, num_frames: int) -> None:
    """The motion windows fit the clip of `num_frames` frames and the motion module's position table."""
    v = config.video
    limit = motion_frame_limit(config.model.preset, config.model.motion_adapter)
    if num_frames > 1 and v.window > limit:
        raise ConfigError(f"config key 'video.window' is {v.window}, but the motion module sees at most {limit} "
                          f"frames at once. To fix: use video.window={min(16, limit)} (--set video.window={min(16, limit)}).")
    if num_frames > limit and v.window == 0:
        raise ConfigError(f"{num_frames} frames cannot be sampled jointly (video.window=0): the motion module holds at "
                          f"most {limit}. To fix: sample through overlapping windows, e.g. --set video.window=16.")
    world = config.distributed.devices * config.distributed.num_nodes
    if world > 1 and num_frames > 1:
        from ..guidance.sharded_windows import group_count
        from ..guidance.windows import window_spans

        if config.guidance.enabled and config.guidance.gradient == "direct":
            raise ConfigError("config key 'guidance.gradient' is 'direct' (autograd through every window at once), "
                              "which cannot cross the processes of a distributed run. To fix: use "
                              "--gradient symplectic (exact, the default), or --devices 1.")
        windows = len(window_spans(num_frames, v.window, v.overlap))
        groups = group_count(windows, v.window_batch)
        if groups < world:
            raise ConfigError(f"{world} processes (distributed.devices x distributed.num_nodes) share out the context "
                              f"windows of this clip, but its {num_frames} frames make only {windows} window(s) of "
                              f"video.window={v.window} ({groups} network call(s) of video.window_batch="
                              f"{v.window_batch}), so a process would have nothing to do. To fix: use --devices "
                              f"{max(1, groups // config.distributed.num_nodes)} or fewer, or more frames.")
