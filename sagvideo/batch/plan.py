"""Which jobs run, in what order, and how that order lands on the ranks.

How Lightning hands predict items to ranks (checked in pytorch-lightning 2.6 source and by
`tests/test_batch.py`): for a plain `DataLoader(shuffle=False)` under DDP, `Trainer.predict`
swaps in an `UnrepeatedDistributedSamplerWrapper`, which gives rank r the items
r, r + W, r + 2W, ... (strided, no padding, no duplicates; ranks may differ by one item), and
asserts every rank gets at least one item. So:

* `arrange` puts the jobs in an order whose strided split is balanced: longest first, and in
  each round of W items the longest goes to the rank with the least work so far;
* `pad` appends no-op items (None) when there are fewer jobs than ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TypeVar

if TYPE_CHECKING:
    from .jobs import BatchJob

T = TypeVar("T")


def arrange(jobs: Sequence["BatchJob"], world_size: int) -> list["BatchJob"]:
    """Order `jobs` so that the strided split (rank r takes positions r, r + W, ...) is balanced.

    Jobs are taken longest first (ties by id, so every rank computes the same order); each
    round fills positions k*W .. k*W + W - 1, the round's longest job going to the position of
    the rank with the least estimated work so far.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    ordered = sorted(jobs, key=lambda job: (-job.cost, job.id))
    load = [0.0] * world_size
    arranged: list["BatchJob"] = []
    for start in range(0, len(ordered), world_size):
        round_jobs = ordered[start:start + world_size]
        ranks = sorted(range(len(round_jobs)), key=lambda r: (load[r], r))  # the last round fills ranks 0..k-1
        slots: list["BatchJob | None"] = [None] * len(round_jobs)
        for job, rank in zip(round_jobs, ranks):
            slots[rank] = job
            load[rank] += job.cost
        arranged.extend(slots)  # type: ignore[arg-type]
    return arranged


def pad(items: Sequence[T], world_size: int) -> list[T | None]:
    """`items` plus None (no-op) items up to `world_size`: a rank without items crashes predict."""
    return list(items) + [None] * max(0, world_size - len(items))


def rank_of(position: int, world_size: int) -> int:
    """The rank that runs dataset position `position` under Lightning's strided split."""
    return position % world_size


def split_finished(jobs: Sequence["BatchJob"], outdir: Path
                   ) -> tuple[list["BatchJob"], list["BatchJob"], list["BatchJob"]]:
    """(pending, finished, changed): finished = the mp4 and a complete report made with the job's
    current settings and inputs (its `fingerprint`); changed = complete, but made with other ones
    (they are pending too, and run again)."""
    pending, finished, changed = [], [], []
    for job in jobs:
        layout = job.layout(outdir)
        if not layout.is_complete():
            pending.append(job)
        elif layout.read_report().get("job_fingerprint") == job.fingerprint():
            finished.append(job)
        else:
            pending.append(job)
            changed.append(job)
    return pending, finished, changed
