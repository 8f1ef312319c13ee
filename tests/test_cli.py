"""The command line: each bad input gives a clear message, exit code 2, and no output file."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from sagvideo.cli import main
from sagvideo.video.io import probe_video

FAST = ["--config", "tiny", "--frames", "2", "--steps", "2", "--quiet"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def clip(fixtures):
    return fixtures / "bigbuckbunny.mp4"


@pytest.fixture
def style(fixtures):
    return fixtures / "starry_night.jpg"


def assert_failed_cleanly(code, text, folder, *needles):
    """Exit 2, our message with the given words, and nothing written in the output folder."""
    assert code == 2, text
    assert "sagvideo: error:" in text
    for needle in needles:
        assert needle in text, text
    assert list(Path(folder).iterdir()) == []


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_stylize_cli_writes_video_and_refuses_to_overwrite(capsys, tmp_path, clip, style):
    out = tmp_path / "out.mp4"
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "a rabbit", "-o", out, *FAST,
                     "--size", "60", "--gif")
    assert code == 0, text
    assert "tiny preset" in text and out.is_file() and out.with_suffix(".gif").is_file()
    info = probe_video(out)
    assert info.frame_count == 2 and (info.width, info.height) == (1280, 720)
    before = out.read_bytes()
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "a rabbit", "-o", out, *FAST)
    assert code == 2 and "already exists" in text and "--overwrite" in text
    assert out.read_bytes() == before
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "b", "-o", out, *FAST, "--overwrite")
    assert code == 0, text


def test_bad_video_inputs(capsys, tmp_path, out_dir, clip, style, fixtures):
    out = out_dir / "o.mp4"
    common = ["--style", style, "--prompt", "x", "-o", out, *FAST]
    code, text = run(capsys, "stylize", tmp_path / "missing.mp4", *common)
    assert_failed_cleanly(code, text, out_dir, "missing.mp4")
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is text, not a video")
    code, text = run(capsys, "stylize", not_video, *common)
    assert_failed_cleanly(code, text, out_dir, "cannot be read as a video")
    jpeg = tmp_path / "photo.mp4"
    shutil.copy(fixtures / "shipwreck.jpg", jpeg)
    code, text = run(capsys, "stylize", jpeg, *common)
    assert_failed_cleanly(code, text, out_dir, "photo.mp4")
    code, text = run(capsys, "stylize", clip, *common, "--frames", "40", "--stride", "4")
    assert_failed_cleanly(code, text, out_dir, "132 frames", "--stride")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    code, text = run(capsys, "stylize", empty, *common)
    assert_failed_cleanly(code, text, out_dir, "empty.mp4")


def test_bad_style_and_output_paths(capsys, tmp_path, out_dir, clip, style):
    code, text = run(capsys, "stylize", clip, "--style", tmp_path / "nope.png", "--prompt", "x",
                     "-o", out_dir / "o.mp4", *FAST)
    assert_failed_cleanly(code, text, out_dir, "style image not found", "nope.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    code, text = run(capsys, "stylize", clip, "--style", broken, "--prompt", "x", "-o", out_dir / "o.mp4", *FAST)
    assert_failed_cleanly(code, text, out_dir, "cannot read style image")
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x",
                     "-o", tmp_path / "no" / "such" / "o.mp4", *FAST)
    assert_failed_cleanly(code, text, out_dir, "does not exist", "mkdir -p")
    if os.access("/sys", os.W_OK) and Path("/sys/kernel").is_dir():
        code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x", "-o", "/sys/o.mp4", *FAST)
        assert code == 2 and "not writable" in text


def test_invalid_config_keys_and_values_are_named(capsys, tmp_path, out_dir, clip, style):
    common = ["stylize", clip, "--style", style, "--prompt", "x", "-o", out_dir / "o.mp4", *FAST]
    code, text = run(capsys, *common, "--set", "guidance.nn=3")
    assert_failed_cleanly(code, text, out_dir, "guidance.nn", "did you mean 'guidance.n'")
    code, text = run(capsys, *common, "--set", "guidance.method=magic")
    assert_failed_cleanly(code, text, out_dir, "guidance.method", "sag, freedom")
    code, text = run(capsys, *common, "--set", "guidance.gradient=magic")
    assert_failed_cleanly(code, text, out_dir, "guidance.gradient", "symplectic")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling:\n  steps: many\n")
    code, text = run(capsys, *common, "--config", bad)
    assert_failed_cleanly(code, text, out_dir, "sampling.steps", "must be int")
    code, text = run(capsys, *common, "--n", "0")
    assert_failed_cleanly(code, text, out_dir, "guidance.n", "between 1 and")


def test_size_not_multiple_of_8_is_fixed(capsys, tmp_path, clip, style):
    out = tmp_path / "o.mp4"
    code, text = run(capsys, "stylize", clip, "--style", style, "--prompt", "x", "-o", out, *FAST, "--size", "61")
    assert code == 0, text
    import json

    assert json.loads(out.with_suffix(".json").read_text())["input"]["model_size"] == [112, 64]


def test_no_prompt_runs_end_to_end_video_and_image(capsys, tmp_path, clip, style):
    """The README's one-line command: a style image is enough; the report says there was no prompt."""
    out = tmp_path / "v.mp4"
    code, text = run(capsys, "stylize", clip, "--style", style, "-o", out, *FAST)
    assert code == 0, text
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["input"]["prompt"] is None and report["prompt"]["text"] is None
    assert "no prompt" in report["prompt"]["note"] and probe_video(out).frame_count == 2
    image = tmp_path / "i.png"
    code, text = run(capsys, "image", "--style", style, "-o", image, "--config", "tiny", "--steps", "2", "--quiet")
    assert code == 0, text
    report = json.loads(image.with_suffix(".json").read_text())
    assert report["input"]["prompt"] is None and "no prompt" in report["prompt"]["note"]


def test_image_and_depth_commands(capsys, tmp_path, style, clip, fixtures):
    out = tmp_path / "img.png"
    code, text = run(capsys, "image", "--prompt", "a ship", "--style", style, "-o", out, "--config", "tiny",
                     "--steps", "3", "--width", "80", "--height", "48", "--quiet")
    assert code == 0, text
    assert Image.open(out).size == (80, 48)
    code, text = run(capsys, "depth", clip, "-o", tmp_path / "maps", "--config", "tiny", "--frames", "3")
    assert code == 0, text
    assert len(list((tmp_path / "maps").glob("*.png"))) == 3


def test_missing_model_offline_fails_fast_and_names_it(tmp_path, clip, style):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sagvideo.cli", "stylize", str(clip), "--style", str(style),
                           "--prompt", "x", "-o", str(tmp_path / "o.mp4"), "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in proc.stderr and "model.base" in proc.stderr
    assert "HF_HUB_OFFLINE" in proc.stderr
    assert elapsed < 60  # seconds, not a retry storm (imports alone take several seconds here)
    assert list(tmp_path.iterdir()) == []


def test_console_script_help():
    exe = shutil.which("sagvideo", path=str(Path(sys.executable).parent))
    assert exe, "the `sagvideo` console script is not installed in this environment"
    proc = subprocess.run([exe, "stylize", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--style" in proc.stdout and "--frames" in proc.stdout


def test_problems_found_before_any_model_work(capsys, tmp_path, out_dir, clip, style):
    common = ["stylize", clip, "--style", style, "--prompt", "x", *FAST]
    code, text = run(capsys, *common, "-o", out_dir)
    assert code == 2 and "is a folder" in text and "give a file path" in text
    code, text = run(capsys, *common, "-o", out_dir / "clip.gif")
    assert_failed_cleanly(code, text, out_dir, "clip.gif", ".mp4", "--gif")
    code, text = run(capsys, *common, "-o", out_dir / "o.mp4", "--set", "guidance.layer=9")
    assert_failed_cleanly(code, text, out_dir, "guidance.layer", "from 1 to 4")
    code, text = run(capsys, *common, "-o", out_dir / "o.mp4", "--size", "100000")
    assert_failed_cleanly(code, text, out_dir, "video.size", "4096")
    if not __import__("torch").cuda.is_available():
        code, text = run(capsys, *common, "-o", out_dir / "o.mp4", "--device", "cuda")
        assert_failed_cleanly(code, text, out_dir, "model.device", "--device auto")
