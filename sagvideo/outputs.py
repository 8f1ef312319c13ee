"""A job's files: the video (or image), GIF, PNG frames, contact sheet and report.

All of a job's files are written into a hidden staging folder and renamed into place together,
the report (marked complete) last, so a failed or killed run leaves no partial outputs. Paths
are checked before any model work.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .errors import InputError
from .files import check_output_path, publish, staging_dir
from .images import contact_sheet, write_image
from .pipeline import stylize_image, stylize_video
from .report import TINY_LABEL, write_report
from .video.depth import depth_to_uint8
from .video.io import VIDEO_SUFFIXES, write_frames_dir, write_gif, write_video


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
        return json.loads(report.read_text(encoding="utf-8")).get("status") == "complete"
    except (OSError, ValueError):
        return False


def _planned_paths(output: Path, config: Config) -> dict[str, Path]:
    """Every file a job writes, by name; the report is last."""
    out, paths = config.output, {"video": output}
    if out.gif:
        paths["gif"] = output.with_suffix(".gif")
    if out.frames_dir:
        paths["frames_dir"] = frames_dir_path(output)
    if out.contact_sheet:
        paths["contact_sheet"] = contact_sheet_path(output)
    paths["report"] = report_path(output)
    return paths


def _publish_all(staged: dict[str, Path], final: dict[str, Path]) -> None:
    """Rename every staged output into place, the report last; undo all if one rename fails."""
    done: list[Path] = []
    try:
        for name in staged:
            done.append(publish(staged[name], final[name]))
    except BaseException:
        for path in done:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


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
    """Run one job (`stylize_video`) and write `output` (mp4), the extras and the report.

    Everything is first written into a hidden staging folder beside `output`, then renamed into
    place with the report last, so a failure or kill at any point leaves no partial outputs.
    kwargs go to `stylize_video` (runtime, seed, progress). Returns the report.
    """
    config = config or load_config()
    out = config.output
    output = check_output_path(output, overwrite=out.overwrite)
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"cannot write a video to '{output.name}': use a name ending in {', '.join(VIDEO_SUFFIXES)} "
                         f"(add --gif for a GIF beside it).")
    final = _planned_paths(output, config)
    for name, path in final.items():
        check_output_path(path, overwrite=out.overwrite, folder_output=name == "frames_dir")
    # stylize_video reads the clip and the style image before it loads any model
    result = stylize_video(video, style, prompt, config=config, depth_dir=depth_dir,
                           cache_dir=depth_cache_dir(output), **kwargs)
    clip, report = result.clip, result.report
    start = time.perf_counter()
    with staging_dir(output) as stage:
        staged = {name: stage / path.name for name, path in final.items()}
        write_video(result.frames, staged["video"], clip.output_fps, audio_from=clip.path if clip.has_audio else None,
                    audio_span=clip.audio_span, crf=out.crf, progress=kwargs.get("progress", False))
        if out.gif:
            write_gif(result.frames, staged["gif"], clip.output_fps)
        if out.frames_dir:
            write_frames_dir(result.frames, staged["frames_dir"])
        if out.contact_sheet:
            contact_sheet({"input": list(clip.frames), "depth": list(depth_to_uint8(result.depth)), "output": list(result.model_frames),
                           "style": [result.style]}, staged["contact_sheet"],
                          note=TINY_LABEL if "label" in report else "")
        report["seconds"]["write"] = round(time.perf_counter() - start, 4)
        report.update(status="complete", outputs={k: str(v) for k, v in final.items() if k != "report"},
                      output_fps=str(clip.output_fps), frames=len(result.frames))
        write_report(report, staged["report"])
        _publish_all(staged, final)
    return report


def stylize_image_to_file(
    prompt: str, style: str | os.PathLike, output: str | os.PathLike, *, config: Config | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`stylize_image` + the image file and its report, published together; refuses to overwrite unless configured."""
    config = config or load_config("image")
    output = check_output_path(output, overwrite=config.output.overwrite)
    check_output_path(report_path(output), overwrite=config.output.overwrite)
    if output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise InputError(f"cannot write an image to '{output.name}': use a .png, .jpg or .webp name.")
    result = stylize_image(prompt, style, config=config, **kwargs)
    final = {"image": output, "report": report_path(output)}
    with staging_dir(output) as stage:
        staged = {name: stage / path.name for name, path in final.items()}
        write_image(result.frames, staged["image"])
        result.report.update(status="complete", outputs={"image": str(output)})
        write_report(result.report, staged["report"])
        _publish_all(staged, final)
    return result.report
