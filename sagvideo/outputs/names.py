"""The names of a job's files: one owner, used by the writers, the batch and the checks.

For an output `clip.mp4`: `clip.json` (report), `clip.contact.png`, `clip.plot.png`, `clip.gif`, `clip_frames/`,
`clip.preview.png` (live preview while it runs), and the depth cache `.sagvideo-depth/` in the
same folder. A batch job `<id>` writes `OUTDIR/<id>.mp4` and the same companions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..defaults import DEPTH_CACHE_DIR


@dataclass(frozen=True)
class OutputLayout:
    """Every path one job may write, derived from its main output (a video or an image)."""

    main: Path

    @classmethod
    def of(cls, output: str | os.PathLike) -> "OutputLayout":
        """The layout around `output` (made absolute, `~` expanded)."""
        return cls(Path(output).expanduser().absolute())

    @classmethod
    def for_job(cls, outdir: str | os.PathLike, job_id: str, suffix: str = ".mp4") -> "OutputLayout":
        """A batch job's files: `outdir/<job_id><suffix>` and its companions."""
        return cls.of(Path(outdir) / f"{job_id}{suffix}")

    @property
    def report(self) -> Path:
        return self.main.with_suffix(".json")

    @property
    def contact_sheet(self) -> Path:
        return self.main.with_name(f"{self.main.stem}.contact.png")

    @property
    def gif(self) -> Path:
        return self.main.with_suffix(".gif")

    @property
    def frames_dir(self) -> Path:
        return self.main.with_name(f"{self.main.stem}_frames")

    @property
    def plot(self) -> Path:
        return self.main.with_name(f"{self.main.stem}.plot.png")

    @property
    def preview(self) -> Path:
        return self.main.with_name(f"{self.main.stem}.preview.png")

    @property
    def depth_cache(self) -> Path:
        return self.main.parent / DEPTH_CACHE_DIR

    def names(self) -> tuple[str, ...]:
        """File names a job may create in its folder (for collision checks between jobs)."""
        paths = (self.main, self.report, self.contact_sheet, self.plot, self.gif, self.frames_dir, self.preview)
        return tuple(p.name for p in paths)

    def planned(self, output: Any) -> dict[str, Path]:
        """The files a run with `output` settings (an `OutputConfig`) writes, by role; the report last."""
        paths = {"video": self.main}
        if output.gif:
            paths["gif"] = self.gif
        if output.frames_dir:
            paths["frames_dir"] = self.frames_dir
        if output.contact_sheet:
            paths["contact_sheet"] = self.contact_sheet
        if output.plot:
            paths["plot"] = self.plot
        paths["report"] = self.report
        return paths

    def read_report(self) -> dict[str, Any]:
        """The report as a dict; {} when it is missing or unreadable."""
        try:
            data = json.loads(self.report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def is_complete(self) -> bool:
        """True when the main output and a report marked complete both exist."""
        return self.main.is_file() and self.read_report().get("status") == "complete"
