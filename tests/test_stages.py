"""StylizePipeline stage by stage: the cached ControlNet embedding, restored levers, costs, previews."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sagvideo.api import stylize_to_files
from sagvideo.config import load_config
from sagvideo.pipeline.denoiser import ControlCache, DepthControlledEps
from sagvideo.models.checkpointing import all_checkpointed
from sagvideo.pipeline import StylizePipeline
from sagvideo.pipeline.runtime import Runtime
from sagvideo.video.depth import depth_to_control_image

FAST = {"video.frames": 4, "sampling.steps": 4, "guidance.n": 2, "guidance.passes": 1}


@pytest.fixture(scope="module")
def runtime():
    return Runtime.from_config(load_config("tiny"))


def frames_and_style(num=4, size=(64, 64)):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (num, size[1], size[0], 3), dtype=np.uint8)
    return frames, torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))


def test_stages_one_by_one_equal_the_whole_call(runtime):
    pipe = StylizePipeline(runtime, load_config("tiny", FAST))
    frames, style = frames_and_style()
    whole = pipe(frames, style, "a scene", seed=3)
    inputs = pipe.check_inputs(frames, style, "a scene")
    depth = pipe.prepare_depth(inputs.frames)
    latents = pipe.prepare_latents(inputs.num_frames, inputs.size, seed=3)
    sampled = pipe.sample(latents, depth, inputs.style, "a scene", seed=3)
    assert np.array_equal(pipe.decode(sampled.latents), whole.frames)
    assert [r["loss"] for r in sampled.records] == [r["loss"] for r in whole.report["guided_steps"]]


def test_the_cached_controlnet_embedding_gives_the_same_eps(runtime):
    c = runtime.components
    depth = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    control = ControlCache(c, depth_to_control_image(depth))
    assert control.embedded  # small enough to keep
    text = c.encode_prompt(["", "a scene"])
    x = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    cached = DepthControlledEps(c, text, control)(x, 500)
    images = ControlCache.__new__(ControlCache)  # the same control, not embedded: the ControlNet embeds it each call
    images.images, images.embedded = depth_to_control_image(depth).to(c.device, c.dtype), False
    calls = []
    hook = c.controlnet.controlnet_cond_embedding.register_forward_hook(lambda *a: calls.append(1))
    try:
        plain = DepthControlledEps(c, text, images)(x, 500)
        assert calls  # the uncached path really runs the embedding
        calls.clear()
        DepthControlledEps(c, text, control)(x, 500)
        assert not calls  # the cached path never does
    finally:
        hook.remove()
    assert torch.allclose(cached, plain, atol=1e-6)
    assert c.controlnet.controlnet_cond_embedding.__class__.__name__ == "ControlNetConditioningEmbedding"


def test_gradient_checkpointing_is_restored_after_the_job(runtime):
    unet, controlnet = runtime.components.unet, runtime.components.controlnet
    assert not all_checkpointed(unet)
    seen = []
    hook = unet.register_forward_pre_hook(lambda m, a: seen.append(all_checkpointed(m)))
    config = load_config("tiny", {**FAST, "guidance.gradient_checkpointing": True})
    try:
        StylizePipeline(runtime, config)(*frames_and_style(2), "x")
    finally:
        hook.remove()
    assert True in seen  # it was on during the job ...
    assert not all_checkpointed(unet) and not all_checkpointed(controlnet)  # ... and is off after it


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_report_counts_2n_minus_1_evaluations_and_n_vjps_per_pass(runtime, n):
    config = load_config("tiny", {**FAST, "guidance.n": n, "video.frames": 2})
    calls = []
    hook = runtime.components.unet.register_forward_pre_hook(lambda m, a: calls.append(torch.is_grad_enabled()))
    try:
        report = StylizePipeline(runtime, config)(*frames_and_style(2), "x").report
    finally:
        hook.remove()
    passes = report["guided_steps"]
    assert passes and all(p["cost"] == {"eps_evals": n - 1, "eps_evals_graph": n, "vjps": n} for p in passes)
    unguided = config.sampling.steps - len(passes)
    assert len(calls) == unguided + len(passes) * (2 * n - 1)  # the UNet ran exactly that often
    assert report["evaluations"]["window_evaluations"] == len(calls)


def test_on_step_sees_every_step_and_can_stop_early(runtime):
    pipe = StylizePipeline(runtime, load_config("tiny", FAST))
    seen = []

    def stop_after_two(i, t, x, x0_hat, loss):
        seen.append((i, t, tuple(x0_hat.shape), loss))
        return False if i == 1 else None

    result = pipe(*frames_and_style(), "x", on_step=stop_after_two)
    assert [s[0] for s in seen] == [0, 1] and seen[0][2] == (1, 4, 4, 8, 8)
    assert result.report["stopped_at"] == 1 and result.frames.shape == (4, 64, 64, 3)


def test_preview_is_written_during_the_run_and_removed_after(fixtures, runtime, tmp_path):
    out = tmp_path / "p.mp4"
    previews = []

    def watch(i, t, x, x0_hat, loss):
        path = tmp_path / "p.preview.png"
        if path.exists():
            from PIL import Image

            with Image.open(path) as im:
                previews.append((i, im.size))

    config = load_config("tiny", {**FAST, "output.preview": 2})
    stylize_to_files(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "x", out, config=config,
                     runtime=runtime, on_step=watch)
    assert previews and previews[0][0] == 1  # written after step 2 (index 1), seen from then on
    assert previews[0][1] == (4 * 112, 64)  # 4 frames side by side at model size
    assert not (tmp_path / "p.preview.png").exists() and out.is_file()


def test_cli_help_and_import_do_not_load_torch():
    code = ("import sys, sagvideo, sagvideo.cli\n"
            "p = sagvideo.cli.build_parser()\n"
            "for argv in (['--help'], ['stylize', '--help'], ['batch', '--help'], ['bench', '--help']):\n"
            "    try:\n"
            "        p.parse_args(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    import sagvideo

    assert sagvideo.__version__ == version("sagvideo")
    proc = subprocess.run([sys.executable, "-m", "sagvideo.cli", "--version"], capture_output=True, text=True)
    assert proc.stdout.strip() == f"sagvideo {version('sagvideo')}"


def test_compile_flag_compiles_unet_and_controlnet():
    runtime = Runtime.from_config(load_config("tiny", {"model.compile": True}))
    c = runtime.components
    assert c.unet._compiled_call_impl is not None and c.controlnet._compiled_call_impl is not None
    assert json.dumps(load_config("tiny").to_dict()["model"]["compile"]) == "false"  # off by default


@pytest.mark.parametrize("method", ["sag", "freedom", "ug", "mpgd", "doodl"])
def test_every_guidance_method_runs_on_video_and_image_and_reports_its_cost(runtime, method):
    extra = {"doodl.iterations": 1} if method == "doodl" else {}
    for frames, config in (
        (2, load_config("tiny", {**FAST, "video.frames": 2, "guidance.method": method, **extra})),
        (1, load_config(["image", "tiny"], {"sampling.steps": 4, "guidance.n": 2, "guidance.passes": 1,
                                            "guidance.method": method, **extra})),
    ):
        pipe = StylizePipeline(runtime if frames > 1 else Runtime.from_config(config, video=False), config)
        first = pipe(*frames_and_style(frames), "x", seed=1)
        again = pipe(*frames_and_style(frames), "x", seed=1)
        assert np.array_equal(first.frames, again.frames), method  # seeded like SAG
        passes = first.report["guided_steps"]
        assert passes and all(set(p["cost"]) >= {"eps_evals", "eps_evals_graph", "vjps"} for p in passes), method
        assert all(np.isfinite(p["loss"]) for p in passes)
        assert first.report["config"]["guidance"]["method"] == method
        if method == "mpgd":
            assert all(p["cost"]["vjps"] == 0 for p in passes)  # no backprop through the network


def test_methods_run_through_motion_windows(runtime):
    for method in ("freedom", "mpgd", "ug"):
        config = load_config("tiny", {**FAST, "video.frames": 12, "video.window": 8, "video.overlap": 2,
                                      "guidance.method": method})
        result = StylizePipeline(runtime, config)(*frames_and_style(12), "x")
        assert result.report["windows"]["count"] == 2 and result.report["guided_steps"], method
