"""Nothing lost, nothing wrong in silence: same-file outputs, killed and concurrent runs, full disks,
rotated clips, numeric checks up front, small truths. Faults are real: signals, rlimits, processes."""

import json
import os
import pydoc
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sagvideo
from sagvideo.cli import main
from sagvideo.files import current_umask
from sagvideo.video.ffmpeg import ffmpeg_exe
from sagvideo.video.io import probe_video, read_clip

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--config", "tiny", "--frames", "2", "--steps", "2", "--size", "64", "--quiet"]


@pytest.fixture
def clip(fixtures, tmp_path):
    """A copy of the real clip (tests may try to destroy it)."""
    path = tmp_path / "clip.mp4"
    shutil.copy(fixtures / "bigbuckbunny.mp4", path)
    return path


@pytest.fixture
def style(fixtures, tmp_path):
    path = tmp_path / "style.jpg"
    shutil.copy(fixtures / "starry_night.jpg", path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def cli(args, stage_log=None, env=None, **kwargs):
    """`sagvideo ...` in a child process (signals and rlimits need one); with `stage_log`, through
    tests/hooked.py, which appends "<pid> <stage>" to it as each stage starts."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **(env or {}))
    command = ["-m", "sagvideo.cli"] if stage_log is None else [str(ROOT / "tests" / "hooked.py"), "cli", str(stage_log)]
    return subprocess.Popen([sys.executable, *command, *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def leftovers(folder: Path) -> list[str]:
    """Everything in `folder` but the caches and locks a run keeps on purpose."""
    return sorted(p.name for p in folder.iterdir() if p.name not in (".sagvideo-depth", ".sagvideo"))


# ------------------------------------------------------------------ an output is never an input

def test_the_input_video_is_never_an_output_however_it_is_spelled(capsys, clip, style, tmp_path, monkeypatch):
    before = clip.read_bytes()
    monkeypatch.chdir(tmp_path)
    link, hard = tmp_path / "link.mp4", tmp_path / "hard.mp4"
    link.symlink_to(clip)
    os.link(clip, hard)
    for output in (clip, Path("clip.mp4"), Path("./sub/../clip.mp4"), link, hard):
        (tmp_path / "sub").mkdir(exist_ok=True)
        code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x", "-o", output, *FAST, "--overwrite")
        assert code == 2 and "is the input" in text and "another output path" in text, (output, text)
    assert clip.read_bytes() == before and link.is_symlink()
    code, text = run(capsys, "stylize", link, "--style", style, "--prompt", "x", "-o", hard, *FAST, "--overwrite")
    assert code == 2 and "is the input" in text  # the input given through a link, the output a hard link


def test_style_image_and_depth_maps_are_never_outputs(capsys, clip, style, tmp_path):
    style_link = tmp_path / "out.mp4"
    style_link.symlink_to(style)
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x", "-o", style_link, *FAST, "--overwrite")
    assert code == 2 and "is the input" in text and str(style) in text
    depth = tmp_path / "maps"
    depth.mkdir()
    for i in range(2):
        (depth / f"d{i}.npy").write_bytes(b"")
        np.save(depth / f"d{i}.npy", np.random.default_rng(i).random((8, 8)))
    # --frames-dir writes job_frames/: here that is the depth folder the run reads
    (tmp_path / "job_frames").symlink_to(depth)
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x", "-o", tmp_path / "job.mp4",
                     *FAST, "--depth", tmp_path / "job_frames", "--frames-dir", "--overwrite")
    assert code == 2 and "is the input" in text
    assert sorted(p.name for p in depth.iterdir()) == ["d0.npy", "d1.npy"]


def test_a_batch_job_never_writes_over_an_input_of_any_job(capsys, fixtures, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    shutil.copy(fixtures / "bigbuckbunny.mp4", folder / "a.mp4")
    shutil.copy(fixtures / "bigbuckbunny.mp4", folder / "b.mp4")
    jobs = folder / "jobs.yaml"
    jobs.write_text(f"defaults: {{style: {fixtures / 'starry_night.jpg'}, prompt: x}}\n"
                    "jobs:\n  - video: a.mp4\n    id: b\n  - video: b.mp4\n    id: c\n")
    before = (folder / "b.mp4").read_bytes()
    from sagvideo.batch.run import main as batch_main

    code = batch_main([str(jobs), "-o", str(folder), "--config", "tiny"])
    text = capsys.readouterr().err
    assert code == 2 and "b.mp4" in text and "is the input" in text
    assert (folder / "b.mp4").read_bytes() == before


# ------------------------------------------------------------------ killed, concurrent, full disk

def wait_for_stage(log: Path, stage: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and any(line.split()[-1] == stage for line in log.read_text().splitlines())):
        assert proc.poll() is None, f"the run ended before stage {stage}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"stage {stage} never started"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_run_killed_in_any_stage_leaves_nothing_after_the_next_run(clip, style, tmp_path, sig):
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    args = ["stylize", clip, "--style", style, "--prompt", "x", "-o", out, "--config", "tiny", "--frames", "8",
            "--steps", "12", "--gif", "--frames-dir", "--quiet"]
    for stage in ("read", "depth", "sampling", "decode", "write"):
        log = tmp_path / f"{stage}.log"
        proc = cli(args, stage_log=log)
        wait_for_stage(log, stage, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0, (stage, err)
        final = [p for p in leftovers(out.parent) if not p.startswith(".")]
        assert final == [], (stage, final)  # never a partial or unmarked output
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and "no partial output" in err, (stage, proc.returncode, err[-2000:], log.read_text())
            assert leftovers(out.parent) == [], (stage, leftovers(out.parent))  # cleaned up on the way out
    done = cli(args)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert leftovers(out.parent) == ["o.contact.png", "o.gif", "o.json", "o.mp4", "o.plot.png", "o_frames"]  # no staging


@pytest.mark.slow
def test_a_second_run_on_the_same_output_fails_fast_or_waits_with_overwrite(clip, style, tmp_path):
    out = tmp_path / "o.mp4"
    log = tmp_path / "stages.log"
    slow = ["stylize", clip, "--style", style, "--prompt", "x", "-o", out, "--config", "tiny", "--frames", "4",
            "--steps", "100", "--quiet"]
    first = cli(slow, stage_log=log)
    wait_for_stage(log, "sampling", first)
    start = time.monotonic()
    second = cli(["stylize", clip, "--style", style, "--prompt", "y", "-o", out, *FAST])
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and "being written by another sagvideo run" in err and f"pid {first.pid}" in err
    assert first.poll() is None  # it failed while the first was still running
    third = cli(["stylize", clip, "--style", style, "--prompt", "z", "-o", out, *FAST, "--overwrite"])
    assert first.wait(timeout=300) == 0
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err  # waited, then replaced it
    assert json.loads(out.with_suffix(".json").read_text())["input"]["prompt"] == "z"
    assert time.monotonic() - start > 0


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


@pytest.mark.slow
def test_a_full_disk_gives_a_clear_error_and_no_partial_output(clip, style, tmp_path):
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    proc = cli(["stylize", clip, "--style", style, "--prompt", "x", "-o", out, "--config", "tiny", "--frames", "8",
                "--quiet"], preexec_fn=_limit_file_size)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "sagvideo: error:" in err, err
    assert "File too large" in err or "ffmpeg failed" in err
    assert [p for p in leftovers(out.parent) if not p.startswith(".")] == []
    assert not any(out.parent.glob(".o.mp4.tmp-*"))  # the staging folder went with the failure


# ------------------------------------------------------------------ checks before any work

@pytest.mark.parametrize("flags,needle", [
    (["--seed", str(2**70)], "sampling.seed"),
    (["--strength", "inf"], "guidance.strength"),
    (["--cfg-scale", "inf"], "sampling.cfg_scale"),
    (["--cfg-scale", "nan"], "sampling.cfg_scale"),
    (["--controlnet-scale", "-1"], "sampling.controlnet_scale"),
    (["--steps", "5000"], "sampling.steps"),
])
def test_every_number_is_checked_before_any_model_loads(capsys, clip, style, tmp_path, flags, needle):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    start = time.monotonic()
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x", "-o", out_dir / "o.mp4", *FAST, *flags)
    assert code == 2 and needle in text and "Traceback" not in text, text
    assert list(out_dir.iterdir()) == [] and time.monotonic() - start < 10


# ------------------------------------------------------------------ what comes out is true

def _rotated(tmp_path: Path, source: Path, degrees: int) -> Path:
    """The clip re-muxed with a display rotation (as a phone stores portrait video)."""
    path = tmp_path / f"rot{degrees}.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-display_rotation", str(degrees), "-i", str(source), "-t", "1",
                    "-c", "copy", "-y", str(path)], check=True)
    return path


def test_a_rotated_phone_clip_is_read_and_written_upright(capsys, clip, style, tmp_path):
    rotated = _rotated(tmp_path, clip, -90)  # shown turned 90 degrees clockwise: portrait
    info = probe_video(rotated)
    assert (info.width, info.height) == (720, 1280) and info.display.rotation == 90
    frames = read_clip(rotated, frames=2, size=64).frames
    upright = read_clip(clip, frames=2, size=64).frames
    assert frames.shape == (2, 112, 64, 3)
    turned = np.rot90(upright, k=-1, axes=(1, 2))  # the source turned clockwise, as players show it
    assert np.abs(frames.astype(int) - turned.astype(int)).mean() < 12
    out = tmp_path / "upright.mp4"
    code, text = run(capsys, "stylize", rotated, "--style", style, "--prompt", "x", "-o", out, *FAST)
    assert code == 0, text
    written = probe_video(out)
    assert (written.width, written.height) == (720, 1280) and written.display.rotation == 0  # upright, no tag
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["input"]["rotation"] == 90 and report["input"]["source_size"] == [720, 1280]


def test_odd_sized_sources_say_what_size_was_written(capsys, style, tmp_path):
    odd = tmp_path / "odd.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=321x241:rate=10", "-frames:v", "4",
                    "-c:v", "libx264", "-pix_fmt", "yuv444p", "-y", str(odd)], check=True)
    out = tmp_path / "o.mp4"
    code, text = run(capsys, "stylize", odd, "--style", style, "--prompt", "x", "-o", out, *FAST)
    assert code == 0, text
    report = json.loads(out.with_suffix(".json").read_text())
    info = probe_video(out)
    assert report["output_size"] == [info.width, info.height] == [322, 242]
    assert "odd side" in report["output_size_note"] and report["input"]["source_size"] == [321, 241]


def test_stale_staging_of_this_output_is_removed_and_nothing_else(capsys, clip, style, tmp_path):
    out = tmp_path / "o.mp4"
    stale = [tmp_path / ".o.mp4.tmp-dead1", tmp_path / ".o.tmp-dead2.mp4", tmp_path / ".o.tmp-dead3.json"]
    stale[0].mkdir()
    (stale[0] / "o.mp4").write_bytes(b"half")
    for path in stale[1:]:
        path.write_bytes(b"half")
    others = [tmp_path / ".other.mp4.tmp-live", tmp_path / ".o.tmp-live.png"]  # another output's, or an image's
    for path in others:
        path.write_bytes(b"not ours")
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x", "-o", out, *FAST)
    assert code == 0, text
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)


def test_outputs_follow_the_users_umask_without_changing_it(clip, style, tmp_path):
    out = tmp_path / "o.mp4"
    proc = cli(["stylize", clip, "--style", style, "--prompt", "x", "-o", out, *FAST],
               preexec_fn=lambda: os.umask(0o027))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    for path in (out, out.with_suffix(".json"), tmp_path / "o.contact.png", tmp_path / "o.plot.png"):
        assert path.stat().st_mode & 0o777 == 0o640, path
    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
    finally:
        os.umask(old)


def test_small_truths(capsys, clip, tmp_path):
    from sagvideo.models.hub import how_to_supply

    assert "hf download some/model" in how_to_supply("some/model", "UNet", "model.base")
    assert "huggingface-cli" not in how_to_supply("some/model", "UNet", "model.base")
    parser_help = subprocess.run([sys.executable, "-m", "sagvideo.cli", "depth", "--help"], capture_output=True,
                                 text=True, cwd=ROOT).stdout
    maps = tmp_path / "maps"
    code, text = run(capsys, "depth", clip, "-o", maps, "--frames", "2", "--size", "64", "--depth-model", "tiny",
                     "--quiet")
    assert code == 0, text
    written = sorted(p.name for p in maps.iterdir())
    assert written == ["depth_00000.png", "depth_00001.png"] and "depth_00000.png" in parser_help
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"sagvideo {sagvideo.__version__}"
    doc = pydoc.render_doc(sagvideo)
    assert all(name in doc for name in ("stylize_video", "stylize_to_files", "load_config"))


def test_a_tiny_run_reports_the_models_that_ran(capsys, clip, style, tmp_path):
    out = tmp_path / "o.mp4"
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x", "-o", out, *FAST)
    assert code == 0, text
    model = json.loads(out.with_suffix(".json").read_text())["config"]["model"]
    assert model["base"] == model["controlnet"] == model["motion_adapter"] == model["clip_vision"] == "tiny (random weights)"
    assert all("stable-diffusion" not in str(model[role]) for role in ("base", "vae", "single_file_config"))
