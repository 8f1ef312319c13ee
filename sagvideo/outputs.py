"""A job's files: the video (or image), GIF, PNG frames, contact sheet and report.

Each file is written atomically, the report last and marked complete; if any stage fails, the
files this run already wrote are removed, so a failed run leaves nothing behind. Paths are
checked before any model work.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, load_config
from .errors import InputError
from .files import check_output_path
from .images import contact_sheet, load_style_image, write_image
from .pipeline import stylize_image, stylize_video
from .report import TINY_LABEL, write_report
from .video.io import probe_video, write_frames_dir, write_gif, write_video


def report_path(output: Path) -> Path:
    """clip.mp4 -> clip.json (the run report)."""
    return Path(output).with_suffix(".json")


def contact_sheet_path(output: Path) -> Path:
    """clip.mp4 -> clip.contact.png."""
    output = Path(output)
    return output.with_name(f"{output.stem}.contact.png")


def frames_dir_path(output: Path) -> Path:
    """clip.mp4 -> clip_frames/."""
    output = Path(output)
    return output.with_name(f"{output.stem}_frames")


def depth_cache_dir(output: Path) -> Path:
    """Depth maps are cached beside the output and reused on re-runs."""
    return Path(output).parent / ".sagvideo-depth"


def outputs_complete(output: Path) -> bool:
    """True when the video and a report marked complete both exist."""
    output, report = Path(output), report_path(output)
    if not (output.is_file() and report.is_file()):
        return False
    try:
        return json.loads(report.read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def check_inputs(video: str | os.PathLike, style: str | os.PathLike) -> None:
    """Cheap validation before any model work: the video probes, the style image decodes."""
    probe_video(video)
    load_style_image(style)


class WrittenFiles:
    """The files a run has put in place, removed together if a later stage fails."""

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}

    def add(self, name: str, path: Path) -> None:
        self.paths[name] = Path(path)

    def remove_all(self) -> None:
        for path in self.paths.values():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def as_dict(self) -> dict[str, str]:
        return {name: str(path) for name, path in self.paths.items()}


def _planned_paths(output: Path, config: Config) -> list[Path]:
    out = config.output
    return ([output, report_path(output)] + ([contact_sheet_path(output)] if out.contact_sheet else [])
            + ([output.with_suffix(".gif")] if out.gif else []) + ([frames_dir_path(output)] if out.frames_dir else []))


def stylize_to_files(
    video: str | os.PathLike,
    style: str | os.PathLike,
    prompt: str,
    output: str | os.PathLike,
    *,
    config: Config | None = None,
    depth_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one job (`stylize_video`) and write `output` (mp4), extras, and the report (last).

    kwargs go to `stylize_video` (runtime, seed, progress). Returns the report.
    """
    config = config or load_config()
    out = config.output
    output = check_output_path(output, overwrite=out.overwrite)
    for path in _planned_paths(output, config)[1:]:
        check_output_path(path, overwrite=out.overwrite)
    check_inputs(video, style)
    result = stylize_video(video, style, prompt, config=config, depth_dir=depth_dir,
                           cache_dir=depth_cache_dir(output), **kwargs)
    clip, report = result.clip, result.report
    start = time.perf_counter()
    written = WrittenFiles()
    try:
        write_video(result.frames, output, clip.output_fps, audio_from=clip.path if clip.has_audio else None,
                    audio_span=clip.audio_span, crf=out.crf, overwrite=out.overwrite,
                    progress=kwargs.get("progress", False))
        written.add("video", output)
        if out.gif:
            written.add("gif", write_gif(result.frames, output.with_suffix(".gif"), clip.output_fps, overwrite=out.overwrite))
        if out.frames_dir:
            written.add("frames_dir", write_frames_dir(result.frames, frames_dir_path(output), overwrite=out.overwrite))
        if out.contact_sheet:
            depth = [(d * 255).round().astype(np.uint8) for d in result.depth]
            contact_sheet({"input": list(clip.frames), "depth": depth, "output": list(result.model_frames),
                           "style": [result.style]}, contact_sheet_path(output),
                          note=TINY_LABEL if "label" in report else "")
            written.add("contact_sheet", contact_sheet_path(output))
        report["seconds"]["write"] = round(time.perf_counter() - start, 4)
        report.update(status="complete", outputs=written.as_dict(), output_fps=str(clip.output_fps),
                      frames=len(result.frames))
        write_report(report, report_path(output))
    except BaseException:
        written.remove_all()
        raise
    return report


def stylize_image_to_file(
    prompt: str, style: str | os.PathLike, output: str | os.PathLike, *, config: Config | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`stylize_image` + the image file and its report, atomically; refuses to overwrite unless configured."""
    config = config or load_config("image")
    output = check_output_path(output, overwrite=config.output.overwrite)
    check_output_path(report_path(output), overwrite=config.output.overwrite)
    if output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise InputError(f"cannot write an image to '{output.name}': use a .png, .jpg or .webp name.")
    result = stylize_image(prompt, style, config=config, **kwargs)
    write_image(result.frames, output)
    try:
        result.report.update(status="complete", outputs={"image": str(output)})
        write_report(result.report, report_path(output))
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    return result.report
