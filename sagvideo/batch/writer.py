"""Record each job's outcome as soon as it finishes, on the rank that ran it.

`JobStatusWriter` is a `BasePredictionWriter(write_interval="batch")`:

* OUTDIR/.sagvideo/status/<id>.json for every executed job (done or failed), tagged with the
  run id so the summary never mistakes a record of an earlier run for this one;
* OUTDIR/.sagvideo/failed/<id>.json with the error and traceback while a job's latest run
  failed; a later successful run of the job removes it.

It also keeps the ranks in step: at `setup` it checks that every rank planned the same jobs
(ranks that read OUTDIR at different moments, or different OUTDIRs, would run jobs twice or
not at all) and adopts rank 0's run id; at the end of predict it waits for every rank, on a
gloo group of its own with a long timeout, because ranks finish their last jobs at different
times and the default 30-minute collective timeout is shorter than one long video job.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any, Sequence

import pytorch_lightning as pl
import torch.distributed as dist
from pytorch_lightning.callbacks import BasePredictionWriter

from ..errors import InputError
from .jobs import BatchJob
from .state import BatchState

FINISH_TIMEOUT = datetime.timedelta(days=7)


def plan_fingerprint(plan_ids: Sequence[str | None]) -> str:
    """A short digest of the planned dataset order (None = padding)."""
    return hashlib.sha256("\n".join(i or "-" for i in plan_ids).encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class JobStatusWriter(BasePredictionWriter):
    """Writes status and failure records per job (see module docstring)."""

    def __init__(self, outdir: str, plan_ids: Sequence[str | None], run_id: str):
        super().__init__(write_interval="batch")
        self.state = BatchState(outdir)
        self.plan_ids = list(plan_ids)
        self.run_id = run_id
        self._group = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        self._group = dist.new_group(backend="gloo", timeout=FINISH_TIMEOUT)
        prints: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(prints, plan_fingerprint(self.plan_ids), group=self._group)
        if len(set(prints)) > 1:
            raise InputError(
                f"the ranks planned different job lists (fingerprints {prints}): they saw different "
                f"contents of {self.state.outdir}. To fix: put the output folder on a file system every "
                f"node shares, pass the same job file and flags to every rank, and run one batch per folder."
            )
        shared = [self.run_id]
        dist.broadcast_object_list(shared, src=0, group=self._group)
        self.run_id = shared[0]

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        if prediction is None:  # padding item
            return
        self.record(prediction, batch)

    def record(self, outcome: dict[str, Any], job: BatchJob) -> None:
        """Write the status record; write or clear the failure record."""
        job_id = outcome["id"]
        status = {**{k: v for k, v in outcome.items() if k != "traceback"}, "run_id": self.run_id,
                  "finished_at": _now()}
        if outcome["status"] == "failed":
            self.state.write_json(self.state.failure_path(job_id), {
                **status, "traceback": outcome.get("traceback", ""), "video": str(job.video),
                "style": str(job.style), "prompt": job.prompt, "overrides": job.overrides,
            })
        else:
            self.state.failure_path(job_id).unlink(missing_ok=True)
        self.state.write_json(self.state.status_path(job_id), status)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._group is not None:
            dist.barrier(group=self._group)  # every rank's records are written after this

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._group is not None and dist.is_initialized():
            dist.destroy_process_group(self._group)
        self._group = None
