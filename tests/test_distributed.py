"""One clip over several processes: the same bytes as one device, the load balance, the faults.

The sharded windows are checked in-process first (ranks as threads exchanging through a
barrier, toy networks), then end to end: `sagvideo stylize --devices 2` launched in a
subprocess (Lightning Fabric DDP on CPU with gloo, two ranks) on a 40-frame 64 x 64 clip cut
from the fixture, against the same job on one device in this process. OMP_NUM_THREADS=1 and
torch.set_num_threads(1) on both sides: CPU kernels' reduction order may depend on the threads.
A batch job with `devices: 2` is run the same way by a 2-process `sagvideo batch`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from sagvideo.api import stylize_to_files
from sagvideo.pipeline.checks import check_frame_settings
from sagvideo.config import load_config
from sagvideo.errors import ConfigError
from sagvideo.guidance.sharded_windows import ShardedWindowedEps, deal_groups, windows_per_rank
from sagvideo.guidance.windows import WindowedEps, context_windows
from sagvideo.video.ffmpeg import ffmpeg_exe

from _fixtures import require_fixture

ROOT = Path(__file__).resolve().parents[1]
# a 40-frame clip in 16/4 windows (3 windows: ranks get 2 and 1); one guided step of n = 1, one pass
SETTINGS = {"video.frames": 40, "video.size": 64, "video.window": 16, "video.overlap": 4, "sampling.steps": 2,
            "guidance.n": 1, "guidance.passes": 1, "guidance.start": 0.0, "guidance.end": 0.5,
            "output.metrics": False, "output.plot": False, "output.contact_sheet": False,
            "guidance.gradient_checkpointing": False, "guidance.decoder_checkpointing": False}


# ------------------------------------------------------------------ the sharded windows, in-process

class ToyWindow(torch.nn.Module):
    """A window predictor with frame mixing (so windows matter): (k*B, C, L, h, w) -> (eps, reference)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(2, 2, 3, padding=1)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x, t, spans):
        eps = torch.tanh(self.conv(x)) * (1 + t / 1000)
        return eps, eps * 0.5 + x


def run_ranks(world: int, make, work):
    """`work(make(rank, exchange))` on `world` threads that all-gather through a barrier; results per rank."""
    slots: list = [None] * world
    barrier = threading.Barrier(world)
    results: list = [None] * world

    def exchange(rank):
        def gather(tensor):
            slots[rank] = tensor.clone()
            barrier.wait()
            parts = list(slots)
            barrier.wait()  # everyone has read before the next exchange overwrites
            return parts
        return gather

    def body(rank):
        results[rank] = work(make(rank, exchange(rank)))

    threads = [threading.Thread(target=body, args=(r,)) for r in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.parametrize("frames,batch,world", [(40, 1, 2), (40, 2, 2), (52, 1, 3)])
def test_sharded_windows_are_the_one_device_bytes_on_every_rank(frames, batch, world):
    torch.manual_seed(0)
    net = ToyWindow()
    windows = context_windows(frames, 16, 4)
    x = torch.randn(1, 2, frames, 4, 4)
    cotangent = torch.randn_like(x)
    one = WindowedEps(net, windows, batch=batch)
    want = (*one.eps_with_reference(x, 500), one.vjp(x, 500, cotangent))

    def make(rank, exchange):
        return ShardedWindowedEps(net, windows, rank=rank, world=world, exchange=exchange, batch=batch)

    got = run_ranks(world, make, lambda eps: (*eps.eps_with_reference(x, 500), eps.vjp(x, 500, cotangent), eps))
    for rank_result in got:
        assert all(torch.equal(a, b) for a, b in zip(want, rank_result[:3]))
    groups = -(-len(windows) // batch)
    assert sorted(g for r in got for g in r[3].mine) == list(range(groups))  # every group once
    assert max(map(len, deal_groups(groups, world))) - min(map(len, deal_groups(groups, world))) <= 1


def test_load_balance_and_a_graph_across_ranks_is_refused():
    windows = context_windows(40, 16, 4)  # 3 windows
    assert windows_per_rank(windows, 1, 2) == [2, 1] and windows_per_rank(windows, 2, 2) == [2, 1]
    assert windows_per_rank(context_windows(112, 16, 4), 1, 4) == [3, 2, 2, 2]
    with pytest.raises(ValueError, match="nothing to do"):
        ShardedWindowedEps(ToyWindow(), windows, rank=0, world=4, exchange=lambda t: [t])
    eps = ShardedWindowedEps(ToyWindow(), windows, rank=0, world=1, exchange=lambda t: [t])
    with pytest.raises(RuntimeError, match="vjp"):
        eps(torch.randn(1, 2, 40, 4, 4, requires_grad=True), 10)


def test_more_processes_than_window_groups_is_refused_before_any_work():
    config = load_config("tiny", {"distributed.devices": 4, "video.window": 16, "video.overlap": 4})
    with pytest.raises(ConfigError, match="only 3 window"):
        check_frame_settings(config, 40)
    check_frame_settings(load_config("tiny", {"distributed.devices": 3}), 40)  # 3 windows for 3 ranks: fine
    with pytest.raises(ConfigError, match="guidance.gradient"):
        check_frame_settings(load_config("tiny", {"distributed.devices": 2, "guidance.gradient": "direct"}), 40)
    with pytest.raises(ConfigError, match="distributed.accelerator"):
        load_config("tiny", {"distributed.accelerator": "tpu"})


def test_the_one_process_api_refuses_several_devices_and_the_package_face_refuses_a_shared_runtime(tmp_path):
    import sagvideo
    from sagvideo.pipeline.runtime import Runtime

    config = load_config("tiny", {"distributed.devices": 2})
    out = tmp_path / "out.mp4"
    with pytest.raises(ConfigError, match="need the launcher.*sagvideo.stylize_to_files"):
        stylize_to_files("in.mp4", "s.png", None, out, config=config)
    with pytest.raises(ConfigError, match="runtime cannot be given to a run over several processes"):
        sagvideo.stylize_to_files("in.mp4", "s.png", None, out, config=config, runtime=Runtime.__new__(Runtime))
    assert list(tmp_path.iterdir()) == []


def batch_file(path: Path, video: Path, jobs: list[dict]) -> Path:
    """A job file: `jobs` on `video` with the starry night style and SETTINGS as defaults."""
    path.write_text(json.dumps({"defaults": {"style": str(require_fixture("starry_night.jpg")), "prompt": "x",
                                             "config": SETTINGS},
                                "jobs": [{"video": str(video), **job} for job in jobs]}))
    return path


def test_a_batch_job_asks_for_devices_and_the_batch_must_have_them(tmp_path):
    from sagvideo.batch import JobFileError, load_jobs, run_batch

    clip = require_fixture("bigbuckbunny.mp4")
    jobs = load_jobs(batch_file(tmp_path / "ok.yaml", clip, [
        {"id": "two", "devices": 2}, {"id": "three", "config": {"distributed.devices": 3}}, {"id": "one"}]),
        load_config("tiny"))
    assert [job.devices for job in jobs] == [2, 3, 1]
    (tmp_path / "jobs.csv").write_text(f"video,style,id,devices\n{clip},{require_fixture('starry_night.jpg')},c,2\n")
    assert load_jobs(tmp_path / "jobs.csv", load_config("tiny", SETTINGS))[0].devices == 2
    same = load_jobs(batch_file(tmp_path / "same.yaml", clip, [{"id": "two"}]), load_config("tiny"))[0]
    assert same.fingerprint() == jobs[0].fingerprint() and same.seed == jobs[0].seed  # devices: no rerun
    with pytest.raises(JobFileError) as bad:
        load_jobs(batch_file(tmp_path / "bad.yaml", clip, [
            {"id": "zero", "devices": 0}, {"id": "both", "devices": 2, "config": {"distributed.devices": 3}},
            {"id": "nodes", "devices": 2, "config": {"distributed.num_nodes": 2}}, {"id": "four", "devices": 4},
            {"id": "list", "devices": 2, "config": ["guidance.n"]}]), load_config("tiny"))
    text = str(bad.value)
    assert "5 problems" in text and "'devices' (job) is how many of the batch's processes" in text
    assert "'config' (job) must be a mapping" in text
    assert "'devices: 2' and config 'distributed.devices: 3' (job) disagree" in text
    assert "distributed.num_nodes and distributed.accelerator are the batch's" in text
    assert "only 3 window(s)" in text and "use devices: 3 or fewer" in text  # 40 frames in 16/4 windows
    # distributed.* in the base config (--config / --set) is refused once, naming where it came from; it
    # neither marks every job as shared nor blames the jobs
    for base in ({"distributed.accelerator": "cpu"}, {"distributed.devices": 2}):
        with pytest.raises(JobFileError) as from_base:
            load_jobs(batch_file(tmp_path / "plain.yaml", clip, [{"id": "a"}, {"id": "b"}]), load_config("tiny", base))
        assert "1 problem" in str(from_base.value) and "the base config (--config / --set) sets distributed.*" \
            in str(from_base.value) and "(job)" not in str(from_base.value)
    for world, job in ((2, {"id": "three", "devices": 3}), (1, {"id": "two", "devices": 2})):
        with pytest.raises(JobFileError, match=rf"job 1\): 'devices: {job['devices']}' asks for .* starts {world}\. "
                                               rf"To fix: run the batch with --devices {job['devices']} or more"):
            run_batch(batch_file(tmp_path / "big.yaml", clip, [job]), tmp_path / "out", config=load_config("tiny"),
                      devices=world, accelerator="cpu")
        assert not (tmp_path / "out").exists()  # refused before any process, model or output folder


def test_a_shared_job_is_recorded_with_the_error_of_the_rank_that_ended_it():
    from types import SimpleNamespace

    from sagvideo.batch.shared import job_outcome

    def rank(r, status, error="", collective=False):
        return {"id": "j", "rank": r, "device": f"cuda:{r}", "status": status, "seconds": 1.0 + r,
                "error_type": "OutOfMemoryError" if error and not collective else "RuntimeError", "error": error,
                "collective_error": collective, "traceback": f"traceback {r}"}

    job = SimpleNamespace(devices=3)
    saw_it_go = rank(0, "failed", "Connection closed by peer", collective=True)
    record = job_outcome(job, [saw_it_go, rank(1, "failed", "out of memory"), rank(2, "done"), None])
    assert record["status"] == "failed" and record["error_type"] == "OutOfMemoryError"
    assert record["error"] == ("rank 1 on cuda:1 failed, so the job's 3 ranks stopped and no output was written: "
                               "out of memory") and record["traceback"] == "traceback 1"
    assert record["rank"] == 0 and record["seconds"] == 3.0 and "collective_error" not in record
    assert [r["status"] for r in record["ranks"]] == ["failed", "failed", "done"]
    only_peers = job_outcome(job, [saw_it_go, rank(1, "failed", "closed", collective=True), rank(2, "done")])
    assert only_peers["error"].startswith("rank 0 on cuda:0 failed")
    late = job_outcome(job, [rank(0, "done"), rank(1, "failed", "out of memory"), rank(2, "done")])
    assert late["status"] == "done" and late["other_rank_errors"] == ["rank 1: OutOfMemoryError: out of memory"]


# ------------------------------------------------------------------ real runs (subprocesses)

@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    """40 frames of the fixture at 64 x 64 (output size = model size: cheap to write and compare)."""
    source = require_fixture("bigbuckbunny.mp4")
    clip = tmp_path_factory.mktemp("clip") / "clip40.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(source), "-frames:v", "40", "-vf", "scale=64:64,setsar=1",
                    "-an", "-pix_fmt", "yuv420p", str(clip)], check=True)
    return clip


def cli_args(clip: Path, out: Path, extra: list[str]) -> list[str]:
    sets = [f"{k}={v}" for k, v in SETTINGS.items()]
    return ["stylize", str(clip), "--style", str(require_fixture("starry_night.jpg")), "--prompt", "x",
            "-o", str(out), "--config", "tiny", "--quiet", "--frames-dir", "--set", *sets, *extra]


def env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def frames_of(out: Path) -> np.ndarray:
    folder = out.with_name(out.stem + "_frames")
    return np.stack([iio.imread(p) for p in sorted(folder.glob("*.png"))])


@pytest.mark.parametrize("guided", [True, False], ids=["sag", "no-guidance"])
def test_two_ranks_give_the_same_bytes_as_one_device(small_clip, tmp_path, guided, one_torch_thread):
    extra = [] if guided else ["--no-guidance"]
    two = tmp_path / "two.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "sagvideo.cli", *cli_args(small_clip, two, extra),
                             "--devices", "2", "--accelerator", "cpu"], env=env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    one = tmp_path / "one.mp4"  # meanwhile, the same job on one device here (one thread, as each rank)
    overrides = dict(SETTINGS, **{"output.frames_dir": True, "guidance.enabled": guided})
    report = stylize_to_files(small_clip, require_fixture("starry_night.jpg"), "x", one,
                              config=load_config("tiny", overrides))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert frames_of(one).shape == (40, 64, 64, 3) and np.array_equal(frames_of(one), frames_of(two))
    assert one.read_bytes() == two.read_bytes()
    shared = json.loads(two.with_suffix(".json").read_text())
    d = shared["distributed"]
    assert d["devices"] == 2 and d["windows_per_rank"] == [2, 1] and d["decode_split"] and d["depth_split"]
    assert [r["rank"] for r in d["ranks"]] == [0, 1] and all(r["threads"] == 1 for r in d["ranks"])
    assert all(r["stage_seconds"]["sampling"] > 0 and r["exchange_seconds"] >= 0 for r in d["ranks"])
    assert 0 <= d["communication_share"] < 1
    assert (len(shared["guided_steps"]) > 0) == guided
    assert shared["guided_steps"] == report["guided_steps"]  # the same losses and step sizes
    assert shared["evaluations"] == report["evaluations"]  # every window counted once, on whichever rank


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def stage_lines(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [(int(a), b) for a, b in (line.split(maxsplit=1) for line in log.read_text().splitlines() if line)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


@pytest.mark.parametrize("fault", ["kill rank 1", "interrupt the launcher"])
def test_a_fault_ends_every_rank_with_a_message_and_no_output(small_clip, tmp_path, fault):
    log, out = tmp_path / "stages.log", tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hooked.py"), "cli", str(log),
                             *cli_args(small_clip, out, []), "--devices", "2", "--accelerator", "cpu"],
                            env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: {pid for pid, stage in stage_lines(log) if stage == "sampling"} >= {proc.pid} and
                 len({pid for pid, stage in stage_lines(log) if stage == "sampling"}) == 2, 120)
        child = next(pid for pid, stage in stage_lines(log) if stage == "sampling" and pid != proc.pid)
        if fault == "kill rank 1":
            os.kill(child, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if fault == "kill rank 1":
        assert proc.returncode == 1
        assert "rank 1 on cpu stopped (killed by SIGKILL)" in err and "no output was written" in err
    else:
        assert proc.returncode == 130 and "interrupted" in err
        wait_for(lambda: not alive(child), 15)  # the launcher stopped the rank it started
    assert "Traceback" not in err
    assert list(out.parent.iterdir()) == [] or all(p.name.startswith(".sagvideo-depth") for p in out.parent.iterdir())


def test_a_batch_runs_shared_jobs_after_the_others_and_a_failing_rank_fails_its_job_alone(small_clip, tmp_path,
                                                                                            one_torch_thread):
    """Three batch processes: a one-device job, then two jobs with devices: 2 (rank 2 waits), the
    first of which fails on rank 1 (out of memory at its first exchange, injected by tests/hooked.py)."""
    from sagvideo.batch import StylizeJobsModule, load_jobs, run_batch

    jobs = [{"id": "one", "config": {"video.frames": 2}}, {"id": "broken", "devices": 2},
            {"id": "shared", "devices": 2}]
    out, log = tmp_path / "out", tmp_path / "runs.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hooked.py"), "batch", str(log),
                             str(batch_file(tmp_path / "jobs.yaml", small_clip, jobs)), "-o", str(out),
                             "--config", "tiny", "--devices", "3", "--accelerator", "cpu"],
                            env=dict(env(), HOOKED_OOM_IN_SHARED_JOB="1"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # meanwhile, the same jobs in one process here (the devices count changes neither seed nor fingerprint)
    one_device = batch_file(tmp_path / "one.yaml", small_clip, [{k: v for k, v in job.items() if k != "devices"}
                                                                for job in jobs])
    (reference := tmp_path / "ref").mkdir()

    class CpuJobsModule(StylizeJobsModule):
        rank_device = torch.device("cpu")  # no Trainer in this in-process run

    assert CpuJobsModule(reference).run_job(load_jobs(one_device, load_config("tiny"))[2])["status"] == "done"
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout + stderr[-3000:]  # one job failed

    runs = [tuple(line.split()) for line in log.read_text().splitlines()]
    assert sorted(runs) == [("broken", "0"), ("broken", "1"), ("one", "0"), ("shared", "0"), ("shared", "1")]
    assert runs[0] == ("one", "0")  # the one-device jobs first
    plan = json.loads((out / ".sagvideo" / "plan.json").read_text())  # rank 2 took no part in the shared jobs
    assert plan["world_size"] == 3 and [j["ranks"] for j in plan["shared_jobs"]] == [[0, 1], [0, 1]]
    assert (out / "shared.mp4").read_bytes() == (reference / "shared.mp4").read_bytes()
    report = json.loads((out / "shared.json").read_text())
    assert report["status"] == "complete" and report["distributed"]["windows_per_rank"] == [2, 1]
    assert not list(out.glob("broken*")) and not [p for p in out.rglob("*") if ".tmp" in p.name]
    failure = json.loads((out / ".sagvideo" / "failed" / "broken.json").read_text())
    assert failure["error_type"] == "OutOfMemoryError" and failure["devices"] == 2
    assert failure["error"].startswith("rank 1 on cpu failed, so the job's 2 ranks stopped and no output was written")
    assert "injected by tests/hooked.py" in failure["traceback"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": 2, "skipped": 0, "failed": 1, "missing": 0}
    assert {row["id"]: row.get("devices") for row in summary["jobs"]} == {"one": None, "broken": 2, "shared": 2}
    assert "broken: OutOfMemoryError: rank 1 on cpu failed" in stdout

    # Run again in one process without the devices: only the failed job runs, the others are complete.
    again = run_batch(one_device, out, config=load_config("tiny"), devices=1, accelerator="cpu", echo=lambda _: None)
    assert again.counts == {"done": 1, "skipped": 2, "failed": 0, "missing": 0}
    assert (out / "broken.mp4").is_file() and not (out / ".sagvideo" / "failed" / "broken.json").exists()
