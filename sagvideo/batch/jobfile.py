"""Read a job file into raw entries that remember where they were written.

Formats:

* YAML list of jobs, or a mapping `{jobs: [...], defaults: {...}}`;
* CSV with a header row: `video`, `style`, `prompt`, `id`, `devices` columns, plus any dotted config key
  (`video.start`, `guidance.n`) as a column of per-job overrides; empty cells are unset.

Each entry keeps its 1-based line (YAML: the line its list item starts on; CSV: the row's
first line) so that validation can point at it. Nothing here checks values: `jobs.py` does.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError

JOB_KEYS = ("video", "style", "prompt", "id", "devices", "config")
DEFAULT_KEYS = ("style", "prompt", "devices", "config")
CSV_COLUMNS = tuple(key for key in JOB_KEYS if key != "config")  # config keys are dotted columns
TOP_KEYS = ("jobs", "defaults")


@dataclass
class RawEntry:
    """One job as written: its data, 1-based line (None when unknown) and 1-based index."""

    data: Any
    index: int
    line: int | None = None


@dataclass
class RawJobFile:
    """Entries, file-wide defaults, and structural problems (each a (line, message) pair)."""

    entries: list[RawEntry] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[int | None, str]] = field(default_factory=list)


def read_job_file(path: Path) -> RawJobFile:
    """Parse `path` by its suffix (.csv, else YAML, which includes JSON)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"job file {path} not found. To fix: check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read job file {path} ({exc}). To fix: pass a UTF-8 YAML or CSV file.") from exc
    if path.suffix.lower() == ".csv":
        return _read_csv(text)
    return _read_yaml(text, path)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _read_yaml(text: str, path: Path) -> RawJobFile:
    # One parse gives both the node tree (with line marks) and the plain data built from it.
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise InputError(f"job file {path} is not valid YAML: {exc}. To fix: correct the syntax.") from exc
    finally:
        loader.dispose()
    raw = RawJobFile()
    jobs_node = node
    if isinstance(data, dict):
        for key_node, value_node in node.value:
            key = key_node.value
            if key not in TOP_KEYS:
                raw.problems.append((_line(key_node), f"unknown top-level key '{key}'. A job file is a list of "
                                     f"jobs, or a mapping with the keys: {', '.join(TOP_KEYS)}."))
            elif key == "jobs":
                jobs_node = value_node
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raw.problems.append((None, "'defaults' must be a mapping with some of the keys "
                                 f"{', '.join(DEFAULT_KEYS)}, got {type(defaults).__name__}."))
        else:
            raw.defaults = defaults
        data = data.get("jobs")
    if data is None:
        raw.problems.append((None, "the file lists no jobs. To fix: write a list of jobs, each with "
                             "video and style (optional: prompt), or a 'jobs:' list."))
        return raw
    if not isinstance(data, list):
        raw.problems.append((_line(jobs_node), f"the jobs must be a YAML list ('- video: ...' items), "
                             f"got {type(data).__name__}."))
        return raw
    for index, (item, item_node) in enumerate(zip(data, jobs_node.value), start=1):
        raw.entries.append(RawEntry(item, index, _line(item_node)))
    return raw


def _read_csv(text: str) -> RawJobFile:
    raw = RawJobFile()
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = reader.fieldnames or []
    if "video" not in header:
        raw.problems.append((1, f"the CSV header must name a 'video' column (columns: {', '.join(CSV_COLUMNS)}, "
                             f"plus dotted config keys such as video.start), got: {', '.join(header) or 'nothing'}."))
        return raw
    for column in header:
        if column not in CSV_COLUMNS and "." not in column:
            raw.problems.append((1, f"unknown CSV column '{column}'. Columns: {', '.join(CSV_COLUMNS)}, "
                                 f"plus dotted config keys such as guidance.n."))
    for index, row in enumerate(reader, start=1):
        # line_num is the row's last line; blank lines before it and newlines inside quoted cells
        # make "previous row + 1" wrong, so count back from the end.
        cells = [c for v in row.values() for c in (v if isinstance(v, list) else [v]) if c]
        line = reader.line_num - sum(c.count("\n") for c in cells)
        if None in row:  # more cells than header columns
            raw.problems.append((line, f"row {index} has more cells than the header has columns. "
                                 f"To fix: quote cells that contain commas."))
            continue
        data: dict[str, Any] = {}
        config: dict[str, str] = {}
        for column, cell in row.items():
            if cell is None or not cell.strip():
                continue
            if "." in column:
                config[column] = cell.strip()
            elif column in CSV_COLUMNS:
                data[column] = cell.strip()
        if config:
            data["config"] = config
        raw.entries.append(RawEntry(data, index, line))
    if not raw.entries and not raw.problems:
        raw.problems.append((None, "the CSV has a header but no job rows."))
    return raw
