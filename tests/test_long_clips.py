"""Whole clips: any length through motion windows, same look and bytes, and settings checked up front."""

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from sagvideo.api import stylize_image, stylize_to_files, stylize_video
from sagvideo.cli import main
from sagvideo.config import load_config
from sagvideo.errors import ConfigError
from sagvideo.pipeline.noise import initial_noise
from sagvideo.pipeline import StylizePipeline
from sagvideo.pipeline.runtime import Runtime
from sagvideo.video.io import probe_video, read_clip

LONG = {"video.frames": 40, "sampling.steps": 3, "guidance.n": 1, "guidance.passes": 1,
        "guidance.start": 0.3, "guidance.end": 0.7}


@pytest.fixture(scope="module")
def runtime():
    return Runtime.from_config(load_config("tiny"))


def test_a_40_frame_clip_comes_out_whole_at_the_source_fps_with_audio(fixtures, runtime, tmp_path):
    out = tmp_path / "long.mp4"
    report = stylize_to_files(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "a rabbit", out,
                              config=load_config("tiny", LONG), runtime=runtime)
    info = probe_video(out)
    assert info.frame_count == 40 and info.fps == Fraction(25) and info.has_audio
    assert (info.width, info.height) == (1280, 720)
    assert report["windows"]["count"] == 3 and report["windows"]["spans"] == [[0, 16], [12, 28], [24, 40]]
    guided = report["guided_steps"]
    assert guided and all(len(r["window_losses"]) == 3 for r in guided)
    assert all(np.isfinite(r["window_losses"]).all() and min(r["window_losses"]) > 0 for r in guided)
    assert set(report["seconds"]) >= {"read", "depth", "sampling", "decode", "write"}
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["frames"] == 40 and saved["input"]["frame_indices"] == list(range(40))


def test_a_windowed_run_repeats_bit_for_bit(fixtures, runtime):
    args = (fixtures / "bigbuckbunny.mp4", fixtures / "shipwreck.jpg", "x")
    config = load_config("tiny", {**LONG, "video.frames": 24, "video.window": 8, "video.overlap": 2})
    a = stylize_video(*args, config=config, runtime=runtime)
    b = stylize_video(*args, config=config, runtime=runtime)
    assert a.report["windows"]["count"] == 4 and np.array_equal(a.frames, b.frames)


def test_window_at_least_the_clip_is_exactly_joint_sampling(fixtures, runtime):
    clip = read_clip(fixtures / "bigbuckbunny.mp4", frames=12, size=64)
    style = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    results = []
    for window in (0, 12, 16):  # 0 = all frames jointly, as before windows existed
        config = load_config("tiny", {**LONG, "video.frames": 12, "video.window": window})
        results.append(StylizePipeline(runtime, config)(clip.frames, style, "x", seed=5))
    assert all(r.report["windows"]["count"] == 1 for r in results)
    assert all(np.array_equal(results[0].frames, r.frames) for r in results[1:])
    # ... and several windows do change the result
    config = load_config("tiny", {**LONG, "video.frames": 12, "video.window": 8, "video.overlap": 2})
    assert not np.array_equal(StylizePipeline(runtime, config)(clip.frames, style, "x", seed=5).frames,
                              results[0].frames)


def test_noise_schemes_agree_within_one_window_and_shuffle_across_windows():
    shape = (1, 4, 40, 8, 8)
    independent = initial_noise(shape, 7, scheme="independent", window=16, overlap=4)
    shuffled = initial_noise(shape, 7, scheme="shuffled", window=16, overlap=4)
    short = (1, 4, 16, 8, 8)
    assert torch.equal(initial_noise(short, 7, scheme="shuffled", window=16, overlap=4),
                       initial_noise(short, 7, scheme="independent", window=16, overlap=4))
    assert torch.equal(shuffled[:, :, :16], independent[:, :, :16])
    shorter = initial_noise((1, 4, 20, 8, 8), 7, scheme="independent", window=16, overlap=4)
    assert torch.equal(shorter, independent[:, :, :20])  # a frame's noise does not depend on clip length
    first = {tuple(shuffled[0, :, f].flatten()[:4].tolist()) for f in range(16)}
    assert all(tuple(shuffled[0, :, f].flatten()[:4].tolist()) in first for f in range(16, 40))  # reused frames
    assert not torch.equal(shuffled[:, :, 16:32], shuffled[:, :, :16])  # ... in another order


def test_whole_span_and_seconds_select_frames(fixtures):
    bunny = fixtures / "bigbuckbunny.mp4"
    assert len(read_clip(bunny, frames=None, stride=4, size=16).indices) == 33  # 132 frames, every 4th
    clip = read_clip(bunny, frames=None, start_time=2.0, duration=1.0, size=16)
    assert clip.indices == list(range(50, 75))  # 25 fps: from 2 s, for 1 s
    assert clip.audio_span == (2.0, 3.0)


@pytest.mark.parametrize("overrides,needles", [
    ({"video.frames": 40, "video.window": 0}, ["40 frames cannot be sampled jointly", "video.window=16"]),
    ({"video.frames": 40, "video.window": 48}, ["'video.window' is 48", "at most 32", "video.window=16"]),
    ({"video.overlap": 16}, ["video.overlap", "smaller than video.window (16)"]),
])
def test_bad_window_settings_fail_before_any_model_loads(capsys, fixtures, tmp_path, overrides, needles):
    sets = [f"{k}={v}" for k, v in overrides.items()]
    out = tmp_path / "o.mp4"
    code = main(["stylize", str(fixtures / "bigbuckbunny.mp4"), "--style", str(fixtures / "starry_night.jpg"),
                 "--prompt", "x", "-o", str(out), "--config", "tiny", "--quiet", "--set", *sets])
    text = capsys.readouterr().err
    assert code == 2 and all(n in text for n in needles), text
    assert list(tmp_path.iterdir()) == []  # not even the depth cache


def test_frames_all_on_an_image_is_refused(fixtures, runtime):
    config = load_config(["image", "tiny"], {"video.frames": "all"})
    with pytest.raises(ConfigError, match="'video.frames' is 'all'.*an image is one frame"):
        stylize_image("x", fixtures / "starry_night.jpg", config=config, runtime=runtime)


def test_every_run_reports_quality_metrics_and_plots_them(fixtures, runtime, tmp_path):
    out = tmp_path / "m.mp4"
    config = load_config("tiny", {**LONG, "video.frames": 6})
    report = stylize_to_files(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "x", out,
                              config=config, runtime=runtime)
    metrics = report["metrics"]
    for name in ("warp_error", "warp_error_source", "flicker", "style_distance", "clip_consistency", "depth_fidelity"):
        assert metrics[name] is not None and np.isfinite(metrics[name]), name
        assert len(metrics["per_frame"][name]) == 6, name
    assert metrics["warp_error"] >= 0 and -1 <= metrics["depth_fidelity"] <= 1
    from PIL import Image

    with Image.open(tmp_path / "m.plot.png") as plot:
        assert plot.size[0] > 100
    off = stylize_video(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "x", runtime=runtime,
                        config=load_config("tiny", {**LONG, "video.frames": 2, "output.metrics": False}))
    assert "metrics" not in off.report


def test_denoise_runs_the_last_fraction_of_the_schedule_from_the_source(fixtures, runtime):
    args = (fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "x")
    base = {**LONG, "video.frames": 4, "sampling.steps": 10, "guidance.start": 0.0, "guidance.end": 0.5}
    full = stylize_video(*args, config=load_config("tiny", base), runtime=runtime).report
    part = stylize_video(*args, config=load_config("tiny", {**base, "sampling.denoise": 0.4}), runtime=runtime).report
    assert len(full["timesteps"]) == 10 and part["timesteps"] == full["timesteps"][6:]  # the last 40%
    assert part["denoise"] == {"fraction": 0.4, "steps_run": 4, "steps_skipped": 6}
    assert [r["index"] for r in part["guided_steps"]] == [0, 1]  # the guided range applies to the 4 steps run
    with pytest.raises(Exception, match="sampling.denoise"):
        load_config("tiny", {"sampling.denoise": 1.5})
