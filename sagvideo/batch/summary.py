"""The end-of-run summary: done / skipped / failed per job and per rank, as a table and JSON.

Built from the status records (`state.py`) after every rank has finished, so it needs no
gather of Python objects across ranks: the files are the gather. A planned job without a
record from this run is "missing" (its rank died); it counts as a failure for the exit code.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Sequence

from .jobs import BatchJob
from .state import BatchState

STATUSES = ("done", "skipped", "failed", "missing")


@dataclass
class BatchSummary:
    """What a run did. `data` is what summary.json holds (rank 0 writes it); `exit_code` is 0 only
    if no job failed. Every rank gets one after all ranks finished."""

    data: dict[str, Any] = field(default_factory=dict)
    nothing_to_do: bool = False
    rank: int = 0  # global rank of the process holding this summary

    @property
    def counts(self) -> dict[str, int]:
        return self.data.get("counts", {})

    @property
    def exit_code(self) -> int:
        return 1 if self.counts.get("failed", 0) or self.counts.get("missing", 0) else 0


def build_summary(planned: Sequence[BatchJob], skipped: Sequence[BatchJob], state: BatchState, run_id: str,
                  world_size: int, wall_seconds: float, changed: Sequence[str] = ()) -> BatchSummary:
    """Read this run's status records of the planned jobs; skipped jobs were complete at the start;
    `changed` ids were complete but run again because their settings or inputs changed."""
    rows: list[dict[str, Any]] = []
    for job in planned:
        record = state.read_json(state.status_path(job.id))
        if record is None or record.get("run_id") != run_id:
            rows.append({"id": job.id, "status": "missing", "seconds": None, "rank": None,
                         "error": "no record from this run: the rank running it stopped early"})
            continue
        row = {"id": job.id, "status": record.get("status"), "seconds": record.get("seconds"),
               "rank": record.get("rank"), "device": record.get("device"), "seed": record.get("seed")}
        if record.get("devices", 1) > 1:  # a job several ranks shared: `rank` is its rank 0
            row["devices"] = record["devices"]
        if job.id in changed:
            row["rerun"] = "settings or input files changed"
        if record.get("status") == "failed":
            row["error"] = f"{record.get('error_type', 'Error')}: {record.get('error', '')}"
            row["failure_record"] = str(state.failure_path(job.id))
        rows.append(row)
    rows += [{"id": job.id, "status": "skipped", "seconds": None, "rank": None} for job in skipped]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
    ranks: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["rank"] is None:
            continue
        entry = ranks.setdefault(row["rank"], {"rank": row["rank"], "jobs": 0, "done": 0, "failed": 0, "seconds": 0.0})
        entry["jobs"] += 1
        entry[row["status"]] = entry.get(row["status"], 0) + 1
        entry["seconds"] = round(entry["seconds"] + (row["seconds"] or 0.0), 3)
    data = {
        "run_id": run_id,
        "outdir": str(state.outdir),
        "world_size": world_size,
        "wall_seconds": round(wall_seconds, 3),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "changed": list(changed),
        "ranks": [ranks[r] for r in sorted(ranks)],
        "jobs": rows,
    }
    return BatchSummary(data)


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_summary(summary: BatchSummary) -> str:
    """A plain-text table of jobs and ranks, then the totals and where the failure records are."""
    data = summary.data
    rows = data["jobs"]
    width = max([len("job")] + [len(r["id"]) for r in rows])
    lines = [f"{'job':<{width}}  {'status':<8}  {'seconds':>8}  {'rank':>4}"]
    for r in rows:
        rank = "-" if r["rank"] is None else str(r["rank"])
        lines.append(f"{r['id']:<{width}}  {r['status']:<8}  {_fmt_seconds(r['seconds']):>8}  {rank:>4}")
    if data["ranks"]:
        lines += ["", f"{'rank':>4}  {'jobs':>4}  {'done':>4}  {'failed':>6}  {'seconds':>8}"]
        for e in data["ranks"]:
            lines.append(f"{e['rank']:>4}  {e['jobs']:>4}  {e['done']:>4}  {e['failed']:>6}  {_fmt_seconds(e['seconds']):>8}")
    c = data["counts"]
    total = f"done {c['done']}, skipped {c['skipped']}, failed {c['failed']}"
    total += f", missing {c['missing']}" if c["missing"] else ""
    lines += ["", f"{total} in {data['wall_seconds']:.1f} s on {data['world_size']} rank(s). Outputs: {data['outdir']}"]
    if data.get("changed"):
        lines.append(f"run again because their settings or input files changed: {', '.join(data['changed'])}")
    for r in rows:
        if r["status"] in ("failed", "missing"):
            first = (r.get("error") or "").strip().splitlines()[0:1]
            lines.append(f"  {r['id']}: {first[0][:300] if first else r['status']}"
                         + (f" (details: {r['failure_record']})" if r.get("failure_record") else ""))
    if c["failed"] or c["missing"]:
        lines.append("Run the same command again to retry the failed jobs; finished ones are skipped.")
    return "\n".join(lines)
