"""Many stylization jobs over GPUs and nodes with PyTorch Lightning, resumable.

    from sagvideo.batch import load_jobs, run_batch
    summary = run_batch("jobs.yaml", "out/", config=load_config("video"), devices=2)

`jobs` (parsing, validation, ids, seeds) imports no Lightning; the Lightning pieces
(`JobDataset`, `StylizeJobsModule`, `JobStatusWriter`, `run_batch`) load on first access, so
validating a job file or finding nothing to do stays fast.
"""

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


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sagvideo.batch' has no attribute {name!r}")


__all__ = ["BatchJob", "JobFileError", "folder_jobs", "job_seed", "load_jobs", *_LAZY]
