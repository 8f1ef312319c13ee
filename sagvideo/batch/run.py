"""`sagvideo batch`: validate every job, skip finished ones, run the rest over ranks, summarise.

    sagvideo batch jobs.yaml -o OUTDIR [--devices N] [--num-nodes M] [--accelerator auto]
                   [--config NAME] [--set key=value ...]
    sagvideo batch --videos DIR --style ref.png --prompt "..." -o OUTDIR

Also `python -m sagvideo.batch ...`. Multi-process runs re-execute this same command once per
extra local rank (Lightning's DDP launcher); under `torchrun` or SLURM `srun` every rank runs
it and Lightning reads the rank from the environment. Every rank validates and plans the same
way, so the ranks agree without talking before the Trainer starts. The one-device jobs are
spread over the ranks by `Trainer.predict`; then the jobs that ask for several devices run one
at a time, each over global ranks 0..N-1 (`shared.py`).

Exit codes: 0 every job done or skipped (or nothing to do); 1 some job failed (records in
OUTDIR/.sagvideo/failed/); 2 bad job file, flag or config (nothing was run). Ranks other than
0 exit 0 when their jobs ran (failed ones included): Lightning's launcher and torchrun kill the
other ranks when one exits non-zero, which would cut rank 0 off before its summary.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
import warnings
from typing import Any, Callable, Sequence

from ..commandline import add_config_flags, config_from_flags, run_command
from ..config import Config, accelerator_for, load_config
from ..errors import InputError
from ..signals import Interrupted
from .jobs import BatchJob, check_outputs_not_inputs, folder_jobs, load_jobs
from .plan import arrange, pad, rank_of, split_finished
from .shared import check_job_devices, split_shared
from .state import BatchState, RunLock, clean_stale_temps
from .summary import BatchSummary, build_summary, format_summary


def parse_devices(value: str | int) -> int | str:
    """'2' -> 2, '-1' -> -1 (all), 'auto' and '0,1' stay strings, as Lightning accepts them."""
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


def requested_world_size(accelerator: str, devices: int | str, num_nodes: int) -> int:
    """Processes the flags ask for; decides strategy="ddp" before the Trainer exists."""
    import torch

    if isinstance(devices, str) and "," in devices:
        count = len([d for d in devices.split(",") if d.strip()])
    elif isinstance(devices, int) and devices > 0:
        count = devices
    else:  # "auto" or -1: every GPU when one is used, else one CPU process
        use_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        count = max(1, torch.cuda.device_count()) if use_gpu else 1
    return count * num_nodes


def env_global_rank() -> int:
    """This process's rank as the launchers set it (0 when run alone)."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def make_trainer(accelerator: str, devices: int | str, num_nodes: int, callbacks: list[Any]):
    """The predict Trainer: no inference mode (SAG needs gradients), no logging or checkpoints."""
    import pytorch_lightning as pl

    from ..console import quiet_lightning

    quiet_lightning()  # after the import, which sets Lightning's loggers to INFO
    world = requested_world_size(accelerator, devices, num_nodes)
    return pl.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes,
        strategy="ddp" if world > 1 else "auto",
        inference_mode=False, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks,
    )


def _gather_jobs(jobs: str | os.PathLike | Sequence[BatchJob] | None, videos: str | os.PathLike | None,
                 config: Config, style: str | os.PathLike | None, prompt: str | None) -> list[BatchJob]:
    if jobs is not None and videos is not None:
        raise InputError("give a job file or --videos DIR, not both. To fix: drop one of them.")
    if videos is not None:
        return folder_jobs(videos, style, prompt, config)
    if jobs is None:
        raise InputError("no jobs given. To fix: pass a job file (jobs.yaml or jobs.csv), "
                         "or --videos DIR --style IMAGE --prompt TEXT.")
    if isinstance(jobs, (str, os.PathLike)):
        return load_jobs(jobs, config, style=style, prompt=prompt)
    return list(jobs)


def run_batch(
    jobs: str | os.PathLike | Sequence[BatchJob] | None,
    output: str | os.PathLike,
    *,
    config: Config | None = None,
    videos: str | os.PathLike | None = None,
    style: str | os.PathLike | None = None,
    prompt: str | None = None,
    devices: int | str = "auto",
    num_nodes: int = 1,
    accelerator: str | None = None,
    echo: Callable[[str], None] = lambda text: print(text, flush=True),
) -> BatchSummary:
    """Run every unfinished job once across all ranks; return the summary (on every rank).

    `jobs`: a job file path, a list of `BatchJob` (from `load_jobs`/`folder_jobs`, which validate
    them), or None with `videos=DIR`. `config` is the base
    config the jobs' overrides apply to. Raises `JobFileError`/`InputError` before any model is
    loaded when a job or flag is bad. With more than one process, call it from a script (the
    DDP launcher re-runs the script for each extra rank).
    """
    config = config if config is not None else load_config()
    job_list = _gather_jobs(jobs, videos, config, style, prompt)
    state = BatchState(output)
    if state.outdir.exists() and not state.outdir.is_dir():
        raise InputError(f"-o {state.outdir} is a file. To fix: pass a folder for the outputs.")
    check_outputs_not_inputs(job_list, state.outdir)
    pending, finished, changed = split_finished(job_list, state.outdir)
    if not pending:
        return _nothing_to_do(state, len(job_list), len(finished), echo)
    if changed and env_global_rank() == 0:
        echo(f"{len(changed)} finished job(s) run again: their settings or input files changed since their "
             f"outputs were made: {', '.join(job.id for job in changed)}")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # jobs are not data loading
    writer = _status_writer(state)
    trainer = _trainer_or_input_error(accelerator or accelerator_for(config), devices, num_nodes, writer)
    world = trainer.world_size
    check_job_devices(pending, world, f"--devices {devices} --num-nodes {num_nodes}")  # before any process starts
    single, shared = split_shared(pending)
    items = pad(arrange(single, world), world)
    writer.plan_ids = [job.id if job else None for job in items] + [f"{job.id} x{job.devices}" for job in shared]
    lock = RunLock(state)
    if trainer.global_rank == 0:
        state.create()
        lock.acquire()
    try:
        return _predict(trainer, state, items, shared, finished, writer, echo, [job.id for job in changed])
    finally:
        lock.release()


def _nothing_to_do(state: BatchState, total: int, finished: int, echo: Callable[[str], None]) -> BatchSummary:
    """Every job is complete: clean what a killed run left (rank 0) and say so."""
    if env_global_rank() == 0:
        if state.root.is_dir():
            with RunLock(state):
                clean_stale_temps(state)
        echo(f"nothing to do: all {total} jobs are complete in {state.outdir}")
    return BatchSummary({"counts": {"done": 0, "skipped": finished, "failed": 0, "missing": 0}},
                        nothing_to_do=True, rank=env_global_rank())


def _status_writer(state: BatchState):
    from .writer import JobStatusWriter

    return JobStatusWriter(str(state.outdir), [], uuid.uuid4().hex[:12])  # rank 0's id wins at setup


def _trainer_or_input_error(accelerator: str, devices: int | str, num_nodes: int, writer: Any):
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        return make_trainer(accelerator, parse_devices(devices), num_nodes, [writer])
    except (MisconfigurationException, ValueError) as exc:
        raise InputError(f"Lightning cannot use --accelerator {accelerator} --devices {devices} --num-nodes "
                         f"{num_nodes} here: {exc} To fix: pick devices this machine has (e.g. --accelerator cpu "
                         f"--devices 1).") from exc


def _predict(trainer: Any, state: BatchState, items: list, shared: list[BatchJob], finished: list[BatchJob],
             writer: Any, echo: Callable[[str], None], changed: list[str]) -> BatchSummary:
    """Run the planned items, then the shared jobs (rank 0 holding the lock); summarise from the status records."""
    from torch.utils.data import DataLoader

    from .module import JobDataset, StylizeJobsModule, collate_one
    from .shared import run_shared_jobs

    world, planned = trainer.world_size, [job for job in items if job is not None] + shared
    if trainer.global_rank == 0:
        clean_stale_temps(state)
        state.write_json(state.plan_path, {"world_size": world, "jobs": [
            {"position": i, "rank": rank_of(i, world), "id": job.id if job else None,
             "cost": job.cost if job else 0.0} for i, job in enumerate(items)],
            "shared_jobs": [{"id": job.id, "devices": job.devices, "ranks": list(range(job.devices)),
                             "cost": job.cost} for job in shared]})
        echo(f"{len(planned)} jobs to run on {world} rank(s)" + (f" ({len(shared)} shared by several ranks, after "
             f"the others)" if shared else "") + f", {len(finished)} already complete in {state.outdir}")
    loader = DataLoader(JobDataset(items), batch_size=1, shuffle=False, collate_fn=collate_one, num_workers=0)
    module = StylizeJobsModule(state.outdir)
    start = time.perf_counter()
    try:
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        run_shared_jobs(trainer, module, shared, writer)
    except (Interrupted, KeyboardInterrupt) as exc:  # say what finished, then end as the signal policy says
        _summarise(trainer, state, planned, finished, writer, start, changed, echo, interrupted=exc)
        raise
    return _summarise(trainer, state, planned, finished, writer, start, changed, echo)


def _summarise(trainer: Any, state: BatchState, planned: list[BatchJob], finished: list[BatchJob], writer: Any,
               start: float, changed: list[str], echo: Callable[[str], None],
               interrupted: BaseException | None = None) -> BatchSummary:
    """Build the summary from the status records; rank 0 writes summary.json and prints the table.
    After an interrupt, the jobs it cut off are listed as not finished (the next run does them)."""
    summary = build_summary(planned, finished, state, writer.run_id, trainer.world_size,
                            time.perf_counter() - start, changed)
    summary.rank = trainer.global_rank
    if interrupted is not None:
        signal_name = getattr(interrupted, "name", "SIGINT")
        summary.data["interrupted"] = signal_name
        for row in summary.data["jobs"]:
            if row["status"] == "missing":
                row["error"] = f"not finished: the run was interrupted ({signal_name})"
    if summary.rank == 0:
        state.write_json(state.summary_path, summary.data)
        echo(format_summary(summary))
    return summary


def add_batch_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `sagvideo batch` flags (the CLI wires them into a subcommand)."""
    parser.add_argument("jobs", nargs="?", help="job file: YAML (a list, or {jobs: [...], defaults: {...}}) or "
                        "CSV with a header video,style,prompt,id,devices (+ dotted config keys); paths relative to it")
    parser.add_argument("--videos", metavar="DIR", help="instead of a job file: one job per video file in DIR")
    parser.add_argument("--style", metavar="IMAGE", help="style image for jobs that set none")
    parser.add_argument("--prompt", metavar="TEXT", help="prompt for jobs that set none")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                        help="output folder: <id>.mp4, <id>.json, <id>.contact.png, summary.json")
    parser.add_argument("--devices", default="auto", metavar="N",
                        help="processes per node: a number, -1 or auto (all GPUs; 1 on CPU), or GPU ids '0,1'")
    parser.add_argument("--num-nodes", type=int, default=1, metavar="M", help="nodes (torchrun/SLURM runs)")
    parser.add_argument("--accelerator", default=None,
                        help="auto, gpu, cpu, ... (default: from model.device in the config)")
    add_config_flags(parser, " for every job")
    parser.add_argument("--verbose", action="store_true",
                        help="show every third-party log line and warning (filtered by default)")
    return parser


def main_batch(args: argparse.Namespace) -> int:
    """Run `sagvideo batch` from parsed flags; returns the exit code (see module docstring).
    Errors propagate: the caller wraps it in `commandline.run_command`."""
    if args.num_nodes < 1:
        raise InputError(f"--num-nodes must be >= 1, got {args.num_nodes}.")
    summary = run_batch(args.jobs, args.output, config=config_from_flags(args), videos=args.videos, style=args.style,
                        prompt=args.prompt, devices=args.devices, num_nodes=args.num_nodes,
                        accelerator=args.accelerator)
    return summary.exit_code if summary.rank == 0 else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sagvideo.batch ...`"""
    from ..console import configure_output

    parser = add_batch_arguments(argparse.ArgumentParser(
        prog="sagvideo batch", description="Stylize many videos over GPUs and nodes; re-run to resume."))
    args = parser.parse_args(argv)
    configure_output(verbose=args.verbose)
    return run_command(main_batch, args)


if __name__ == "__main__":
    raise SystemExit(main())
