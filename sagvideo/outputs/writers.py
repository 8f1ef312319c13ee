"""Writers of a job's files: the video (or image), GIF, PNG frames, contact sheet, plot and report.

All of a job's files are written into a hidden staging folder and renamed into place together,
the report (marked complete) last, so a failed or killed run leaves no partial outputs (`JobFiles`
calls these once its paths are checked and locked). Frames are resized to the source size a chunk at a time
while they are encoded, so a long clip is never held at full resolution.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from ..files import atomic_write_json, publish, staging_dir
from ..images import contact_sheet, write_image
from .names import OutputLayout
from ..metrics.plot import plot_run
from ..results import StylizeResult
from ..video.depth import depth_to_uint8
from ..video.frames import ResizedFrames
from ..video.io import Clip
from ..video.write import write_frames_dir, write_gif, write_video

GIF_MAX_SIDE = 512  # the GIF is a preview: its long side is capped, whatever the source size


def _publish_all(staged: dict[str, Any], final: dict[str, Any]) -> None:
    """Rename every staged output into place, the report last; undo all if one rename fails."""
    done = []
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


def _gif_size(size: tuple[int, int]) -> tuple[int, int]:
    scale = min(1.0, GIF_MAX_SIDE / max(size))
    return max(2, round(size[0] * scale)), max(2, round(size[1] * scale))


def write_video_outputs(result: StylizeResult, clip: Clip, layout: OutputLayout, output: Any,
                        progress: bool = False) -> dict[str, Any]:
    """Write the mp4 (source size, fps and audio), the extras and the report; returns the report."""
    report, final = result.report, layout.planned(output)
    frames = ResizedFrames(result.model_frames, clip.source_size)
    start = time.perf_counter()
    with staging_dir(layout.main) as stage:
        staged = {name: stage / path.name for name, path in final.items()}
        write_video(frames, staged["video"], clip.output_fps, audio_from=clip.path if clip.has_audio else None,
                    audio_span=clip.audio_span, crf=output.crf, progress=progress)
        if output.gif:
            write_gif(ResizedFrames(result.model_frames, _gif_size(clip.source_size)), staged["gif"], clip.output_fps)
        if output.frames_dir:
            write_frames_dir(frames, staged["frames_dir"])
        if output.contact_sheet:
            contact_sheet({"input": list(clip.frames), "depth": list(depth_to_uint8(result.depth)),
                           "output": list(result.model_frames), "style": [result.style]},
                          staged["contact_sheet"], note=report.get("label", ""),
                          frame_numbers=list(clip.indices))
        if output.plot:
            plot_run(staged["plot"], [r["loss"] for r in report["guided_steps"]],
                     report.get("metrics", {}).get("per_frame", {}))
        report["seconds"]["write"] = round(time.perf_counter() - start, 4)
        width, height = clip.source_size
        report.update(status="complete", outputs={k: str(v) for k, v in final.items() if k != "report"},
                      output_fps=str(clip.output_fps), frames=len(result.model_frames),
                      output_size=[width + width % 2, height + height % 2])
        if width % 2 or height % 2:
            report["output_size_note"] = ("the source has an odd side; H.264 yuv420p needs even sides, so the "
                                          "last row/column is repeated once")
        atomic_write_json(staged["report"], report)  # the report last, marked complete
        _publish_all(staged, final)
    return report


def write_image_outputs(result: StylizeResult, layout: OutputLayout) -> dict[str, Any]:
    """Write the image and its report together; returns the report."""
    final = {"image": layout.main, "report": layout.report}
    with staging_dir(layout.main) as stage:
        staged = {name: stage / path.name for name, path in final.items()}
        write_image(result.frames, staged["image"])
        result.report.update(status="complete", outputs={"image": str(layout.main)})
        atomic_write_json(staged["report"], result.report)
        _publish_all(staged, final)
    return result.report
