"""The Lightning side of a batch: a dataset of planned jobs and a module that runs one per step.

`StylizeJobsModule.predict_step` only orchestrates: it calls `api.stylize_to_files` for
its job, on this rank's device, with the networks loaded once per process (on first use, so a
rank holding only padding never loads them). Every exception a job raises is caught and
returned as a "failed" outcome: an exception escaping `predict_step` would kill every rank.
A job several ranks share (`shared.py`, after predict) goes through the same `run_job`, with
the job's `Collective`.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from ..commandline import OUT_OF_MEMORY_FIX, out_of_memory_line
from ..config import merge
from .jobs import BatchJob
from .state import BatchState


class JobDataset(Dataset):
    """Planned jobs in dataset order; None items are no-op padding (see plan.pad)."""

    def __init__(self, items: Sequence[BatchJob | None]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> BatchJob | None:
        return self.items[index]


def collate_one(batch: list[Any]) -> Any:
    """batch_size=1 and no tensors: the batch is the item itself."""
    return batch[0]


class StylizeJobsModule(pl.LightningModule):
    """Runs one `BatchJob` per `predict_step` and returns its outcome (a dict; None for padding).

    The outcome holds id, status ("done" or "failed"), seconds, rank, device, seed, output,
    and for failures error_type, error and traceback. `JobStatusWriter` records it.
    """

    def __init__(self, outdir: str | os.PathLike):
        super().__init__()
        self.state = BatchState(outdir)
        self._runtime = None
        self._runtime_key: str | None = None
        self._runtime_error: BaseException | None = None

    @property
    def rank_device(self) -> torch.device:
        """This rank's device as Lightning assigned it (cuda:<local rank>, or cpu)."""
        return self.trainer.strategy.root_device

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # a job is paths and settings, not tensors

    def _runtime_for(self, job: BatchJob):
        """The loaded networks for the job's model settings, on this rank's device (cached).

        One set is kept: a job with other model settings replaces it. A load that failed is
        not retried for later jobs with the same settings (each would fail the same way).
        """
        from ..pipeline.runtime import Runtime

        video = job.frames > 1  # one frame runs without the motion module
        key = repr((sorted(job.config.to_dict()["model"].items()), video))
        if key != self._runtime_key:
            self._runtime, self._runtime_error, self._runtime_key = None, None, key
            if self.rank_device.type == "cuda":
                torch.cuda.empty_cache()
            try:
                self._runtime = Runtime.from_config(job.config, video=video, device=self.rank_device)
            except Exception as exc:
                self._runtime_error = exc
        if self._runtime_error is not None:
            raise self._runtime_error
        return self._runtime

    def run_job(self, job: BatchJob, collective: Any = None) -> dict[str, Any]:
        """Run `job` through the pipeline; never raises for a job's own failure.

        With a `distributed.collective.Collective`, this rank's part of a job its ranks share:
        rank 0 writes the files; a failure is marked `collective_error` when it was only another
        rank leaving."""
        from ..api import stylize_to_files
        from ..distributed.launch import is_collective_error
        from ..distributed.rank import run_rank

        # The job is known unfinished, so files under its name are leftovers of an earlier attempt.
        config = merge(job.config, {"output.overwrite": True}, source=job.source)
        files = job.files(self.state.outdir, config.output)
        outcome: dict[str, Any] = {"id": job.id, "rank": self.global_rank, "device": str(self.rank_device),
                                   "seed": job.seed, "output": str(files.main), "source": job.source}
        start = time.perf_counter()
        try:
            extra = {"job_id": job.id, "job_fingerprint": job.fingerprint()}
            runtime = self._runtime_for(job)
            with torch.enable_grad():  # predict runs under no_grad; SAG needs gradients
                if collective is None:
                    stylize_to_files(job.video, job.style, job.prompt, files, config=config, runtime=runtime,
                                     seed=job.seed, progress=False, report_extra=extra)
                else:
                    run_rank(job.video, job.style, job.prompt, files, config=config, runtime=runtime,
                             collective=collective, seed=job.seed, report_extra=extra)
            outcome["status"] = "done"
        except torch.OutOfMemoryError as exc:
            if self.rank_device.type == "cuda":
                torch.cuda.empty_cache()
            outcome.update(status="failed", error_type="OutOfMemoryError",
                           error=f"out of memory on {self.rank_device}: {out_of_memory_line(exc)} {OUT_OF_MEMORY_FIX}",
                           traceback=traceback.format_exc())
        except Exception as exc:  # any job failure is recorded, the batch goes on
            outcome.update(status="failed", error_type=type(exc).__name__, error=str(exc),
                           traceback=traceback.format_exc())
            if collective is not None:
                outcome["collective_error"] = is_collective_error(exc)
        outcome["seconds"] = round(time.perf_counter() - start, 3)
        return outcome

    def predict_step(self, batch: BatchJob | None, batch_idx: int) -> dict[str, Any] | None:
        if batch is None:  # padding for a rank that has no job
            return None
        return self.run_job(batch)
