"""Start the ranks of one clip with Lightning Fabric, run the sharded pipeline, end cleanly.

Fabric's DDP launcher re-runs the command once per extra local rank (as the batch does); under
`torchrun` or SLURM `srun` every rank runs it and Fabric reads the rank from the environment.
Rank 0 checks and locks the outputs and writes them (atomically, through `api.stylize_to_files`);
the other ranks run the same stages without writing anything.

Faults: a rank that fails (an error, out of memory) or dies ends the run on every rank with one
message naming the rank and its device; rank 0 then writes nothing, its staging is removed on
the way out (the output code's `finally`s), and the launcher stops the ranks it started. SIGINT
or SIGTERM on the launcher ends the run the same way. Lightning's child-process observer, which
would SIGKILL the launcher 0-5 s after a child fails (cutting its cleanup short), is kept from
doing so: the launcher watches the ranks it started itself, through the collectives.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Sequence

from ..config import Config
from ..errors import SagVideoError
from ..signals import Interrupted

STOP_GRACE_SECONDS = 10.0  # a rank told to stop (SIGTERM) gets this long before SIGKILL


class RankFailed(SagVideoError, RuntimeError):
    """A rank of a distributed run failed or died; the run was ended on every rank. Exit code 1."""

    exit_code = 1


def accelerator_of(config: Config) -> str:
    """Fabric's accelerator: `distributed.accelerator`, or from `model.device` when it is auto."""
    wanted = config.distributed.accelerator
    if wanted == "auto":
        from ..config import accelerator_for

        wanted = accelerator_for(config)
    return "gpu" if wanted == "cuda" else wanted


def make_fabric(config: Config):
    """A DDP Fabric over `distributed.devices` x `distributed.num_nodes` processes."""
    from lightning_fabric import Fabric

    from ..console import quiet_lightning

    quiet_lightning()
    d = config.distributed
    return Fabric(accelerator=accelerator_of(config), devices=d.devices, num_nodes=d.num_nodes, strategy="ddp")


def _keep_observer_from_killing() -> None:
    """Lightning's observer thread SIGKILLs this process when a child fails; the run ends itself instead."""
    for thread in threading.enumerate():
        if thread.name == "child-process-observer" and hasattr(thread, "_run"):
            thread._run = lambda: True  # its next round ends the thread without killing anything


def _exit_text(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}" + (" (its error is above)" if code in (1, 2) else "")


def _dead_child(procs: Sequence[Any], wait: float) -> tuple[int, int] | None:
    """(local rank, exit code) of the first started rank that ended badly, waiting up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code not in (None, 0):
                return i + 1, code
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _stop_children(procs: Sequence[Any]) -> None:
    """SIGTERM the ranks this launcher started (they unwind like an interrupt), SIGKILL after a grace."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.terminate()
    if running:
        import torch.distributed as dist

        if dist.is_initialized():  # a rank waiting in a collective for this one returns (and sees its signal)
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - the ranks are stopped below either way
                pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - still running after the grace
            proc.kill()
            proc.wait()


def _failure(rank: int, places: list[str] | None, device: str, exc: BaseException, procs: Sequence[Any]
             ) -> RankFailed:
    """The one message for a failed run: the rank that died (seen from the launcher), else this rank's error."""
    place = (lambda r: places[r] if places and r < len(places) else "its device")
    dead = _dead_child(procs, wait=3.0) if procs else None
    if dead is not None:
        other, code = dead
        return RankFailed(f"rank {other} on {place(other)} stopped ({_exit_text(code)}); the run was ended on every "
                          f"rank and no output was written.")
    import torch

    from ..commandline import out_of_memory_line

    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.OutOfMemoryError):
        what = f"out of memory ({out_of_memory_line(exc)}); to fix: fewer frames per window or more devices"
    elif is_collective_error(exc):
        what = f"another rank left the run ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return RankFailed(f"rank {rank} on {device} failed: {what}; the run was ended on every rank and no output "
                      f"was written.")


def is_collective_error(exc: BaseException) -> bool:
    """Whether `exc` is a collective that failed because another rank left (or was lost)."""
    import torch.distributed as dist

    backend_error = getattr(dist, "DistBackendError", ())
    return (backend_error and isinstance(exc, backend_error)) or "gloo" in str(exc).lower() \
        or "connection closed" in str(exc).lower()


def start_ranks(config: Config):
    """Launch (or join) the run's ranks: (fabric, `Collective`, the processes this one started)."""
    from .collective import Collective

    fabric = make_fabric(config)
    fabric.launch()
    procs = list(getattr(fabric.strategy.launcher, "procs", None) or []) if fabric.global_rank == 0 else []
    if procs:
        _keep_observer_from_killing()
    return fabric, Collective(fabric.global_rank, fabric.world_size, fabric.device), procs


def check_before_launch(video: str | os.PathLike, config: Config) -> None:
    """The clip's window groups suffice for the ranks (and the gradient can cross them), from the
    video's header alone: a refusal costs no process start and no model load."""
    from ..pipeline.checks import check_frame_settings
    from ..video.io import probe_video, select_span

    v = config.video
    count = len(select_span(probe_video(video), None if v.frames == "all" else v.frames, v.stride, v.start,
                            start_time=v.start_time, duration=v.duration))
    check_frame_settings(config, count)


def stylize_to_files_distributed(video: str | os.PathLike, style: str | os.PathLike, prompt: str | None,
                                 output: str | os.PathLike, *, config: Config, depth_dir: str | os.PathLike | None = None,
                                 seed: int | None = None, progress: bool = False,
                                 report_extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """`api.stylize_to_files` with the clip's windows shared out over the ranks `config.distributed` asks for.

    Returns the report on rank 0 and None on the other ranks. Raises `RankFailed` (every rank)
    when a rank fails or dies, `ConfigError` (every rank) when there are fewer window groups
    than ranks (`checks.check_frame_settings`).
    """
    from ..pipeline.runtime import Runtime
    from .rank import rank_config, run_rank

    check_before_launch(video, config)
    fabric, collective, procs = start_ranks(config)
    rank, world = collective.rank, collective.world
    device = str(fabric.device)
    places: list[str] | None = None
    try:
        places = [f"{host} {where}" if world > fabric.strategy.num_processes else where
                  for host, where in collective.objects((os.uname().nodename, device))]
        runtime = Runtime.from_config(rank_config(config, rank), video=True, device=fabric.device)
        report = run_rank(video, style, prompt, output, config=config, runtime=runtime, collective=collective,
                          depth_dir=depth_dir, seed=seed, progress=progress, report_extra=report_extra)
        for proc in procs:
            proc.wait()
        return report
    except (Interrupted, KeyboardInterrupt):
        raise
    except SagVideoError as exc:
        if rank != 0 and not isinstance(exc, RankFailed):
            raise SystemExit(2) from exc  # every rank checks the same inputs: rank 0 tells it once
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure of a rank ends the run with one message
        raise _failure(rank, places, device, exc, procs) from exc
    finally:
        _stop_children(procs)
