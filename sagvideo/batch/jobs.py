"""Jobs of a batch: read a job file (or a folder of videos), validate all of it, resolve each job.

A job is `video`, `style`, optional `prompt` (none: the style image alone), optional `id`,
optional `devices` (how many of the batch's processes share the clip; default 1) and optional
`config` overrides (dotted `guidance.n: 2` or nested `guidance: {n: 2}`); relative paths start
at the job file's folder. `devices: N` is `config: {distributed.devices: N}` written shorter.
The more specific setting wins: for style and prompt, the job's own value, then the file's
`defaults`, then `--style`/`--prompt`; for config (devices included), the job's over
`defaults` over the base config of `--config/--set`.

`load_jobs` validates the whole file before anything heavy happens and raises one
`JobFileError` listing every problem with its line: unknown keys (job keys and config keys,
via `config.merge`), missing values, missing or unreadable files (the same probes as
`probe_video` and `load_style_image`, run once per file), frame ranges the video cannot supply, duplicate
ids, and outputs that would collide.

Ids name the output files (`OUTDIR/<id>.mp4`). The default id is the video's file name,
plus `-<style name>` when two jobs would otherwise share it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import Config, DistributedConfig, load_config, merge
from ..errors import InputError, SagVideoError
from .jobfile import DEFAULT_KEYS, JOB_KEYS, RawEntry, RawJobFile, read_job_file
from ..outputs.job import JobFiles
from ..outputs.names import OutputLayout
from .cost import estimate_cost
from .file_checks import FileChecks

# Read by ffmpeg/decord; the folder mode picks files with these suffixes.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RESERVED_NAMES = ("summary.json",)  # OUTDIR files of the batch itself


@dataclass(eq=False)
class BatchJob:
    """One resolved, validated job. `config` is the full config it runs with (seed included)."""

    id: str
    video: Path
    style: Path
    prompt: str | None  # None: no text prompt (the style image alone)
    config: Config
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)  # flat dotted keys: defaults + job
    source: str = ""  # where it was written, e.g. "jobs.yaml line 4 (job 1)"
    cost: float = 0.0  # relative estimate, see cost.estimate_cost
    frames: int = 0  # the frames it selects, counted ("all" and durations resolved against its video)

    def fingerprint(self) -> str:
        """A digest of what decides the job's result: resolved settings, prompt, and the input files
        (path, size, modification time). A finished job whose fingerprint changed runs again."""
        config = self.config.to_dict()
        config["output"] = {k: v for k, v in config["output"].items() if k != "overwrite"}
        config.pop("distributed", None)  # how many processes share a clip does not change its bytes
        files = []
        for path in (self.video, self.style):
            st = path.stat()
            files.append([str(path), st.st_size, st.st_mtime_ns])
        text = json.dumps({"config": config, "prompt": self.prompt, "files": files}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def devices(self) -> int:
        """How many of the batch's processes share this clip (global ranks 0..devices-1); 1 = one device."""
        return self.config.distributed.devices

    def layout(self, outdir: str | os.PathLike) -> OutputLayout:
        """The files this job writes in `outdir`: `<id>.mp4`, its report, contact sheet, ..."""
        return OutputLayout.for_job(outdir, self.id)

    def files(self, outdir: str | os.PathLike, settings: Any = None) -> JobFiles:
        """This job's files in `outdir`, written with `settings` (an `OutputConfig`; default its own)."""
        return JobFiles.for_video(self.layout(outdir).main, settings or self.config.output,
                                  video=self.video, style=self.style)


class JobFileError(InputError):
    """A job file (or folder) has problems; `problems` lists them, each naming where and the fix."""

    def __init__(self, label: str, problems: Sequence[str]):
        self.label = label
        self.problems = list(problems)
        count = f"{len(self.problems)} problem" + ("s" if len(self.problems) != 1 else "")
        super().__init__(
            f"{label}: {count}; no job was run. Fix them and run the same command again:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


def sanitize_id(text: str) -> str:
    """A file-name-safe id: runs of other characters become '_', no leading dot or dash."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return cleaned[:128] or "job"


def job_seed(job_id: str, base_seed: int = 0) -> int:
    """A stable 31-bit seed from the id (sha256, not the salted `hash()`): the same on every rank,
    process and machine, so a job's output does not depend on where it runs."""
    digest = hashlib.sha256(f"{base_seed}:{job_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def flatten_config(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'guidance': {'n': 2}, 'video.start': 8} -> {'guidance.n': 2, 'video.start': 8}."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, name))
        else:
            flat[name] = value
    return flat


@dataclass
class _Draft:
    """A job while it is being validated."""

    where: str
    id: str | None = None
    video: Path | None = None
    style: Path | None = None
    prompt: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    config: Config | None = None
    model_size: tuple[int, int] | None = None  # (W, H) the video is sampled at
    frame_count: int = 0  # frames the job selects


def _where(label: str, entry: RawEntry) -> str:
    return f"{label} line {entry.line} (job {entry.index})" if entry.line else f"{label} (job {entry.index})"


def _path(value: Any, base: Path, what: str, where: str, problems: list[str]) -> Path | None:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        problems.append(f"{where}: '{what}' must be a file path, got {value!r}.")
        return None
    path = Path(os.path.expanduser(str(value).strip()))
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _draft(entry: RawEntry, label: str, base: Path, fallback: dict[str, Any], file_defaults: dict[str, Any],
           config: Config, checks: FileChecks, problems: list[str]) -> _Draft | None:
    """Validate one entry; append every problem found (not just the first)."""
    where = _where(label, entry)
    data = entry.data
    if not isinstance(data, Mapping):
        problems.append(f"{where}: a job must be a mapping with the keys video, style "
                        f"(optional: prompt, id, devices, config), got {type(data).__name__} {data!r}.")
        return None
    draft = _Draft(where)
    _check_fields(draft, data, base, [data, file_defaults, fallback], problems)
    _resolve_config(draft, data, file_defaults, config, problems)
    _check_files(draft, checks, base, problems)
    return draft


def _check_fields(draft: _Draft, data: Mapping[str, Any], base: Path, sources: list[Mapping[str, Any]],
                  problems: list[str]) -> None:
    """Job keys, video, style (job, then file defaults, then flags), prompt and id."""
    where = draft.where
    for key in data:
        if key not in JOB_KEYS:
            hint = difflib.get_close_matches(str(key), JOB_KEYS, n=1)
            problems.append(f"{where}: unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                            + f". Job keys: {', '.join(JOB_KEYS)}; config overrides go under 'config'.")

    def pick(key: str) -> Any:
        return next((source[key] for source in sources if source.get(key) is not None), None)

    if data.get("video") is None:
        problems.append(f"{where}: missing 'video'. To fix: add 'video: path/to/clip.mp4'.")
    else:
        draft.video = _path(data["video"], base, "video", where, problems)
    style = pick("style")
    if style is None:
        problems.append(f"{where}: missing 'style'. To fix: add 'style: path/to/image.png' to the job, "
                        f"under 'defaults', or pass --style.")
    else:
        draft.style = _path(style, base, "style", where, problems)
    prompt = pick("prompt")
    if prompt is not None and not isinstance(prompt, str):
        problems.append(f"{where}: 'prompt' must be text, got {prompt!r}. To fix: quote it.")
    elif prompt is not None and prompt.strip():
        draft.prompt = prompt.strip()  # else no prompt: the style image alone
    if data.get("id") is not None:
        job_id = str(data["id"]) if isinstance(data["id"], (str, int)) and not isinstance(data["id"], bool) else None
        if job_id is None or not _ID_PATTERN.match(job_id):
            problems.append(f"{where}: id {data['id']!r} names the output file, so it may use only letters, "
                            f"digits, '.', '_' and '-', start with a letter or digit, and have at most 128 "
                            f"characters. To fix: use e.g. '{sanitize_id(str(data['id']))}'.")
        draft.id = job_id


def _resolve_config(draft: _Draft, data: Mapping[str, Any], file_defaults: Mapping[str, Any], config: Config,
                    problems: list[str]) -> None:
    """The job's config: `defaults` (`config`, then `devices`), then the job's, over the base config."""
    overrides: dict[str, Any] = {}
    for owner, source in (("defaults", file_defaults), ("job", data)):
        value = source.get("config")
        flat = flatten_config(value) if isinstance(value, Mapping) else {}
        if value is not None and not isinstance(value, Mapping):
            problems.append(f"{draft.where}: 'config' ({owner}) must be a mapping of config keys such as "
                            f"{{'guidance.n': 2}}, got {type(value).__name__}.")
        overrides.update(flat)
        if source.get("devices") is not None:
            _set_devices(draft.where, owner, source["devices"], flat, overrides, problems)
    draft.overrides = overrides
    try:
        draft.config = merge(config, overrides, source=f"{draft.where} config")
    except SagVideoError as exc:
        problems.append(f"{draft.where}: {exc}")
        return
    if {"distributed.num_nodes", "distributed.accelerator"} & set(overrides):  # the batch's own flags set these
        problems.append(f"{draft.where}: distributed.num_nodes and distributed.accelerator are the batch's "
                        f"(--num-nodes, --accelerator), not a job's; a job's 'devices: N' takes global ranks "
                        f"0..N-1 of the batch, on however many nodes they are. To fix: drop these keys and give "
                        f"the job 'devices: N' (processes in all).")
        draft.config = None  # its window check would only repeat this problem


def _set_devices(where: str, owner: str, value: Any, owner_config: Mapping[str, Any], overrides: dict[str, Any],
                 problems: list[str]) -> None:
    """`devices: N` is `distributed.devices: N`; the two spellings in one place must agree."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        problems.append(f"{where}: 'devices' ({owner}) is how many of the batch's processes share the clip, a "
                        f"whole number >= 1, got {value!r}. To fix: e.g. 'devices: 2', or drop it (one device).")
        return
    written = owner_config.get("distributed.devices")
    if written is not None and str(written).strip() != text:
        problems.append(f"{where}: 'devices: {text}' and config 'distributed.devices: {written}' ({owner}) "
                        f"disagree. To fix: keep 'devices' alone.")
    overrides["distributed.devices"] = int(text)


def _check_video_span(draft: _Draft, info: Any, problems: list[str]) -> None:
    """The frames the job selects exist, and its window settings fit the frame count."""
    from ..pipeline.checks import check_frame_settings
    from ..video.io import model_size_for, select_span

    v = draft.config.video
    draft.model_size = model_size_for(info.width, info.height, v.size)
    try:
        count = len(select_span(info, None if v.frames == "all" else v.frames, v.stride, v.start,
                                start_time=v.start_time, duration=v.duration))
        check_frame_settings(draft.config, count)
        draft.frame_count = count
    except InputError as exc:  # its fix names CLI flags; in a job file they are config keys
        text = re.sub(r"--(frames|stride|start) (\d+)", r"video.\1: \2", str(exc))
        problems.append(f"{draft.where}: " + re.sub(r"--devices (\d+)", r"devices: \1", text))


def _check_files(draft: _Draft, checks: FileChecks, base: Path, problems: list[str]) -> None:
    """The video and style exist and decode (once per file), and the frame selection fits."""
    where = draft.where
    if draft.video is not None:
        if not draft.video.is_file():
            problems.append(f"{where}: video file not found: {draft.video} (relative paths in a job file "
                            f"start at its folder, {base}). To fix: correct the path.")
        else:
            info = checks.video(draft.video)
            if isinstance(info, str):
                problems.append(f"{where}: {info}")
            elif draft.config is not None:
                _check_video_span(draft, info, problems)
    if draft.style is not None:
        if not draft.style.is_file():
            problems.append(f"{where}: style image not found: {draft.style}. To fix: correct the path.")
        elif (message := checks.style(draft.style)) is not None:
            problems.append(f"{where}: {message}")


def _assign_ids(drafts: list[_Draft], problems: list[str]) -> None:
    """Default ids, then duplicate ids and colliding output files (case-insensitive)."""
    stems = {id(d): sanitize_id(d.video.stem) for d in drafts if d.id is None and d.video is not None}
    taken = [d.id for d in drafts if d.id is not None] + list(stems.values())
    for d in drafts:
        if d.id is None and d.video is not None:
            stem = stems[id(d)]
            ambiguous = taken.count(stem) > 1 and d.style is not None
            d.id = sanitize_id(f"{d.video.stem}-{d.style.stem}") if ambiguous else stem
    by_id: dict[str, list[_Draft]] = defaultdict(list)
    for d in drafts:
        if d.id is not None:
            by_id[d.id].append(d)
    for job_id, group in by_id.items():
        if len(group) > 1:
            problems.append(f"{', '.join(d.where for d in group)}: duplicate id '{job_id}' (the id names the "
                            f"output {job_id}.mp4; by default it is the video name, plus the style's when "
                            f"needed). To fix: give each of these jobs its own 'id'.")
    owners: dict[str, set[str]] = defaultdict(set)
    for job_id in by_id:
        for name in OutputLayout.for_job(".", job_id).names():
            owners[name.casefold()].add(job_id)
    for name in RESERVED_NAMES:
        for job_id in sorted(owners.get(name.casefold(), ())):
            problems.append(f"{by_id[job_id][0].where}: id '{job_id}' would write {name}, which the batch "
                            f"uses for its summary. To fix: choose another 'id'.")
    reported: set[frozenset[str]] = set()
    for name, ids in owners.items():
        if len(ids) > 1 and frozenset(ids) not in reported:
            reported.add(frozenset(ids))
            problems.append(f"{', '.join(by_id[i][0].where for i in sorted(ids))}: ids {', '.join(map(repr, sorted(ids)))} "
                            f"write the same output file '{name}' (names that differ only in case collide on "
                            f"macOS and Windows). To fix: give these jobs clearly different ids.")


def resolve_jobs(raw: RawJobFile, label: str, base: Path, config: Config | None = None, *,
                 style: str | os.PathLike | None = None, prompt: str | None = None) -> list[BatchJob]:
    """Validate raw entries and resolve them into jobs; raise `JobFileError` listing every problem."""
    config = config if config is not None else load_config()
    problems = [f"{label} line {line}: {msg}" if line else f"{label}: {msg}" for line, msg in raw.problems]
    if config.distributed != DistributedConfig():  # or every job would inherit a share it never asked for
        problems.append(f"{label}: the base config (--config / --set) sets distributed.* ({config.distributed}); a "
                        f"batch's processes come from its --devices / --num-nodes / --accelerator and a job's share "
                        f"from its 'devices: N'. To fix: drop distributed.* from --config / --set.")
    for key in raw.defaults:
        if key not in DEFAULT_KEYS:
            problems.append(f"{label}: unknown key '{key}' in 'defaults'. Keys allowed there: {', '.join(DEFAULT_KEYS)}.")
    # A style from the command line is relative to the current folder, not to the job file.
    fallback = {"style": str(Path(style).expanduser().absolute()) if style is not None else None, "prompt": prompt}
    checks = FileChecks()
    drafts = [d for e in raw.entries
              if (d := _draft(e, label, base, fallback, raw.defaults, config, checks, problems)) is not None]
    _assign_ids(drafts, problems)
    if problems:
        raise JobFileError(label, problems)
    jobs = []
    for d in drafts:
        seed = d.config.sampling.seed if "sampling.seed" in d.overrides else job_seed(d.id, config.sampling.seed)
        resolved = merge(d.config, {"sampling.seed": seed}, source=d.where)
        jobs.append(BatchJob(d.id, d.video, d.style, d.prompt, resolved, seed, d.overrides, d.where,
                             estimate_cost(resolved, d.model_size, d.frame_count), d.frame_count))
    return jobs


def check_outputs_not_inputs(jobs: Sequence[BatchJob], outdir: str | os.PathLike, label: str = "the jobs") -> None:
    """JobFileError listing every job whose output file would be an input of any job (by file identity)."""
    files = [job.files(outdir) for job in jobs]
    inputs = [path for job_files in files for path in job_files.inputs]
    problems = []
    for job, job_files in zip(jobs, files):
        try:
            job_files.refuse_inputs(inputs)
        except InputError as exc:
            problems.append(f"{job.source or job.id}: {exc}")
    if problems:
        raise JobFileError(label, problems)


def load_jobs(path: str | os.PathLike, config: Config | None = None, *, style: str | os.PathLike | None = None,
              prompt: str | None = None) -> list[BatchJob]:
    """Read and validate a YAML/CSV job file; `config` is the base every job's overrides apply to.

    `style`/`prompt` fill in for jobs (and file defaults) that do not set them. Raises
    `JobFileError` (an `InputError`) listing every bad entry with its line.
    """
    path = Path(path).expanduser().absolute()
    return resolve_jobs(read_job_file(path), path.name, path.parent, config, style=style, prompt=prompt)


def folder_jobs(folder: str | os.PathLike, style: str | os.PathLike | None, prompt: str | None,
                config: Config | None = None) -> list[BatchJob]:
    """One job per video file in `folder` (not recursive, sorted by name), all with `style`/`prompt`."""
    folder = Path(folder).expanduser().absolute()
    if not folder.is_dir():
        raise InputError(f"--videos {folder} is not a folder. To fix: pass a folder of video files.")
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                    and not p.name.startswith("."))
    if not videos:
        raise InputError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {folder}. "
                         f"To fix: pass the folder that holds your videos.")
    raw = RawJobFile(entries=[RawEntry({"video": str(v)}, i) for i, v in enumerate(videos, start=1)])
    return resolve_jobs(raw, str(folder), folder, config, style=style, prompt=prompt)
