"""The all-gathers the sharded pipeline needs, over the process group Lightning set up (or a subgroup).

Every call is collective: all ranks of the group make it, in the same order, with the same shapes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class Collective:
    """This process's place in the run: `rank` of `world`, and the seconds spent exchanging.

    `group`: the process group to exchange over; None is the default group (every process of the
    launch). A batch job shared by global ranks 0..N-1 passes their subgroup, where rank == global rank.
    """

    rank: int
    world: int
    device: torch.device = torch.device("cpu")  # where exchanged tensors must live (NCCL: this rank's GPU)
    seconds: dict[str, float] = field(default_factory=dict)
    group: Any = None

    def exchange(self, tensor: Tensor) -> list[Tensor]:
        """Every rank's `tensor` (same shape everywhere), in rank order."""
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor, group=self.group)
        return parts

    def objects(self, value: Any) -> list[Any]:
        """Every rank's picklable `value`, in rank order."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value, group=self.group)
        return out

    def timed(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 4)


def chunk_spans(frames: int, chunk: int) -> list[tuple[int, int]]:
    """Frames [start, stop) in chunks of `chunk`, as the one-device decode walks them."""
    return [(i, min(i + chunk, frames)) for i in range(0, frames, chunk)]


def split_chunks(collective: Collective, spans: Sequence[tuple[int, int]],
                 work: Callable[[int, int], np.ndarray], stage: str) -> np.ndarray:
    """`work(start, stop)` -> array (stop - start, ...) for chunks dealt round-robin, gathered in order.

    Each rank runs chunks rank, rank + world, ...; the results (same dtype and trailing shape on
    every rank) are padded to one size, all-gathered and concatenated in frame order.
    """
    mine = {i: work(*spans[i]) for i in range(collective.rank, len(spans), collective.world)}
    if not mine:
        raise ValueError(f"{len(spans)} chunk(s) for {collective.world} ranks: a rank would have nothing to do.")
    sample = next(iter(mine.values()))
    slots = -(-len(spans) // collective.world)
    size = max(b - a for a, b in spans)
    payload = np.zeros((slots, size, *sample.shape[1:]), dtype=sample.dtype)
    for slot, i in enumerate(sorted(mine)):
        payload[slot, :len(mine[i])] = mine[i]
    parts = collective.timed(stage, collective.exchange, torch.from_numpy(payload).to(collective.device))
    return np.concatenate([parts[i % collective.world][i // collective.world, :b - a].cpu().numpy()
                           for i, (a, b) in enumerate(spans)])
