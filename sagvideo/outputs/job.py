"""`JobFiles`: the one owner of a job's files, from the first check to the atomic publish.

    files = JobFiles.for_video("out.mp4", config.output, video="in.mp4", style="style.png")
    files.check()                 # before any model loads: no output is an input, all writable
    with files.open():            # the output's lock held, a killed run's staging removed
        on_step = files.preview(pipe.decode, on_step)     # live preview (None when off)
        report = files.write_video(result)                # staged, then published together

Every entry point (`api.stylize_to_files`, `api.stylize_image_to_file`, `sagvideo depth`, a batch
job) goes through it. Importing this module loads no torch: the command line checks with it first.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ..errors import InputError
from ..files import check_output_path
from .guards import OutputLock, check_not_inputs, clean_stale_temporaries, input_files
from ..defaults import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from .names import OutputLayout

if TYPE_CHECKING:
    from ..results import StepCallback, StylizeResult
    from .preview import Decode

KINDS = ("video", "image", "depth")


class JobFiles:
    """Every file one job writes: a video with its companions, an image and its report, or a
    folder of depth maps. `settings` is the job's `OutputConfig` (overwrite, extras, preview)."""

    def __init__(self, output: str | os.PathLike, settings: Any, *, kind: str = "video",
                 inputs: Iterable[str | os.PathLike] = ()):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.layout = OutputLayout.of(output)
        self.settings, self.kind, self.inputs = settings, kind, list(inputs)
        self._preview: Any = None

    @classmethod
    def for_video(cls, output: str | os.PathLike, settings: Any, *, video: str | os.PathLike,
                  style: str | os.PathLike, depth_dir: str | os.PathLike | None = None) -> "JobFiles":
        """A video job: reads `video`, `style` and every file of `depth_dir`."""
        return JobFiles(output, settings, kind="video", inputs=input_files(video, style, folder=depth_dir))

    @classmethod
    def for_image(cls, output: str | os.PathLike, settings: Any, *, style: str | os.PathLike,
                  depth_from: str | os.PathLike | None = None) -> "JobFiles":
        """An image job: reads `style` and the optional depth photo."""
        return JobFiles(output, settings, kind="image", inputs=input_files(style, depth_from))

    @classmethod
    def for_depth_maps(cls, output: str | os.PathLike, settings: Any, *, video: str | os.PathLike) -> "JobFiles":
        """`sagvideo depth`: a folder of depth maps read from `video`."""
        return JobFiles(output, settings, kind="depth", inputs=input_files(video))

    @property
    def main(self) -> Path:
        """The main output (video, image or depth folder), absolute."""
        return self.layout.main

    def planned(self) -> dict[str, Path]:
        """The files this job publishes, by role, the report last (the preview is not among them)."""
        if self.kind == "video":
            return self.layout.planned(self.settings)
        if self.kind == "image":
            return {"image": self.layout.main, "report": self.layout.report}
        return {"depth_maps": self.layout.main}

    def _watched(self) -> list[Path]:
        """Every path this job may create: what it publishes and the live preview."""
        paths = list(self.planned().values())
        return paths + [self.layout.preview] if self.kind == "video" else paths

    def refuse_inputs(self, inputs: Iterable[str | os.PathLike] | None = None) -> None:
        """InputError when one of this job's outputs is (a link to) one of `inputs` (default: its own)."""
        check_not_inputs(self._watched(), self.inputs if inputs is None else inputs)

    def check(self) -> "JobFiles":
        """Before any work: no output is an input (said first), and every output can be written and
        is new unless `overwrite`; a video or image name must end in a suffix its writer makes."""
        self.refuse_inputs()
        overwrite = self.settings.overwrite
        if self.kind == "depth":
            check_output_path(self.main, overwrite, folder_output=True)
            return self
        suffixes = VIDEO_SUFFIXES if self.kind == "video" else IMAGE_SUFFIXES
        check_output_path(self.main, overwrite=overwrite)
        if self.main.suffix.lower() not in suffixes:
            what, hint = ("a video", " (add --gif for a GIF beside it)") if self.kind == "video" else ("an image", "")
            raise InputError(f"cannot write {what} to '{self.main.name}': use a name ending in "
                             f"{', '.join(suffixes)}{hint}.")
        for name, path in self.planned().items():
            check_output_path(path, overwrite=overwrite, folder_output=name == "frames_dir")
        if self.kind == "video" and self.settings.preview:
            check_output_path(self.layout.preview, overwrite=overwrite)
        return self

    @contextmanager
    def open(self) -> Iterator["JobFiles"]:
        """Hold the output's lock (waiting for another run only with `overwrite`), remove what a killed
        run on it left, and remove the live preview when the block ends, however it ends."""
        with OutputLock(self.layout, wait=self.settings.overwrite):
            clean_stale_temporaries(self.layout, self._watched() if self.kind == "depth" else None)
            try:
                yield self
            finally:
                if self._preview is not None:
                    self._preview.remove()
                    self._preview = None

    def preview(self, decode: "Decode", then: "StepCallback | None" = None) -> "StepCallback | None":
        """The `on_step` to sample with: a live preview every `preview` steps (chaining to `then`)
        when the settings ask for one, else `then` itself. `decode`: latents -> uint8 frames."""
        if self.kind != "video" or not self.settings.preview:
            return then
        from .preview import PreviewWriter

        self._preview = PreviewWriter(self.layout.preview, self.settings.preview, decode, then)
        return self._preview

    def write_video(self, result: "StylizeResult", progress: bool = False) -> dict[str, Any]:
        """The video, its extras and the report (marked complete), published together; returns the report."""
        from .writers import write_video_outputs

        return write_video_outputs(result, result.clip, self.layout, self.settings, progress=progress)

    def write_image(self, result: "StylizeResult") -> dict[str, Any]:
        """The image and its report, published together; returns the report."""
        from .writers import write_image_outputs

        return write_image_outputs(result, self.layout)

    def write_depth_maps(self, gray: Any) -> Path:
        """uint8 (F, H, W) depth maps as main/depth_00000.png ...; the folder appears whole."""
        import numpy as np

        from ..video.write import write_frames_dir

        return write_frames_dir(np.repeat(gray[..., None], 3, -1), self.main, overwrite=self.settings.overwrite,
                                prefix="depth")
