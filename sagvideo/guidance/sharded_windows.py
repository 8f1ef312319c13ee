"""Context windows shared out over ranks: the same bytes as `WindowedEps` on one device.

`WindowedEps` predicts a clip's windows in groups of `batch` windows per network call and
blends the predictions in fixed window order. `ShardedWindowedEps` keeps exactly those groups
(the same windows per call, the same stacked batch shape, so every network call sees the same
input as on one device) and deals whole groups to ranks round-robin: group g runs on rank
g % world, so ranks differ by at most one group. After its calls each rank sends its groups'
outputs to all ranks (`exchange`, an all-gather), and every rank blends all of them in the
fixed window order exactly as `WindowedEps` does: the additions happen in the same order on
the same operands, so the blended prediction is bitwise the one-device one, on every rank.
VJPs go the same way: each rank differentiates its groups, the per-group gradients are
gathered and added in the fixed order.

Torch only: the all-gather is passed in (`exchange(tensor) -> list of every rank's tensor`),
so this module knows nothing of Lightning or process groups.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .windows import ContextWindows, WindowedEps, WindowFn, WindowVJP

# exchange(tensor) -> [rank 0's tensor, rank 1's, ...]; every rank passes the same shape
Exchange = Callable[[Tensor], Sequence[Tensor]]
# on_remote(windows, with_graph): windows other ranks evaluated, for progress and counts
RemoteCallback = Callable[[int, bool], None]


def deal_groups(groups: int, world: int) -> list[list[int]]:
    """Group indices per rank, round-robin: rank r runs groups r, r + world, ... (counts differ by <= 1)."""
    return [list(range(rank, groups, world)) for rank in range(world)]


def group_count(windows: int, batch: int) -> int:
    """Network calls per evaluation: windows in groups of `batch`."""
    return -(-windows // batch)


def windows_per_rank(windows: ContextWindows, batch: int, world: int) -> list[int]:
    """How many windows each rank predicts per evaluation (the load balance the report shows)."""
    sizes = [min(batch, len(windows) - g * batch) for g in range(group_count(len(windows), batch))]
    return [sum(sizes[g] for g in mine) for mine in deal_groups(len(sizes), world)]


@dataclass
class ShareTimes:
    """Seconds this rank spent in its own network calls and in exchanging results, per kind."""

    compute: dict[str, float] = field(default_factory=lambda: {"eps": 0.0, "vjp": 0.0})
    exchange: dict[str, float] = field(default_factory=lambda: {"eps": 0.0, "vjp": 0.0})
    exchanges: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"compute_seconds": {k: round(v, 4) for k, v in self.compute.items()},
                "exchange_seconds": {k: round(v, 4) for k, v in self.exchange.items()},
                "exchanges": self.exchanges}


class ShardedWindowedEps(WindowedEps):
    """`WindowedEps` whose groups of windows run on `world` ranks; this process is `rank`.

    Call it on every rank with the same x (B, C, F, h, w): each returns the same blended
    (eps, reference), bitwise equal to `WindowedEps` with the same `batch` on one device
    (given the same kernels: same device kind, dtype and threads per process). No autograd
    graph crosses ranks: gradients go through `vjp`.
    """

    def __init__(self, window_fn: WindowFn, windows: ContextWindows, *, rank: int, world: int, exchange: Exchange,
                 batch: int = 1, window_vjp: WindowVJP | None = None, on_remote: RemoteCallback | None = None):
        super().__init__(window_fn, windows, batch=batch, window_vjp=window_vjp)
        groups = group_count(len(windows), batch)
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in 0..{world - 1}, got {rank}.")
        if groups < world:
            raise ValueError(f"{world} ranks but only {groups} group(s) of windows ({len(windows)} window(s), "
                             f"{batch} per call): a rank would have nothing to do.")
        self.rank, self.world, self.exchange = rank, world, exchange
        self.on_remote = on_remote
        self.groups = list(self._groups())
        self.mine = deal_groups(len(self.groups), world)[rank]
        self.slots = len(deal_groups(len(self.groups), world)[0])  # the most groups any rank runs
        self.times = ShareTimes()

    def _remote_windows(self) -> int:
        return len(self.windows) - sum(len(self.groups[g]) for g in self.mine)

    def _share(self, outputs: list[Tensor], kind: str) -> list[Tensor]:
        """Every group's output (window-major like one call's), gathered from all ranks, in group order.

        outputs: this rank's, one per group in `self.mine`, each (parts, k*B, ...) with k <= batch.
        Groups are padded to `batch` windows and ranks to `slots` groups, so all send one shape.
        """
        first = outputs[0]
        per_window = first.shape[1] // len(self.groups[self.mine[0]])
        payload = first.new_zeros((self.slots, first.shape[0], self.batch * per_window, *first.shape[2:]))
        for slot, out in enumerate(outputs):
            payload[slot, :, :out.shape[1]] = out
        start = time.perf_counter()
        parts = self.exchange(payload.contiguous())
        self.times.exchange[kind] += time.perf_counter() - start
        self.times.exchanges += 1
        if len(parts) != self.world:
            raise RuntimeError(f"the exchange returned {len(parts)} parts for {self.world} ranks.")
        return [parts[g % self.world][g // self.world, :, :len(group) * per_window]
                for g, group in enumerate(self.groups)]

    def eps_with_reference(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Blended (eps, reference) for the whole clip, shaped like x, the same on every rank."""
        if x.dim() != 5 or x.shape[2] != self.windows.frames:
            raise ValueError(f"x must be (B, C, F, h, w) with F = {self.windows.frames}, got {tuple(x.shape)}.")
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("windows shared over ranks carry no autograd graph across ranks; take the guidance "
                               "gradient through `vjp` (guidance.gradient symplectic or adjoint, not direct).")
        start = time.perf_counter()
        outputs = [torch.stack(self._predict(self._gather(x, self.groups[g]), t, self.groups[g]))
                   for g in self.mine]
        self.times.compute["eps"] += time.perf_counter() - start
        gathered = self._share(outputs, "eps")
        if self.on_remote is not None:
            self.on_remote(self._remote_windows(), False)
        eps, reference = torch.zeros_like(x), torch.zeros_like(x)
        for group, out in zip(self.groups, gathered):  # the fixed window order of WindowedEps
            self._add_prediction(eps, reference, group, out[0], out[1])
        return eps, reference

    def vjp(self, x: Tensor, t: int, cotangent: Tensor) -> Tensor:
        """`(d eps / d x)^T cotangent` (shape of x): this rank's groups' VJPs, gathered, added in order."""
        start = time.perf_counter()
        outputs = [self._group_vjp(x, t, cotangent, self.groups[g]).unsqueeze(0) for g in self.mine]
        self.times.compute["vjp"] += time.perf_counter() - start
        gathered = self._share(outputs, "vjp")
        if self.on_remote is not None:
            self.on_remote(self._remote_windows(), True)
        out = torch.zeros_like(x)
        for group, g in zip(self.groups, gathered):
            self._add_gradient(out, group, g[0])
        return out
