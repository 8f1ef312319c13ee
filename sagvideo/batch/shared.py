"""Jobs that several processes of the batch share (`devices: N`): run after the one-device jobs.

A job with `devices: N` is sampled by global ranks 0..N-1 of the batch (on however many nodes
they are) as `sagvideo stylize --devices N` would sample it: the same bytes as on one device.
The shared jobs run one at a time in job-file order, once `Trainer.predict` (the one-device
jobs) has returned on every rank, in the same processes. For each, every rank of the batch
makes the job's process subgroup (`dist.new_group` must be called by all, in the same order);
ranks 0..N-1 run their part through `StylizeJobsModule.run_job` with a `Collective` bound to it,
rank 0 writing the outputs as for any job; the other ranks wait. All ranks then gather the
outcomes on a gloo group with a long timeout (the status writer's), and rank 0 records one.

Faults: a rank whose part raises (out of memory included) drops its handle on the subgroup;
on gloo, freeing the group closes its connections, so a peer blocked in one of the job's
collectives gets an error instead of waiting, and drops the group in turn. The job is recorded
failed with the message of the rank whose own error ended it (not of the peers that only saw
it go), rank 0's staging is removed by the output code, and the batch goes on. Not so on NCCL
(not tested): a peer inside an NCCL collective is not woken that way; the group's timeout and
NCCL's watchdog end the batch, which a rerun resumes (README).
"""

from __future__ import annotations

import gc
from typing import Any, Sequence

from .jobs import BatchJob, JobFileError


def split_shared(jobs: Sequence[BatchJob]) -> tuple[list[BatchJob], list[BatchJob]]:
    """(one-device jobs, shared jobs), each in the given order."""
    return [job for job in jobs if job.devices == 1], [job for job in jobs if job.devices > 1]


def check_job_devices(jobs: Sequence[BatchJob], world: int, flags: str) -> None:
    """JobFileError naming every job that asks for more processes than the batch has (`world`)."""
    problems = [f"{job.source or job.id}: 'devices: {job.devices}' asks for {job.devices} of the batch's processes, "
                f"but {flags} starts {world}. To fix: run the batch with --devices {job.devices} or more "
                f"(processes per node, times --num-nodes), or drop 'devices' from the job (one device)."
                for job in jobs if job.devices > world]
    if problems:
        raise JobFileError("the jobs", problems)


def job_outcome(job: BatchJob, outcomes: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """The one record of a shared job from its ranks' outcomes (rank order; None for ranks outside it).

    Done when rank 0 wrote the outputs (that needs every rank's share); else failed with the
    message of the lowest rank whose own error ended the job, not of a rank that only saw a peer
    leave (a gloo "connection closed")."""
    members = [o for o in outcomes if o is not None]
    lead = members[0]
    record = {**lead, "devices": job.devices, "seconds": max(o["seconds"] for o in members),
              "ranks": [{k: o.get(k) for k in ("rank", "device", "status", "seconds")} for o in members]}
    record.pop("collective_error", None)
    failed = [o for o in members if o["status"] == "failed"]
    if lead["status"] == "done":
        if failed:  # after the last exchange: the output is whole, but say so
            record["other_rank_errors"] = [f"rank {o['rank']}: {o['error_type']}: {o['error']}" for o in failed]
        return record
    cause = next((o for o in failed if not o.get("collective_error")), failed[0])
    record.update(status="failed", error_type=cause["error_type"], traceback=cause.get("traceback", ""),
                  error=f"rank {cause['rank']} on {cause['device']} failed, so the job's {job.devices} ranks "
                        f"stopped and no output was written: {cause['error']}")
    return record


def _run_part(module: Any, job: BatchJob, rank: int) -> dict[str, Any] | None:
    """This rank's part of `job` (None outside ranks 0..N-1); every rank of the batch calls it."""
    import torch.distributed as dist

    from ..distributed.collective import Collective

    group = dist.new_group(ranks=list(range(job.devices)))
    if rank >= job.devices:
        return None
    collective = Collective(rank, job.devices, module.rank_device, group=group)
    try:
        return module.run_job(job, collective)
    finally:
        # Free every handle on the group: on gloo that closes its connections, which is what ends a
        # peer still waiting in one of the job's collectives (see the module doc).
        dist.destroy_process_group(group)
        del collective, group
        gc.collect()


def run_shared_jobs(trainer: Any, module: Any, jobs: Sequence[BatchJob], writer: Any) -> None:
    """Run the shared `jobs` in order on every rank of `trainer`; rank 0 records each outcome
    through `writer` (a `JobStatusWriter`). Returns on every rank once every record is written."""
    import torch.distributed as dist

    from .writer import FINISH_TIMEOUT

    if not jobs:
        return
    talk = dist.new_group(backend="gloo", timeout=FINISH_TIMEOUT)  # the waiting ranks wait here
    try:
        for job in jobs:
            outcome = _run_part(module, job, trainer.global_rank)
            outcomes: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(outcomes, outcome, group=talk)
            if trainer.global_rank == 0:
                writer.record(job_outcome(job, outcomes), job)
        dist.barrier(group=talk)  # the records are written before any rank reads them for its summary
    finally:
        dist.destroy_process_group(talk)
