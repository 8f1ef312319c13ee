"""`sagvideo batch`: job files, validation, ordering, resume, and real multi-process runs.

The end-to-end tests launch `python -m sagvideo.batch` in a subprocess (Lightning DDP on CPU
with gloo, two ranks) with the tiny preset on the real fixture clip, and count job executions
through `tests/hooked.py batch LOG` (a launcher that logs each job start). OMP_NUM_THREADS=1 in every run: the same
thread count everywhere keeps CPU float results bit-identical between the 1- and 2-process
runs, and two ranks on a 2-core machine must not oversubscribe it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from sagvideo.batch import BatchJob, JobFileError, folder_jobs, job_seed, load_jobs
from sagvideo.batch.cost import estimate_cost
from sagvideo.batch.plan import arrange, pad, rank_of
from sagvideo.batch.run import main
from sagvideo.batch.state import BatchState, RunLock, clean_stale_temps
from sagvideo.config import Config, load_config, parse_set_items
from sagvideo.errors import ConfigError, InputError

from _fixtures import FIXTURES, require_fixture
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config", "tiny", "--set", "video.frames=2", "video.size=64", "sampling.steps=3", "guidance.passes=1"]
GOOD_IDS = ["a", "b", "c", "d", "e"]


def need_fixtures() -> Path:
    return require_fixture("bigbuckbunny.mp4").parent


def tiny_config() -> Config:
    return load_config("tiny", {"video.frames": 2, "video.size": 64, "sampling.steps": 3, "guidance.passes": 1})


def make_jobdir(folder: Path) -> Path:
    """clip.mp4 (a link to the fixture) and a job file of five jobs, paths relative to it."""
    fx = need_fixtures()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clip.mp4").symlink_to(fx / "bigbuckbunny.mp4")
    write_jobs(folder / "good.yaml", [])
    return folder


def write_jobs(path: Path, extra: list[dict]) -> Path:
    """The five good jobs (different start frames and styles; 'd' has 3 frames: the longest), plus `extra`."""
    fx = FIXTURES
    jobs = [
        {"video": "clip.mp4", "id": "a", "config": {"video.start": 0}},
        {"video": "clip.mp4", "id": "b", "config": {"video": {"start": 30}}},
        {"video": "clip.mp4", "id": "c", "style": str(fx / "shipwreck.jpg"), "config": {"video.start": 60}},
        {"video": "clip.mp4", "id": "d", "style": str(fx / "shipwreck.jpg"),
         "config": {"video.start": 90, "video.frames": 3}},
        {"video": "clip.mp4", "id": "e", "config": {"video.start": 120}},
    ] + extra
    path.write_text(yaml.safe_dump({"defaults": {"style": str(fx / "starry_night.jpg"), "prompt": "a rabbit, oil painting"},
                                    "jobs": jobs}, sort_keys=False))
    return path


def run_cli(args: list[str], log: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = ["-m", "sagvideo.batch"] if log is None else [str(ROOT / "tests" / "hooked.py"), "batch", str(log)]
    return subprocess.run([sys.executable, *command, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def executions(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(line.split()[0], int(line.split()[1])) for line in log.read_text().splitlines() if line.strip()]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


def assert_complete(outdir: Path, ids: list[str]) -> None:
    for job_id in ids:
        report = json.loads((outdir / f"{job_id}.json").read_text())
        assert report["status"] == "complete", job_id
        assert (outdir / f"{job_id}.mp4").stat().st_size > 0
        assert (outdir / f"{job_id}.contact.png").is_file()


# ------------------------------------------------------------------ job files and validation


def test_yaml_jobs_resolve_paths_ids_config_and_seeds(tmp_path):
    fx = need_fixtures()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "clip.mp4").symlink_to(fx / "bigbuckbunny.mp4")
    (tmp_path / "jobs.yaml").write_text(f"""
- video: in/clip.mp4
  style: {fx / 'starry_night.jpg'}
  prompt: one
  config: {{guidance: {{n: 1}}, video.start: 10}}
- video: in/clip.mp4
  style: {fx / 'shipwreck.jpg'}
  prompt: two
  config: {{sampling.seed: 7}}
""")
    jobs = load_jobs(tmp_path / "jobs.yaml", tiny_config())
    # Two jobs share the video name: the default id adds the style name.
    assert [j.id for j in jobs] == ["clip-starry_night", "clip-shipwreck"]
    assert jobs[0].video == tmp_path / "in" / "clip.mp4"  # relative to the job file
    assert jobs[0].config.guidance.n == 1 and jobs[0].config.video.start == 10
    assert jobs[0].config.video.size == 64  # the base config still applies
    assert jobs[0].overrides == {"guidance.n": 1, "video.start": 10}
    # Seed: a stable hash of the id (and the base seed), unless the job sets sampling.seed.
    assert jobs[0].seed == job_seed("clip-starry_night", 0) == jobs[0].config.sampling.seed
    assert jobs[1].seed == 7 == jobs[1].config.sampling.seed
    assert job_seed("x") == job_seed("x") != job_seed("y")
    assert job_seed("x", 0) != job_seed("x", 1)
    assert jobs[0].layout(tmp_path / "out").main == tmp_path / "out" / "clip-starry_night.mp4"


def test_csv_jobs_with_config_columns_and_line_numbers(tmp_path):
    fx = need_fixtures()
    (tmp_path / "jobs.csv").write_text(
        "video,style,prompt,id,video.start\n"
        f"{fx / 'bigbuckbunny.mp4'},{fx / 'starry_night.jpg'},\"a rabbit,\nin two lines\",r1,5\n"
        f"{fx / 'bigbuckbunny.mp4'},{fx / 'shipwreck.jpg'},,r2,\n"
        f"{fx / 'bigbuckbunny.mp4'},{fx / 'shipwreck.jpg'},a ship,r3,nope\n"
    )
    with pytest.raises(JobFileError) as info:
        load_jobs(tmp_path / "jobs.csv", tiny_config())
    problems = info.value.problems
    assert len(problems) == 1  # an empty prompt is no prompt, not a problem
    assert problems[0].startswith("jobs.csv line 5 (job 3)") and "video.start" in problems[0]  # row 1: lines 2-3
    (tmp_path / "jobs.csv").write_text((tmp_path / "jobs.csv").read_text().replace(",nope", ",7"))
    jobs = load_jobs(tmp_path / "jobs.csv", tiny_config())
    assert [j.prompt for j in jobs] == ["a rabbit,\nin two lines", None, "a ship"]
    # --prompt fills the missing prompt
    jobs = load_jobs(tmp_path / "jobs.csv", tiny_config(), prompt="from the flag")
    assert [(j.id, j.prompt, j.config.video.start) for j in jobs] == [
        ("r1", "a rabbit,\nin two lines", 5), ("r2", "from the flag", 0), ("r3", "a ship", 7)]


def test_every_bad_entry_is_reported_up_front_with_its_line(tmp_path, capsys):
    fx = need_fixtures()
    (tmp_path / "clip.mp4").symlink_to(fx / "bigbuckbunny.mp4")
    (tmp_path / "text.mp4").write_text("not a video\n")
    (tmp_path / "bad.yaml").write_text(f"""\
defaults:
  style: {fx / 'starry_night.jpg'}
jobs:
  - video: clip.mp4
    id: clip
    prompt: fine
  - video: missing.mp4
    prompt: x
  - video: clip.mp4
    id: j3
    promt: typo
  - video: clip.mp4
    id: j4
    prompt: y
    config: {{guidance.nn: 2}}
  - video: text.mp4
    prompt: z
  - video: clip.mp4
    id: clip
    prompt: dup
  - video: clip.mp4
    id: late
    prompt: late start
    config: {{video.start: 131}}
""")
    outdir = tmp_path / "out"
    code = main([str(tmp_path / "bad.yaml"), "-o", str(outdir), *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert not outdir.exists()  # nothing created, nothing loaded
    assert "6 problems; no job was run" in err
    for fragment in [
        "bad.yaml line 7 (job 2): video file not found",
        "bad.yaml line 9 (job 3): unknown key 'promt' (did you mean 'prompt'?)",
        "bad.yaml line 12 (job 4): unknown config key 'guidance.nn' (did you mean 'guidance.n'?)",
        "bad.yaml line 16 (job 5): '",  # text.mp4: cannot be read as a video
        "bad.yaml line 4 (job 1), bad.yaml line 18 (job 6): duplicate id 'clip'",
        "bad.yaml line 21 (job 7): 'clip.mp4' has 132 frames",
    ]:
        assert fragment in err, fragment
    assert "cannot be read as a video" in err and "video.start: 130" in err


def test_folder_mode_and_flag_errors(tmp_path, capsys):
    fx = need_fixtures()
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("one.mp4", "two.MOV"):
        (videos / name).symlink_to(fx / "bigbuckbunny.mp4")
    (videos / "notes.txt").write_text("ignored")
    jobs = folder_jobs(videos, fx / "shipwreck.jpg", "a ship", tiny_config())
    assert [(j.id, j.style.name, j.prompt) for j in jobs] == [("one", "shipwreck.jpg", "a ship"),
                                                             ("two", "shipwreck.jpg", "a ship")]
    # Without --style every video is reported, still before anything is created.
    code = main(["--videos", str(videos), "--prompt", "p", "-o", str(tmp_path / "out"), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.count("missing 'style'") == 2 and not (tmp_path / "out").exists()
    assert main(["-o", str(tmp_path / "out")]) == 2
    assert "no jobs given" in capsys.readouterr().err
    assert main([str(tmp_path / "x.yaml"), "-o", str(tmp_path / "out"), "--set", "guidance.nn=1"]) == 2
    assert "unknown config key 'guidance.nn'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_items(["guidance.n"])


# ------------------------------------------------------------------ ordering, padding, bookkeeping


def _job(job_id: str, cost: float) -> BatchJob:
    return BatchJob(job_id, Path(f"{job_id}.mp4"), Path("s.png"), "p", Config(), 0, cost=cost)


def test_cost_estimate_grows_with_frames_pixels_and_guidance():
    base = tiny_config()
    cost = estimate_cost(base, (64, 64), 2)
    assert estimate_cost(base, (64, 64), 4) == 2 * cost
    assert estimate_cost(base, (128, 64), 2) == 2 * cost
    from sagvideo.config import merge

    assert estimate_cost(merge(base, {"guidance.n": 4}), (64, 64), 2) > cost
    assert estimate_cost(merge(base, {"guidance.passes": 2}), (64, 64), 2) > cost
    unguided = merge(base, {"guidance.enabled": False})
    assert estimate_cost(unguided, (64, 64), 2) == 2 * 64 * 64 * base.sampling.steps


def test_arrange_balances_the_strided_split_and_pads_for_idle_ranks():
    jobs = [_job(name, cost) for name, cost in [("a", 1), ("b", 9), ("c", 5), ("d", 5), ("e", 2), ("f", 8)]]
    order = arrange(jobs, 2)
    # Rank r gets positions r, r + 2, ...: longest first, each round's longest to the less loaded rank.
    assert [j.id for j in order] == ["b", "f", "d", "c", "a", "e"]
    loads = Counter()
    for i, job in enumerate(order):
        loads[rank_of(i, 2)] += job.cost
    assert loads == {0: 15, 1: 15}
    assert sorted(j.id for j in arrange(jobs, 4)) == sorted(j.id for j in jobs)  # a permutation
    assert [j.id if j else None for j in pad(arrange(jobs[:1], 3), 3)] == ["a", None, None]
    assert pad(order, 2) == order


def test_library_api_imports_and_job_dataset():
    from sagvideo.batch import JobDataset, JobStatusWriter, StylizeJobsModule, run_batch
    from sagvideo.batch.module import collate_one

    data = JobDataset([_job("a", 1.0), None])
    assert len(data) == 2 and data[0].id == "a" and data[1] is None
    assert collate_one([data[0]]) is data[0]
    assert callable(run_batch) and JobStatusWriter.__mro__[1].__name__ == "BasePredictionWriter"
    assert StylizeJobsModule("out").state.outdir.name == "out"


def test_stale_temp_cleanup_and_run_lock(tmp_path):
    state = BatchState(tmp_path / "out")
    state.create()
    stale = [state.outdir / ".a.tmp-x1.mp4", state.status_dir / ".b.tmp-y.json",
             state.outdir / ".sagvideo-depth" / ".depth-1.tmp-z.npz", state.outdir / ".sagvideo-write-check-q"]
    (state.outdir / ".sagvideo-depth").mkdir()
    for path in stale:
        path.write_text("partial")
    (state.outdir / ".frames.tmp-dir").mkdir()
    keep = [state.outdir / "a.mp4", state.outdir / "a.json", state.status_dir / "b.json"]
    for path in keep:
        path.write_text("{}")
    removed = clean_stale_temps(state)
    assert sorted(removed) == sorted(stale + [state.outdir / ".frames.tmp-dir"])
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
    with RunLock(state):
        with pytest.raises(InputError, match="another batch"):
            RunLock(state).acquire()
    with RunLock(state):  # released: a new run can take it
        pass


# ------------------------------------------------------------------ real runs (subprocesses)


@pytest.fixture(scope="module")
def jobdir(tmp_path_factory) -> Path:
    return make_jobdir(tmp_path_factory.mktemp("batch"))


@pytest.fixture(scope="module")
def reference(jobdir) -> Path:
    """The five good jobs in ONE process: the outputs every multi-process run must reproduce."""
    outdir = jobdir / "ref"
    proc = run_cli([str(jobdir / "good.yaml"), "-o", str(outdir), "--accelerator", "cpu", "--devices", "1", *TINY],
                   log=jobdir / "ref.log")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Counter(i for i, _ in executions(jobdir / "ref.log")) == Counter(GOOD_IDS)
    assert_complete(outdir, GOOD_IDS)
    return outdir


@pytest.mark.slow
def test_two_ranks_run_each_job_once_fail_alone_and_resume(jobdir, reference):
    jobs = write_jobs(jobdir / "with_bad.yaml", [{"video": "clip.mp4", "id": "nan", "config": {"guidance.layer": 9}}])
    outdir, log = jobdir / "two", jobdir / "two.log"
    cmd = [str(jobs), "-o", str(outdir), "--devices", "2", "--accelerator", "cpu", *TINY]

    proc = run_cli(cmd, log=log)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one job failed
    runs = executions(log)
    assert Counter(i for i, _ in runs) == Counter(GOOD_IDS + ["nan"])  # every job exactly once
    # Lightning's split of a plain DataLoader is strided: rank r runs positions r, r + 2, ...
    plan = json.loads((outdir / ".sagvideo" / "plan.json").read_text())
    assert plan["world_size"] == 2 and plan["jobs"][0]["id"] == "d"  # the 3-frame job goes first
    assert {(j["id"], j["position"] % 2) for j in plan["jobs"]} == set(runs)
    assert {rank for _, rank in runs} == {0, 1}
    # Same bytes as the one-process run: the seed comes from the id, not from rank or world size.
    for job_id in GOOD_IDS:
        assert (outdir / f"{job_id}.mp4").read_bytes() == (reference / f"{job_id}.mp4").read_bytes(), job_id
    assert_complete(outdir, GOOD_IDS)
    failure = json.loads((outdir / ".sagvideo" / "failed" / "nan.json").read_text())
    # found only once the models are loaded: the tiny CLIP has 4 blocks (a NaN fails the same way)
    assert failure["error_type"] == "ConfigError" and "guidance.layer" in failure["error"]
    assert "Traceback" in failure["traceback"] and failure["overrides"] == {"guidance.layer": 9}
    assert not (outdir / "nan.mp4").exists() and not temp_files(outdir)
    summary = json.loads((outdir / "summary.json").read_text())
    assert summary["counts"] == {"done": 5, "skipped": 0, "failed": 1, "missing": 0}
    assert sorted(r["rank"] for r in summary["ranks"]) == [0, 1]
    assert sum(r["jobs"] for r in summary["ranks"]) == 6
    assert "nan: ConfigError" in proc.stdout and "done 5, skipped 0, failed 1" in proc.stdout

    # Re-run: only the failed job executes again (and fails again).
    log.unlink()
    proc = run_cli(cmd, log=log)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert [i for i, _ in executions(log)] == ["nan"]
    assert json.loads((outdir / "summary.json").read_text())["counts"] == {"done": 0, "skipped": 5, "failed": 1, "missing": 0}

    # Fixed job, 1 pending job on 2 ranks: it completes and its failure record goes away.
    write_jobs(jobs, [{"video": "clip.mp4", "id": "nan"}])
    log.unlink()
    proc = run_cli(cmd, log=log)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [i for i, _ in executions(log)] == ["nan"]
    assert_complete(outdir, GOOD_IDS + ["nan"])
    assert not (outdir / ".sagvideo" / "failed" / "nan.json").exists()
    assert json.loads((outdir / "summary.json").read_text())["counts"] == {"done": 1, "skipped": 5, "failed": 0, "missing": 0}

    # Nothing pending: exit 0 without starting a Trainer.
    log.unlink()
    start = time.perf_counter()
    proc = run_cli(cmd, log=log)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stdout + proc.stderr
    assert "distributed" not in proc.stdout + proc.stderr and executions(log) == []
    assert time.perf_counter() - start < 30


@pytest.mark.slow
def test_killed_run_resumes_without_partial_files(jobdir, reference):
    outdir, log = jobdir / "killed", jobdir / "killed.log"
    args = [str(jobdir / "good.yaml"), "-o", str(outdir), "--devices", "2", "--accelerator", "cpu", *TINY]
    cmd = [sys.executable, str(ROOT / "tests" / "hooked.py"), "batch", str(log), *args]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    status_dir = outdir / ".sagvideo" / "status"
    deadline = time.monotonic() + 180
    while not (status_dir.is_dir() and any(status_dir.glob("*.json"))):
        assert proc.poll() is None and time.monotonic() < deadline, "no job finished before the batch ended"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # both ranks, mid-batch
    proc.wait()
    # A job counts as finished when its video and a report marked complete exist (the pipeline
    # writes the report last); every report there is whole, never a truncated file.
    finished = {i for i in GOOD_IDS if (outdir / f"{i}.json").exists()}
    for job_id in finished:
        assert json.loads((outdir / f"{job_id}.json").read_text())["status"] == "complete"
        assert (outdir / f"{job_id}.mp4").is_file()
    assert finished and finished != set(GOOD_IDS), finished
    # What a kill during a write strands (the kill above may or may not hit one): cleaned at the next start.
    for stale in (outdir / ".e.tmp-abc123.mp4", outdir / ".sagvideo-depth" / ".depth-x.tmp-1.npz"):
        stale.parent.mkdir(exist_ok=True)
        stale.write_bytes(b"partial")

    log.write_text("")
    rerun = run_cli(args, log=log)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rerun_ids = [i for i, _ in executions(log)]
    assert sorted(rerun_ids) == sorted(set(GOOD_IDS) - finished)  # finished jobs are not redone
    assert_complete(outdir, GOOD_IDS)
    assert not temp_files(outdir)
    for job_id in GOOD_IDS:
        assert (outdir / f"{job_id}.mp4").read_bytes() == (reference / f"{job_id}.mp4").read_bytes(), job_id


def test_out_of_memory_is_recorded_with_a_fix_and_the_next_job_runs(tmp_path, monkeypatch):
    """Without a GPU the real OOM cannot happen here: the pipeline call raises it instead."""
    import torch

    import sagvideo.api
    from sagvideo.batch import StylizeJobsModule

    jobs = load_jobs(write_jobs(make_jobdir(tmp_path / "in") / "jobs.yaml", []), tiny_config())[:2]

    class CpuJobsModule(StylizeJobsModule):
        rank_device = torch.device("cpu")  # no Trainer in this in-process test

    real = sagvideo.api.stylize_to_files

    def oom_for_a(video, style, prompt, output, **kwargs):
        if output.main.stem == "a":  # the batch hands over the job's JobFiles
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(video, style, prompt, output, **kwargs)

    monkeypatch.setattr(sagvideo.api, "stylize_to_files", oom_for_a)
    module = CpuJobsModule(tmp_path / "out")
    (tmp_path / "out").mkdir()
    first, second = (module.run_job(job) for job in jobs)
    assert first["status"] == "failed" and first["error_type"] == "OutOfMemoryError"
    assert "--config 12gb" in first["error"]
    assert second["status"] == "done" and (tmp_path / "out" / "b.mp4").is_file()


def test_a_job_of_all_frames_runs_with_its_counted_frames(tmp_path):
    """`video.frames: all` is resolved against the video when the job is planned; the job carries the count."""
    import torch

    from sagvideo.batch import StylizeJobsModule

    jobdir = make_jobdir(tmp_path / "in")
    (jobdir / "all.yaml").write_text(yaml.safe_dump({"jobs": [{
        "video": "clip.mp4", "id": "a", "style": str(need_fixtures() / "starry_night.jpg"), "prompt": "x",
        "config": {"video.frames": "all", "video.stride": 66}}]}))
    (job,) = load_jobs(jobdir / "all.yaml", load_config("tiny", {
        "video.size": 64, "sampling.steps": 2, "guidance.passes": 1, "output.metrics": False, "output.plot": False}))
    # clip.mp4 has 132 frames: every 66th from frame 0 is 2 frames
    assert job.config.video.frames == "all" and job.frames == 2

    class CpuJobsModule(StylizeJobsModule):
        rank_device = torch.device("cpu")  # no Trainer in this in-process test

    (tmp_path / "out").mkdir()
    outcome = CpuJobsModule(tmp_path / "out").run_job(job)
    assert outcome["status"] == "done", outcome.get("traceback")
    assert json.loads((tmp_path / "out" / "a.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_a_rerun_redoes_exactly_the_jobs_whose_settings_or_inputs_changed(jobdir, reference):
    outdir, log = jobdir / "changed", jobdir / "changed.log"
    shutil.copytree(reference, outdir)
    proc = run_cli([str(jobdir / "good.yaml"), "-o", str(outdir), *TINY], log=log)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stdout + proc.stderr
    changed = write_jobs(jobdir / "changed.yaml", [])
    text = changed.read_text().replace("video.start: 60", "video.start: 61")  # job c now starts one frame later
    changed.write_text(text)
    proc = run_cli([str(changed), "-o", str(outdir), *TINY], log=log)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [i for i, _ in executions(log)] == ["c"]  # only the changed job ran again
    assert "settings or input files changed: c" in proc.stdout
    summary = json.loads((outdir / "summary.json").read_text())
    assert summary["changed"] == ["c"] and summary["counts"]["done"] == 1 and summary["counts"]["skipped"] == 4
    assert json.loads((outdir / "c.json").read_text())["input"]["frame_indices"][0] == 61
    log.unlink()
    proc = run_cli([str(changed), "-o", str(outdir), *TINY], log=log)
    assert "nothing to do" in proc.stdout and executions(log) == []  # and now it is up to date
