"""Many stylization jobs over GPUs and nodes with PyTorch Lightning, resumable.

    from sagvideo.batch import load_jobs, run_batch
    summary = run_batch("jobs.yaml", "out/", config=load_config("video"), devices=2)

`jobs` (parsing, validation, ids, seeds) imports no Lightning; the Lightning pieces
(`JobDataset`, `StylizeJobsModule`, `JobStatusWriter`, `run_batch`) load on first access, so
validating a job file or finding nothing to do stays fast.
"""

from ..lazy import lazy_getattr
from .jobs import BatchJob, JobFileError, folder_jobs, job_seed, load_jobs

_LAZY = {
    "JobDataset": "sagvideo.batch.module",
    "StylizeJobsModule": "sagvideo.batch.module",
    "JobStatusWriter": "sagvideo.batch.writer",
    "BatchSummary": "sagvideo.batch.summary",
    "run_batch": "sagvideo.batch.run",
    "add_batch_arguments": "sagvideo.batch.run",
    "main_batch": "sagvideo.batch.run",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["BatchJob", "JobFileError", "folder_jobs", "job_seed", "load_jobs", *_LAZY]
