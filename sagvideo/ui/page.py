"""The Gradio page: inputs and knobs on the left, progress, preview, result beside source on the right.

The Stylize button is also the API endpoint `/stylize` (usable with `gradio_client`). Runs go
through one queue, one at a time per device (the queue shows each waiting run its place); the
Cancel button reaches the running job of its own browser session.
"""

from __future__ import annotations

import threading
from typing import Any

import gradio as gr

from ..method_registry import PIPELINE_METHODS
from .jobs import Finished, is_photo, JobControl, JobFailed, JobRequest, JobRunner, Progress
from .settings import KNOB_KEYS, PageSettings, config_choices, default_choice, knob_values

# what the page shows of a report (the whole report is a download)
SUMMARY_KEYS = ("frames", "output_fps", "output_size", "device", "label")


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report's headline numbers: frames, fps, duration, size, timings, the quality metrics."""
    shown = {k: report[k] for k in SUMMARY_KEYS if k in report}
    shown["guidance_method"] = (report.get("guidance_method") or {}).get("name")
    if "frames" in report and "output_fps" in report:
        from fractions import Fraction

        shown["duration_s"] = round(report["frames"] / float(Fraction(report["output_fps"])), 3)
    shown["seconds"] = report.get("seconds", {})
    shown["metrics"] = {k: v for k, v in report.get("metrics", {}).items() if k != "per_frame"}
    return shown


class Page:
    """The page's callbacks around one `JobRunner`, and the running jobs by browser session (for Cancel)."""

    def __init__(self, runner: JobRunner, server_configs: list[str] | None = None):
        self.runner, self.server_configs = runner, server_configs
        self._running: dict[str, JobControl] = {}
        self._lock = threading.Lock()

    def knobs_for(self, choice: str) -> list[Any]:
        """Fill the knobs with what `choice` (plus the server's --set) sets."""
        try:
            values = knob_values(PageSettings(choice).config(self.runner.server_sets))
        except Exception as exc:  # a broken config file: say so, keep the page
            raise gr.Error(str(exc)) from None
        return [values[k] for k in KNOB_KEYS]

    def stylize(self, video: str | None, style: str | None, prompt: str, config: str, strength: float, steps: int,
                seed: int, method: str, size: int, frames: str, denoise: float, advanced: str,
                request: gr.Request, progress: gr.Progress = gr.Progress()):
        """Stylize `video` (or an image) toward `style`; yields (status, preview, source, result, summary, plot, files)."""
        settings = PageSettings(config, dict(strength=strength, steps=steps, seed=seed, method=method, size=size,
                                             frames=frames, denoise=denoise), advanced or "")
        control = JobControl()
        session = getattr(request, "session_hash", None) or str(id(control))
        with self._lock:
            self._running[session] = control
        blank = gr.update()
        try:
            yield "checking the inputs", None, None, None, None, None, None
            source = None
            for event in self.runner.run(JobRequest(video, style, prompt, settings), control):
                if isinstance(event, Progress):
                    if event.total:
                        progress((event.step, event.total), desc=event.text())
                    shown_source = video if source is None and not is_photo(video) else blank
                    source = video
                    preview = event.preview if event.preview is not None else blank
                    yield event.text(), preview, shown_source, blank, blank, blank, blank
                elif isinstance(event, Finished):
                    plot = next((str(p) for p in event.files if p.name.endswith(".plot.png")), None)
                    image = is_photo(str(event.output))  # an image job: the result goes where the preview was
                    yield (f"done: wrote {event.output.name} ({len(event.files)} files)",
                           str(event.output) if image else blank, blank, None if image else str(event.output),
                           summary(event.report), plot, [str(p) for p in event.files])
        except JobFailed as exc:
            yield f"**{'cancelled' if exc.cancelled else 'error'}:** {exc}", None, blank, None, None, None, None
            if not exc.cancelled:  # an error also reaches API callers (gradio_client raises it) and shows a toast
                raise gr.Error(str(exc), duration=15, print_exception=False) from None
        finally:
            with self._lock:
                self._running.pop(session, None)

    def cancel(self, request: gr.Request) -> None:
        """Ask this session's running job to stop at its next step boundary (the run itself then says so)."""
        with self._lock:
            control = self._running.get(getattr(request, "session_hash", None))
        if control is not None:
            control.cancel.set()


def build_page(runner: JobRunner, server_configs: list[str] | None = None) -> gr.Blocks:
    """The Blocks app (not launched). Analytics off: the page makes no call outside the server."""
    page = Page(runner, server_configs)
    choice = default_choice(server_configs)
    start = dict(zip(KNOB_KEYS, page.knobs_for(choice)))
    # uploads and served copies in gradio's cache are deleted after a day (checked hourly)
    with gr.Blocks(title="sagvideo", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown("## sagvideo: restyle a video toward a style image")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.File(label="Video or image", elem_id="video-upload")
                style = gr.File(label="Style image", elem_id="style-upload")
                prompt = gr.Textbox("", label="Prompt (optional)", placeholder="e.g. a rabbit in a meadow, oil painting")
                config = gr.Dropdown(config_choices(server_configs), value=choice, label="Config")
                with gr.Row():
                    strength = gr.Number(start["strength"], label="Style strength")
                    steps = gr.Number(start["steps"], label="Steps", precision=0)
                    seed = gr.Number(start["seed"], label="Seed", precision=0)
                with gr.Row():
                    method = gr.Dropdown(list(PIPELINE_METHODS), value=start["method"], label="Guidance method")
                    size = gr.Number(start["size"], label="Size (short side, px)", precision=0)
                    frames = gr.Textbox(start["frames"], label='Frames ("all" or N)')
                    denoise = gr.Number(start["denoise"], label="Denoise (0-1]")
                advanced = gr.Textbox("", label="Advanced: key=value, one a line", lines=3, elem_id="advanced",
                                      placeholder="guidance.n=2\nvideo.stride=2")
                with gr.Row():
                    run = gr.Button("Stylize", variant="primary", elem_id="stylize")
                    stop = gr.Button("Cancel", elem_id="cancel")
            with gr.Column(scale=2):
                status = gr.Markdown("upload a video and a style image, then press Stylize", label="Status", elem_id="status")
                preview = gr.Image(label="Live preview (clean estimate)", interactive=False, elem_id="preview")
                with gr.Row():
                    source = gr.Video(label="Source", interactive=False, elem_id="source")
                    result = gr.Video(label="Result", interactive=False, elem_id="result")
                with gr.Row():
                    report = gr.JSON(label="Report summary", elem_id="report")
                    plot = gr.Image(label="Loss and metrics", interactive=False, elem_id="plot")
                files = gr.File(label="Downloads: every file the run wrote", file_count="multiple", elem_id="files")
        knobs = [strength, steps, seed, method, size, frames, denoise]
        config.change(page.knobs_for, config, knobs, queue=False, api_visibility="private")
        run.click(page.stylize, [video, style, prompt, config, *knobs, advanced],
                  [status, preview, source, result, report, plot, files], api_name="stylize",
                  concurrency_limit=1, concurrency_id="device")
        stop.click(page.cancel, None, None, queue=False, api_visibility="private")
    return demo
