"""The high-level library API: paths in, results (or files) out.

    stylize_video(video, style, prompt=None, config=...)         -> StylizeResult (frames at source size)
    stylize_to_files(video, style, prompt, output, config=...)   -> report; mp4 + report + contact sheet
    stylize_image(prompt, style, config=...)                     -> StylizeResult (one image)
    stylize_image_to_file(prompt, style, output, config=...)     -> report; image + report

A prompt is optional everywhere: None (or blank) leaves the text condition empty, and the style
image alone carries the look.

Each reads and checks its inputs (settings first, before any model loads), runs
`StylizePipeline`, and hands the result to the job's `outputs.JobFiles`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from .config import MAX_SIZE, Config, load_config, wants_distributed
from .errors import ConfigError, InputError
from .images import load_photo, load_style_image
from .outputs.job import JobFiles
from .pipeline.checks import check_frame_settings
from .pipeline.report import Stopwatch
from .pipeline.runtime import Runtime
from .pipeline.stylize import StylizePipeline, prompt_text
from .results import StepCallback, StylizeResult
from .video.depth import load_depth_dir
from .video.frames import restore_size
from .video.io import Clip, model_size_for, read_clip


def read_video_clip(video: str | os.PathLike, config: Config, *, for_sampling: bool = True) -> Clip:
    """The selected frames at model size. For sampling, the window settings are checked against the
    frame count before anything is decoded."""
    v = config.video
    check = (lambda count: check_frame_settings(config, count)) if for_sampling else None
    return read_clip(video, frames=None if v.frames == "all" else v.frames, stride=v.stride, start=v.start,
                     size=v.size, start_time=v.start_time, duration=v.duration, check=check)


def _run_video(video, style, prompt, config: Config, runtime: Runtime | None, depth_dir, cache_dir, seed,
               on_step: StepCallback | None, progress: bool, files: JobFiles | None = None,
               pipeline_class: Callable[[Runtime, Config], StylizePipeline] = StylizePipeline) -> StylizeResult:
    """Read, then run the pipeline; frames stay at model size (the caller restores the size).

    With `files`, their live preview (which chains to `on_step`) decodes with the pipeline's VAE;
    `pipeline_class(runtime, config)` builds the pipeline (a distributed run's rank passes its own).
    Returns a new result: the pipeline's, with the clip and the read time and input in its report."""
    clock = Stopwatch()
    with clock.stage("read"):
        clip = read_video_clip(video, config)
        depth = load_depth_dir(depth_dir, len(clip.frames), clip.model_size) if depth_dir is not None else None
        style_image = load_style_image(style)
    runtime = runtime or Runtime.from_config(config, video=len(clip.frames) > 1)
    pipe = pipeline_class(runtime, config)
    if files is not None:
        on_step = files.preview(pipe.decode, on_step)
    result = pipe(clip.frames, style_image, prompt, depth=depth, seed=seed, cache_dir=cache_dir, on_step=on_step,
                  progress=progress, kind="video")
    report = {**result.report, "seconds": {"read": clock.seconds["read"], **result.report["seconds"]}}
    report["input"] = {
        "video": str(clip.path.resolve()), "style": str(os.path.abspath(style)), "prompt": prompt_text(prompt) or None,
        "fps": str(clip.fps), "frame_indices": clip.indices, "source_size": list(clip.source_size),
        "model_size": list(clip.model_size), "has_audio": clip.has_audio,
        "rotation": clip.display.rotation if clip.display else 0,
        "sample_aspect": str(clip.display.sample_aspect) if clip.display else "1",
        "depth": str(depth_dir) if depth_dir is not None else runtime.model.depth}
    return replace(result, report=report, clip=clip)


def stylize_video(
    video: str | os.PathLike, style: str | os.PathLike, prompt: str | None = None, *, config: Config | None = None,
    runtime: Runtime | None = None, depth_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None, seed: int | None = None, on_step: StepCallback | None = None,
    progress: bool = False,
) -> StylizeResult:
    """Stylize the selected frames of `video` toward `style`; frames (F, H, W, 3) uint8 at the source size.

    Takes every `video.*` option of the config (`frames` may be "all"; `start_time`/`duration`
    in seconds; `window`/`overlap` for long clips). Pass `runtime` to reuse loaded networks
    across calls, `depth_dir` for precomputed depth maps, `cache_dir` to cache estimated maps,
    `on_step(i, t, x_t, x0_hat, loss)` to watch (return False to stop early).
    """
    config = config or load_config()
    result = _run_video(video, style, prompt, config, runtime, depth_dir, cache_dir, seed, on_step, progress)
    return replace(result, frames=restore_size(result.model_frames, result.clip.source_size))


def stylize_to_files(
    video: str | os.PathLike, style: str | os.PathLike, prompt: str | None, output: str | os.PathLike | JobFiles, *,
    config: Config | None = None, runtime: Runtime | None = None, depth_dir: str | os.PathLike | None = None,
    seed: int | None = None, on_step: StepCallback | None = None, progress: bool = False,
    report_extra: dict[str, Any] | None = None,
    pipeline_class: Callable[[Runtime, Config], StylizePipeline] | None = None,
) -> dict[str, Any] | None:
    """Run one job and write `output` (mp4), its companions and the report; returns the report.

    `output` is a path, or the job's `JobFiles` made by the caller (their settings rule the files).
    Every output path is checked before any work; all files are staged in a hidden folder and
    renamed into place together, the report last, so a failure leaves no partial outputs. The
    depth maps are cached beside the output. `report_extra` entries are added to the report (the
    batch records each job's settings fingerprint there). Other arguments as for `stylize_video`.

    One process: a config asking for several (`distributed.*`) is refused here; the package's
    `sagvideo.stylize_to_files` (`sagvideo.distributed`) starts them. `pipeline_class(runtime, config)`
    builds the pipeline (a distributed run's rank passes its own).
    """
    config = config or load_config()
    if pipeline_class is None and wants_distributed(config):
        raise ConfigError("distributed.devices / distributed.num_nodes above 1 need the launcher. To fix: call "
                          "sagvideo.stylize_to_files (or sagvideo.distributed.stylize_to_files), or use the "
                          "command line's --devices.")
    files = output if isinstance(output, JobFiles) else JobFiles.for_video(
        output, config.output, video=video, style=style, depth_dir=depth_dir)
    with files.check().open():
        result = _run_video(video, style, prompt, config, runtime, depth_dir, files.layout.depth_cache, seed,
                            on_step, progress, files, pipeline_class or StylizePipeline)
        if report_extra:
            result = replace(result, report={**result.report, **report_extra})
        return files.write_video(result, progress=progress)


def image_size(config: Config, photo: np.ndarray | None, width: int | None, height: int | None) -> tuple[int, int]:
    """(W, H) to sample an image at: --width/--height (rounded to x8), else the photo's aspect, else square."""
    if width is not None or height is not None:
        if not width or not height or not (8 <= width <= MAX_SIZE and 8 <= height <= MAX_SIZE):
            raise InputError(f"give both --width and --height, each from 8 to {MAX_SIZE} pixels, got {width} x {height}.")
        return max(8, round(width / 8) * 8), max(8, round(height / 8) * 8)
    if photo is not None:
        return model_size_for(photo.shape[1], photo.shape[0], config.video.size)
    return (config.video.size // 8 * 8,) * 2


def stylize_image(
    prompt: str | None, style: str | os.PathLike, *, config: Config | None = None, runtime: Runtime | None = None,
    depth_from: str | os.PathLike | None = None, width: int | None = None, height: int | None = None,
    seed: int | None = None, on_step: StepCallback | None = None, progress: bool = False,
) -> StylizeResult:
    """One image (F = 1, no motion module) through the same pipeline; frames is uint8 (H, W, 3).

    Size: `width` x `height` when given (sampled at multiples of 8, then resized to exactly that);
    else the `depth_from` photo's aspect with short side `video.size`; else a square.
    """
    config = config or load_config("image")
    if config.video.frames == "all":
        raise ConfigError("config key 'video.frames' is 'all', which selects video frames; an image is one frame. "
                          "To fix: drop video.frames for `sagvideo image`.")
    style_image = load_style_image(style)
    photo = load_photo(depth_from) if depth_from is not None else None
    size = image_size(config, photo, width, height)
    frames = restore_size(photo[None], size) if photo is not None else None
    runtime = runtime or Runtime.from_config(config, video=False)
    result = StylizePipeline(runtime, config)(frames, style_image, prompt, size=size, seed=seed, on_step=on_step,
                                              progress=progress, kind="image")
    image = result.model_frames
    if width is not None and image.shape[1:3] != (height, width):
        image = restore_size(image, (width, height))
    given = {"prompt": prompt_text(prompt) or None, "style": str(os.path.abspath(style)),
             "depth_from": str(depth_from) if depth_from else None, "size": [image.shape[2], image.shape[1]]}
    return replace(result, frames=image[0], report={**result.report, "input": given})


def stylize_image_to_file(
    prompt: str | None, style: str | os.PathLike, output: str | os.PathLike | JobFiles, *,
    config: Config | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`stylize_image` + the image file and its report, published together; returns the report.
    `output`: a path, or the job's `JobFiles` made by the caller."""
    config = config or load_config("image")
    files = output if isinstance(output, JobFiles) else JobFiles.for_image(
        output, config.output, style=style, depth_from=kwargs.get("depth_from"))
    with files.check().open():
        return files.write_image(stylize_image(prompt, style, config=config, **kwargs))
