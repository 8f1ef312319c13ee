"""One run from the page: the CLI's checks, the job through `api`, progress, cancel, and messages.

`JobRunner.run(request, control)` is a generator: it checks everything the CLI checks before
anything loads (`preflight.check_stylize` / `check_image`, the config loader), then runs the job
on a worker thread through `api.stylize_to_files` (or `stylize_image_to_file` for an image),
the same output code as the command line, into a fresh name in the output folder. It yields a
`Progress` per pipeline step (stage, step, ETA, the live preview frames) and a `Finished` at the
end; a failure of any kind raises `JobFailed` with a message naming the problem and the fix, and
leaves no output (the api stages every file and publishes them together). Cancel sets an event
that the step callback turns into `Cancelled`, so the run stops at the next step boundary.
"""

from __future__ import annotations

import queue
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

from ..commandline import DISK_FULL, OUT_OF_MEMORY_FIX, out_of_memory_line
from ..errors import InputError, SagVideoError
from .cache import RuntimeCache
from .settings import PageSettings

CPU_OUT_OF_MEMORY = "can't allocate memory"  # torch's CPU allocator raises a RuntimeError, not OutOfMemoryError


class Cancelled(Exception):
    """The Cancel button: raised from the step callback at the next step boundary."""


class JobFailed(Exception):
    """A run that wrote nothing; `str()` is the message for the page (problem and fix)."""

    def __init__(self, message: str, cancelled: bool = False):
        super().__init__(message)
        self.cancelled = cancelled


@dataclass
class JobRequest:
    """One run: the uploaded files (paths on the server), the prompt, the page's settings."""

    video: str | None
    style: str | None
    prompt: str | None
    settings: PageSettings


@dataclass
class JobControl:
    """Shared between a running job and the Cancel button."""

    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class CheckedJob:
    """A request that passed the checks: its config, fresh output path, kind, and file names (`.preview`; None
    for an image job, which has no live preview)."""

    config: Any
    output: Path
    photo: bool
    layout: Any


@dataclass
class Progress:
    """Where a run is: `stage`, step `step` of `total` (sampling), seconds left, the preview (H, W, 3) uint8."""

    stage: str
    step: int = 0
    total: int = 0
    eta: float | None = None
    preview: Any = None

    def text(self) -> str:
        if not self.total:
            return self.stage
        eta = f", about {self.eta:.0f} s left" if self.eta is not None else ""
        return f"{self.stage}: step {self.step}/{self.total}{eta}"


@dataclass
class Finished:
    """A complete run: the main output, the report, every file it wrote (report included)."""

    output: Path
    report: dict[str, Any]
    files: list[Path]


def is_photo(path: str) -> bool:
    """Whether an upload is stylized as one image (its depth conditions it, as `sagvideo image --depth-from`)
    rather than a video: a suffix Pillow reads."""
    from PIL import Image

    return Path(path).suffix.lower() in Image.registered_extensions()


def steps_that_run(config: Any) -> int:
    """Sampling steps of the run, as `StylizePipeline.schedule` counts them (denoise skips the first)."""
    s = config.sampling
    return max(1, int(s.denoise * s.steps + 1e-9))


def safe_stem(name: str) -> str:
    """A file stem from an upload's name: letters, digits, - and _ only (at most 40)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:40] or "upload"


class JobRunner:
    """Runs page jobs into `output_dir` with networks from `cache`; `server_sets`: the server's --set pairs."""

    def __init__(self, output_dir: str | Path, *, server_sets: dict[str, Any] | None = None,
                 cache: RuntimeCache | None = None, max_upload_mb: float = 500.0):
        self.output_dir = Path(output_dir)
        self.server_sets = dict(server_sets or {})
        self.cache = cache or RuntimeCache()
        self.max_upload_mb = max_upload_mb
        self._names = threading.Lock()
        self._reserved: set[str] = set()
        self._devices: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------------ before anything loads
    def fresh_output(self, source: str, suffix: str) -> Path:
        """`<stem>_sag_NNN<suffix>` with the first NNN that no file in the output folder (and no run in
        flight) uses yet, companions included: a run never replaces anything."""
        stem = safe_stem(source)
        with self._names:
            taken = {p.name.split(".")[0] for p in self.output_dir.glob(f"{stem}_sag_*")} | self._reserved
            n = 1
            while f"{stem}_sag_{n:03d}" in taken:
                n += 1
            name = f"{stem}_sag_{n:03d}"
            self._reserved.add(name)
            return self.output_dir / f"{name}{suffix}"

    def _release_name(self, output: Path) -> None:
        with self._names:
            self._reserved.discard(output.name.split(".")[0])

    def check_upload_size(self, path: str, role: str) -> None:
        size_mb = Path(path).stat().st_size / 2**20
        if size_mb > self.max_upload_mb:
            raise InputError(f"the {role} '{Path(path).name}' is {size_mb:.1f} MB, over this page's upload limit of "
                             f"{self.max_upload_mb:g} MB. To fix: trim or re-encode it, or start the page with a "
                             f"larger --max-upload-mb.")

    def check(self, request: JobRequest) -> CheckedJob:
        """The CLI's checks for this request, torch-free."""
        if not request.video:
            raise InputError("no video given. To fix: upload a video (or an image) in the 'Video or image' field.")
        if not request.style:
            raise InputError("no style image given. To fix: upload a painting or photo in the 'Style image' field.")
        for path, role in ((request.video, "video"), (request.style, "style image")):
            if Path(path).is_file():
                self.check_upload_size(path, role)
        config = request.settings.config(self.server_sets)
        photo = is_photo(request.video)
        output = self.fresh_output(request.video, ".png" if photo else ".mp4")
        try:
            from ..preflight import check_image, check_stylize

            if photo:
                checked = check_image(SimpleNamespace(output=output, style=request.style, depth_from=request.video),
                                      config)
            else:
                if not config.output.preview:  # the page shows the live preview (10 updates a run)
                    config.output.preview = max(1, steps_that_run(config) // 10)
                checked = check_stylize(SimpleNamespace(video=request.video, style=request.style, output=output,
                                                        depth=None), config)
        except BaseException:
            self._release_name(output)
            raise
        # a video job's check returns its file names (an OutputLayout, or the JobFiles that hold one)
        return CheckedJob(config, output, photo, getattr(checked, "layout", checked))

    # ------------------------------------------------------------------ the run
    def run(self, request: JobRequest, control: JobControl | None = None) -> Iterator[Progress | Finished]:
        """Check, then run on a worker thread; yields `Progress` and, last, `Finished`. Raises `JobFailed`."""
        control = control or JobControl()
        try:
            job = self.check(request)
        except SagVideoError as exc:
            raise JobFailed(_upload_names(failure_message(exc, self.output_dir), request)) from None
        events: queue.Queue = queue.Queue()
        worker = threading.Thread(target=self._work, args=(request, job, control, events),
                                  name="sagvideo-ui-job", daemon=True)
        worker.start()
        try:
            while True:
                event = events.get()
                if isinstance(event, JobFailed):
                    raise JobFailed(_upload_names(str(event), request), event.cancelled)
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            control.cancel.set()  # a page that went away mid-run stops its job too
            worker.join()
            self._release_name(job.output)

    def _work(self, request: JobRequest, job: CheckedJob, control: JobControl, events: queue.Queue) -> None:
        device = str(job.config.model.device)
        with self._names:
            lock = self._devices.setdefault(device, threading.Lock())
        try:
            with lock:  # one run at a time per device (the page's queue already orders them)
                events.put(Progress("loading models and reading the input"))
                events.put(self._stylize(request, job, control, events))
        except BaseException as exc:  # told on the page; the server goes on
            events.put(JobFailed(failure_message(exc, job.output.parent), cancelled=isinstance(exc, Cancelled)))

    def _stylize(self, request: JobRequest, job: CheckedJob, control: JobControl, events: queue.Queue) -> Finished:
        from .. import api

        config, output, photo = job.config, job.output, job.photo
        total, first_step = steps_that_run(config), []
        preview_path = job.layout.preview if job.layout is not None and not photo else None
        every = config.output.preview if preview_path is not None else 0

        def on_step(i: int, t: int, x: Any, x0_hat: Any, loss: float | None) -> None:
            if control.cancel.is_set():
                raise Cancelled(f"cancelled at step {i + 1} of {total}")
            done, now = i + 1, time.perf_counter()
            first_step[:] = first_step or [now]  # the ETA counts from the first step: loading and depth are done
            eta = (now - first_step[0]) / (done - 1) * (total - done) if done > 1 else None
            preview = _read_preview(preview_path) if every and done % every == 0 else None
            events.put(Progress("sampling", done, total, eta, preview))

        runtime = self.cache.get(config, video=not photo and config.video.frames != 1)
        if photo:
            report = api.stylize_image_to_file(request.prompt or None, request.style, output, config=config,
                                               runtime=runtime, depth_from=request.video, on_step=on_step)
        else:
            report = api.stylize_to_files(request.video, request.style, request.prompt or None, output, config=config,
                                          runtime=runtime, on_step=on_step)
        # the stem is this run's own (fresh and reserved): every file under it is one the run wrote
        written = sorted(p for p in output.parent.glob(f"{output.stem}.*") if p.is_file())
        return Finished(output, report, sorted(written, key=lambda p: (p != output, p.name)))


def _upload_names(message: str, request: JobRequest) -> str:
    """The uploads by their own names: the server's copies sit in long temporary paths that mean nothing to the user."""
    for path in (request.video, request.style):
        if path:
            message = message.replace(str(Path(path).expanduser().resolve()), Path(path).name)
            message = message.replace(str(path), Path(path).name)
    return message


def _read_preview(path: Path) -> Any:
    """The live preview PNG (replaced atomically by the api's PreviewWriter) as uint8 (H, W, 3), or None."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError:
        return None


def failure_message(exc: BaseException, output_dir: Path) -> str:
    """What the page says when a run fails: the problem and the fix; nothing was written in any case."""
    none = f"Nothing was written to {output_dir}."
    if isinstance(exc, Cancelled):
        return f"Cancelled ({exc}). {none}"
    if isinstance(exc, SagVideoError):
        return f"{exc} {none}"
    import sys

    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", ())
    if isinstance(exc, oom) or (isinstance(exc, RuntimeError) and CPU_OUT_OF_MEMORY in str(exc)):
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        return f"out of memory ({out_of_memory_line(exc)}). {OUT_OF_MEMORY_FIX} {none}"
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return f"cannot write '{exc.filename or output_dir}': {exc.strerror} (the disk or a quota is full). To fix: free " \
               f"space, or start the page with another --output-dir. {none}"
    traceback.print_exception(exc)  # a bug: the traceback goes to the server's log, the page gets one line
    return f"internal error ({type(exc).__name__}: {exc}); the server log has the details. {none}"


__all__ = ["Cancelled", "Finished", "JobControl", "JobFailed", "JobRequest", "JobRunner", "Progress"]
