"""Test-only launcher: a command with observation hooks patched in, for the subprocess tests.

    python tests/hooked.py cli LOG ARGS...     # sagvideo ARGS; each stage start appends "<pid> <stage>"
    python tests/hooked.py batch LOG ARGS...   # python -m sagvideo.batch ARGS; each job start appends "<id> <rank>"
                                               # to LOG, each stage start "<pid> <stage>" to LOG.stages

    HOOKED_OOM_IN_SHARED_JOB=R python tests/hooked.py batch ...
                                               # global rank R raises out of memory at its first exchange
                                               # of the first job several ranks share (once per process)

The fault-injection tests kill a run inside a given stage (or make one rank of a shared job
fail) and the multi-rank tests count job executions from LOG; the production code carries no
hooks. Lightning's DDP launcher re-runs this same script (arguments and environment) for the
other ranks, so they are hooked too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's sagvideo, as `python -m` finds it


def append_line(path: str, text: str) -> None:
    """One O_APPEND write: lines from several processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)


def hook_stages(log: str) -> None:
    import sagvideo.outputs.writers
    import sagvideo.pipeline.report

    stage = sagvideo.pipeline.report.Stopwatch.stage

    @contextlib.contextmanager
    def logged_stage(self, name):
        append_line(log, f"{os.getpid()} {name}")
        with stage(self, name):
            yield

    staging_dir = sagvideo.outputs.writers.staging_dir

    def logged_staging_dir(*args, **kwargs):  # the outputs are written into a staging folder
        append_line(log, f"{os.getpid()} write")
        return staging_dir(*args, **kwargs)

    sagvideo.pipeline.report.Stopwatch.stage = logged_stage
    sagvideo.outputs.writers.staging_dir = logged_staging_dir


def hook_jobs(log: str) -> None:
    from sagvideo.batch.module import StylizeJobsModule

    run_job = StylizeJobsModule.run_job

    def logged_run_job(self, job, *args):
        append_line(log, f"{job.id} {self.global_rank}")
        return run_job(self, job, *args)

    StylizeJobsModule.run_job = logged_run_job


def hook_shared_job_fault(rank: int) -> None:
    """Global rank `rank` fails its first exchange over a batch job's subgroup, as a GPU out of memory would."""
    import torch

    from sagvideo.distributed.collective import Collective

    exchange = Collective.exchange
    fired: list[bool] = []

    def failing_exchange(self, tensor):
        if self.group is not None and self.rank == rank and not fired:
            fired.append(True)
            raise torch.OutOfMemoryError(f"injected by tests/hooked.py on rank {rank}")
        return exchange(self, tensor)

    Collective.exchange = failing_exchange


if __name__ == "__main__":
    from sagvideo.signals import install

    install()  # before the hooks import torch: an interrupt there must end as the command's would
    from sagvideo.cli import console_main  # the `sagvideo` command itself

    command, log, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if command == "batch":
        if os.environ.get("HOOKED_OOM_IN_SHARED_JOB", "").isdigit():
            hook_shared_job_fault(int(os.environ["HOOKED_OOM_IN_SHARED_JOB"]))
        hook_jobs(log)
        hook_stages(f"{log}.stages")
        console_main(["batch", *args])
    hook_stages(log)
    console_main(args)
