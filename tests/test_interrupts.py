"""One signal policy: SIGINT and SIGTERM at any moment end a run with 130 / 143, one line, no
traceback, nothing partial, locks and staging released; a batch writes its summary first.
Real signals to real child processes, on the tiny preset at toy sizes."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = ["--config", "tiny", "--frames", "2", "--steps", "3", "--size", "64"]


def start(args, log: Path | None) -> subprocess.Popen:
    """`sagvideo ARGS` (or a batch); with a `log`, through tests/hooked.py, which logs "<pid> <stage>"
    to it as stages start (without one: the plain command, whose own startup is then interrupted)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    if log is None:
        command = ["-m", "sagvideo.cli", *map(str, args)]
    elif args[0] == "batch":
        command = [str(ROOT / "tests" / "hooked.py"), "batch", str(log), *map(str, args[1:])]
    else:
        command = [str(ROOT / "tests" / "hooked.py"), "cli", str(log), *map(str, args)]
    return subprocess.Popen([sys.executable, *command], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(log: Path, stage: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while stage != "startup" and not (log.exists() and stage in log.read_text().split()):
        assert proc.poll() is None, f"the run ended before stage {stage}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"stage {stage} never started"
        time.sleep(0.01)
    if stage == "startup":
        time.sleep(0.5)  # inside the imports (torch takes seconds): where Ctrl-C used to print a traceback


def assert_clean_end(proc: subprocess.Popen, sig: signal.Signals, folder: Path) -> str:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + sig, (proc.returncode, err[-3000:])
    assert "Traceback" not in err and f"sagvideo: interrupted ({sig.name}); no partial output was kept." in err, err
    assert err.count("sagvideo: interrupted") == 1
    kept = sorted(p.name for p in folder.iterdir() if p.name != ".sagvideo-depth")  # the depth cache is complete
    assert kept == [], kept  # no output, no staging, no lock folder (.sagvideo/locks)
    return out


@pytest.mark.parametrize("sig,stage", [
    (signal.SIGINT, "startup"), (signal.SIGTERM, "sampling"), (signal.SIGINT, "write"),
])
def test_stylize_interrupted_at_any_moment_ends_clean(tmp_path, sig, stage):
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "stages.log"
    proc = start(["stylize", ROOT / "samples" / "clip.mp4", "--style", ROOT / "samples" / "style.png", "--prompt", "x",
                  "-o", out / "o.mp4", "--gif", "--quiet", *TOY], None if stage == "startup" else log)
    wait_for(log, stage, proc)
    proc.send_signal(sig)
    assert_clean_end(proc, sig, out)


@pytest.mark.parametrize("sig,stage", [(signal.SIGINT, "sampling"), (signal.SIGTERM, "write")])
def test_an_interrupted_batch_writes_its_summary_and_exits_by_the_signal(tmp_path, sig, stage):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"- video: {ROOT / 'samples' / 'clip.mp4'}\n  style: {ROOT / 'samples' / 'style.png'}\n"
                    f"  prompt: x\n  config: {{video.frames: 2, sampling.steps: 3, video.size: 64}}\n")
    out = tmp_path / "out"
    log = tmp_path / "stages.log"
    proc = start(["batch", jobs, "-o", out, "--config", "tiny", "--accelerator", "cpu", "--devices", "1"], log)
    wait_for(Path(f"{log}.stages"), stage, proc)  # tests/hooked.py logs the batch's stages there
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + sig, (proc.returncode, err[-3000:])
    assert "Traceback" not in err and err.count("sagvideo: interrupted") == 1, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == sig.name
    assert summary["jobs"][0]["error"] == f"not finished: the run was interrupted ({sig.name})"
    assert "not finished: the run was interrupted" in stdout  # the printed table says it too
    assert not list(out.glob("clip*")) and not list(out.glob(".clip*"))  # no output, no staging
    with open(out / ".sagvideo" / "lock") as held:  # the batch lock file stays by design, released
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
