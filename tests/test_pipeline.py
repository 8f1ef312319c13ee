"""End to end with the tiny preset on a real clip and a real painting."""

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from sagvideo.config import load_config
from sagvideo.guidance import SAGParams
from sagvideo.api import stylize_image, stylize_to_files, stylize_video
from sagvideo.outputs.names import OutputLayout
from sagvideo.models.checkpointing import all_checkpointed
from sagvideo.pipeline.runtime import Runtime
from sagvideo.video.io import probe_video

TINY = {"video.frames": 4, "sampling.steps": 5, "guidance.n": 2, "guidance.passes": 2}


@pytest.fixture(scope="module")
def runtime():
    return Runtime.from_config(load_config("tiny"))


def test_stylize_writes_clip_with_frames_fps_aspect_and_report(fixtures, runtime, tmp_path):
    config = load_config("tiny", TINY)
    out = tmp_path / "bunny.mp4"
    report = stylize_to_files(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "a rabbit",
                              out, config=config, runtime=runtime)
    info = probe_video(out)
    assert info.frame_count == 4
    assert info.fps == Fraction(25)
    assert (info.width, info.height) == (1280, 720)  # original size restored, so the aspect too
    assert info.has_audio  # the fixture carries an AAC track; its span is kept
    saved = json.loads(OutputLayout.of(out).report.read_text())
    assert saved == json.loads(json.dumps(report)) and saved["status"] == "complete"
    guided = SAGParams(start=config.guidance.start, end=config.guidance.end).guided_indices(5)
    assert [(r["index"], r["repeat"]) for r in saved["guided_steps"]] == [(i, r) for i in guided for r in range(2)]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in saved["guided_steps"])
    assert saved["label"].startswith("tiny preset") and saved["models"]["preset"] == "tiny"
    assert set(saved["seconds"]) >= {"read", "depth", "sampling", "decode", "write"}
    assert saved["config"]["video"]["frames"] == 4 and saved["versions"]["torch"] == torch.__version__
    assert (tmp_path / "bunny.contact.png").is_file() and OutputLayout.of(out).is_complete()
    assert list(tmp_path.glob(".*tmp*")) == []  # no temporary files left


def test_guidance_changes_output_and_seed_repeats(fixtures, runtime):
    args = (fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "a rabbit")
    on = stylize_video(*args, config=load_config("tiny", TINY), runtime=runtime)
    again = stylize_video(*args, config=load_config("tiny", TINY), runtime=runtime)
    off = stylize_video(*args, config=load_config("tiny", {**TINY, "guidance.enabled": False}), runtime=runtime)
    assert np.array_equal(on.frames, again.frames)
    assert not np.array_equal(on.model_frames, off.model_frames)
    assert off.report["guided_steps"] == []
    assert on.depth.shape == (4, *on.clip.frames.shape[1:3])  # one map per frame, at model size
    assert on.depth.min() == 0.0 and on.depth.max() == 1.0  # normalised over the clip


def test_depth_maps_are_cached_and_reused(fixtures, runtime, tmp_path):
    # metrics off: depth_fidelity estimates the depth of the *output* frames, which is not cached
    config = load_config("tiny", {**TINY, "sampling.steps": 1, "output.metrics": False})
    stylize_to_files(fixtures / "bigbuckbunny.mp4", fixtures / "shipwreck.jpg", "x", tmp_path / "a.mp4",
                     config=config, runtime=runtime)
    cached = list((tmp_path / ".sagvideo-depth").glob("depth-*.npz"))
    assert len(cached) == 1
    calls = []
    estimator = runtime.depth_estimator()
    runtime._depth = lambda frames: calls.append(1) or estimator(frames)
    runtime._depth.name = estimator.name
    try:
        stylize_to_files(fixtures / "bigbuckbunny.mp4", fixtures / "shipwreck.jpg", "x", tmp_path / "b.mp4",
                         config=config, runtime=runtime)
    finally:
        runtime._depth = estimator
    assert calls == []


def test_image_is_the_one_frame_case_with_the_same_guidance(fixtures, runtime):
    config = load_config(["image", "tiny"], {"sampling.steps": 6, "guidance.n": 2})
    result = stylize_image("a ship", fixtures / "starry_night.jpg", config=config, runtime=runtime,
                           width=72, height=48)
    assert result.frames.shape == (48, 72, 3) and result.frames.dtype == np.uint8
    assert len(result.report["guided_steps"]) == len(SAGParams().guided_indices(6)) * 2
    with_depth = stylize_image("a ship", fixtures / "starry_night.jpg", config=config, runtime=runtime,
                               depth_from=fixtures / "shipwreck.jpg")
    assert with_depth.frames.shape == (64, 96, 3)  # the photo's aspect, short side video.size = 64
    assert with_depth.depth.shape == (1, 64, 96)


def test_style_images_in_any_mode_are_converted(fixtures, runtime, tmp_path):
    painting = Image.open(fixtures / "starry_night.jpg")
    config = load_config("tiny", {**TINY, "video.frames": 1, "sampling.steps": 1})
    for mode in ("L", "RGBA", "P"):
        path = tmp_path / f"style_{mode}.png"
        painting.convert(mode).save(path)
        result = stylize_video(fixtures / "bigbuckbunny.mp4", path, "x", config=config, runtime=runtime)
        assert result.style.shape[-1] == 3
    huge = tmp_path / "huge.jpg"
    painting.resize((6000, 3750)).save(huge)
    assert max(stylize_video(fixtures / "bigbuckbunny.mp4", huge, "x", config=config, runtime=runtime).style.shape) <= 1024


@pytest.mark.parametrize("overrides", [
    {"guidance.cond_only": True, "guidance.gradient_checkpointing": False, "guidance.decode_chunk": 2},
    {"guidance.gradient": "direct", "guidance.scheme": "heun"},
    {"guidance.gradient": "adjoint", "guidance.adaptive_n": True, "guidance.n": 3, "sampling.steps": 8},
])
def test_memory_levers_and_methods_run_through_the_pipeline(fixtures, runtime, overrides):
    config = load_config("tiny", {**TINY, "video.frames": 2, "sampling.steps": 4, "guidance.passes": 1, **overrides})
    unet = runtime.components.unet
    seen = []  # (batch size, gradient checkpointing on) of every UNet call made with a graph

    def spy(module, args, kwargs):
        if torch.is_grad_enabled():
            seen.append((args[0].shape[0], all_checkpointed(module)))

    hook = unet.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        result = stylize_video(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "x",
                               config=config, runtime=runtime)
    finally:
        hook.remove()
    cond_only = overrides.get("guidance.cond_only", False)
    assert seen and {batch for batch, _ in seen} == ({1} if cond_only else {2})  # CFG doubles the batch
    # the default (auto) leaves the tiny networks' few megabytes unchecked
    assert {ckpt for _, ckpt in seen} == {overrides.get("guidance.gradient_checkpointing", False)}
    assert not all_checkpointed(unet)  # undone after the job
    losses = [r["loss"] for r in result.report["guided_steps"]]
    assert losses and all(np.isfinite(losses))
    assert result.report["config"]["guidance"] == {**result.report["config"]["guidance"],
                                                   **{k[9:]: v for k, v in overrides.items() if k.startswith("guidance.")}}
    if overrides.get("guidance.adaptive_n"):
        ns = [r["n"] for r in result.report["guided_steps"]]
        assert ns[0] == 3 and ns[-1] == 1


def test_a_failure_after_the_video_is_written_leaves_nothing(fixtures, runtime, tmp_path, monkeypatch):
    import sagvideo.outputs.writers

    def broken_sheet(*args, **kwargs):
        raise OSError("disk full while writing the contact sheet")

    monkeypatch.setattr(sagvideo.outputs.writers, "contact_sheet", broken_sheet)
    config = load_config("tiny", {**TINY, "video.frames": 2, "sampling.steps": 1, "output.gif": True,
                                  "output.frames_dir": True})
    with pytest.raises(OSError, match="disk full"):
        stylize_to_files(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "x", tmp_path / "o.mp4",
                         config=config, runtime=runtime)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".sagvideo-depth"] == []
