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

from ..config import Config

if TYPE_CHECKING:
    from .jobs import BatchJob

T = TypeVar("T")


def guided_step_count(config: Config) -> int:
    """How many of the sampling steps are guided: indices i with start <= i / steps < end."""
    s, g = config.sampling.steps, config.guidance
    if not g.enabled or g.strength == 0:
        return 0
    return sum(1 for i in range(s) if g.start <= i / s < g.end)


def network_passes(config: Config) -> float:
    """Estimated UNet(+ControlNet) evaluations of one job, in forward-pass units.

    Unguided step: 1. Guided step, per repeat: 1 for the step itself, n without a graph for the
    clean estimate, and n re-runs with a graph plus their VJP (about 2 forwards each): 1 + 3n.
    With adaptive n the average n is (n + 1) / 2.
    """
    g = config.guidance
    guided = guided_step_count(config)
    n = (g.n + 1) / 2 if g.adaptive_n else g.n
    return (config.sampling.steps - guided) + guided * g.repeats * (1 + 3 * n)


def estimate_cost(config: Config, model_size: tuple[int, int], frames: int) -> float:
    """Relative cost of a job: frames x pixels at model size x network passes."""
    width, height = model_size
    return float(frames * width * height * network_passes(config))


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


def split_finished(jobs: Sequence["BatchJob"], outdir: Path) -> tuple[list["BatchJob"], list["BatchJob"]]:
    """(pending, finished): a job is finished when its mp4 and a report marked complete exist."""
    from ..outputs import outputs_complete

    pending, finished = [], []
    for job in jobs:
        (finished if outputs_complete(job.output(outdir)) else pending).append(job)
    return pending, finished
