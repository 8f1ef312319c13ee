"""Few-step samplers (`sampling.scheduler`): steps against diffusers' own, exact guidance gradients
through the few-step chains (float64), the shipped lightning / lcm configs, refusals, tiny runs."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler, LCMScheduler

from sagvideo.api import stylize_image, stylize_video
from sagvideo.config import load_config
from sagvideo.errors import ConfigError
from sagvideo.guidance import sag_gradient
from sagvideo.guidance.ddim import estimate_grid
from sagvideo.guidance.schedulers import Sampler
from sagvideo.models.loras import parse_lora
from sagvideo.models.sources import classify
from sagvideo.pipeline.runtime import Runtime

LINEAR = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012}
SHAPE = (1, 2, 3, 4, 4)  # (B, C, F, h, w)


def _prev_alpha(alphas: torch.Tensor, timesteps: list[int], i: int) -> float:
    return float(alphas[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0


def test_euler_trailing_steps_equal_diffusers_euler():
    ours = Sampler("euler")
    theirs = EulerDiscreteScheduler(**LINEAR, timestep_spacing="trailing")
    theirs.set_timesteps(4)
    timesteps = ours.timesteps(1000, 4, "trailing")
    assert [int(t) for t in theirs.timesteps] == timesteps == [999, 749, 499, 249]
    alphas, gen = theirs.alphas_cumprod, torch.Generator().manual_seed(0)
    for i, t in enumerate(timesteps):
        x, eps = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
        a, a_next = float(alphas[t]), _prev_alpha(alphas, timesteps, i)
        # diffusers' Euler state is y = x / sqrt(a) (the model sees y / sqrt(sigma^2 + 1) = x)
        y_next = theirs.step(eps, theirs.timesteps[i], x / math.sqrt(a)).prev_sample
        torch.testing.assert_close(ours.step(x, eps, t, a, a_next), y_next * math.sqrt(a_next), rtol=1e-5, atol=1e-5)


def test_lcm_steps_equal_diffusers_lcm_noise_included():
    ours = Sampler("lcm")
    theirs = LCMScheduler(**LINEAR)
    theirs.set_timesteps(6)
    timesteps = ours.timesteps(1000, 6)
    assert [int(t) for t in theirs.timesteps] == timesteps
    alphas, gen = theirs.alphas_cumprod, torch.Generator().manual_seed(1)
    for i, t in enumerate(timesteps):
        x, eps = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
        a, a_next = float(alphas[t]), _prev_alpha(alphas, timesteps, i)
        expected = theirs.step(eps, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
        got = ours.step(x, eps, t, a, a_next, torch.Generator().manual_seed(i))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    c_skip, c_out = theirs.get_scalings_for_boundary_condition_discrete(179)
    denoised = ours.clean(x, eps, 179, float(alphas[179]))
    torch.testing.assert_close(denoised, c_out * (x - (1 - alphas[179]).sqrt() * eps) / alphas[179].sqrt() + c_skip * x)


def test_ddim_steps_equal_diffusers_ddim():
    ours = Sampler("ddim")
    theirs = DDIMScheduler(**LINEAR, timestep_spacing="leading", steps_offset=1, clip_sample=False)
    theirs.set_timesteps(5)
    timesteps = ours.timesteps(1000, 5, "leading")
    assert [int(t) for t in theirs.timesteps] == timesteps
    alphas, gen = theirs.alphas_cumprod, torch.Generator().manual_seed(2)
    for i, t in enumerate(timesteps):
        x, eps = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
        expected = theirs.step(eps, t, x, eta=0.0).prev_sample
        got = ours.step(x, eps, t, float(alphas[t]), _prev_alpha(alphas, timesteps, i))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_bad_scheduler_or_step_count_is_refused_by_the_sampler():
    with pytest.raises(ValueError, match="unknown scheduler"):
        Sampler("dpm")
    with pytest.raises(ValueError, match="1 to 50 steps"):
        Sampler("lcm").timesteps(1000, 51)
    with pytest.raises(ValueError, match="trailing"):
        Sampler("euler").timesteps(1000, 4, "linspace")


# ---------------------------------------------------------------- the guided gradient, float64

def _toy_eps():
    """A small nonlinear eps(x, t) in float64 whose Jacobian is dense across channels."""
    gen = torch.Generator().manual_seed(3)
    mix = torch.randn(2, 2, generator=gen, dtype=torch.float64) * 0.7

    def eps(x, t):
        return torch.tanh(torch.einsum("dc,bc...->bd...", mix, x)) + 0.1 * (t / 1000) * torch.sin(x)

    return eps


def _loss(target):
    return lambda x0: ((x0 - target) ** 2 * torch.linspace(0.5, 1.5, x0.numel(), dtype=x0.dtype).view_as(x0)).sum()


def _lcm_chain_reference(eps, x, grid, alphas):
    """LCM's steps with the fresh noise replaced by eps, written from diffusers' scalings."""
    boundary = LCMScheduler(**LINEAR).get_scalings_for_boundary_condition_discrete
    for k, s in enumerate(grid.timesteps):
        a, a_next = float(alphas[s]), grid.alphas[k + 1]
        e = eps(x, s)
        c_skip, c_out = boundary(s)
        denoised = c_out * (x - math.sqrt(1 - a) * e) / math.sqrt(a) + c_skip * x
        x = denoised if a_next >= 1 else math.sqrt(a_next) * denoised + math.sqrt(1 - a_next) * e
    return x


def _euler_chain_reference(eps, x, grid, alphas):
    """diffusers' Euler in y = x / sqrt(a): y' = y + (sigma' - sigma) eps, ending at sigma = 0."""
    sigma = lambda a: math.sqrt((1 - a) / a)  # noqa: E731
    y = x / math.sqrt(grid.alphas[0])
    for k, s in enumerate(grid.timesteps):
        a, a_next = grid.alphas[k], grid.alphas[k + 1]
        y = y + (sigma(a_next) - sigma(a)) * eps(y * math.sqrt(a), s)
    return y


@pytest.mark.parametrize("name, reference, t", [("lcm", _lcm_chain_reference, 30), ("lcm", _lcm_chain_reference, 499),
                                                 ("euler", _euler_chain_reference, 499)])
def test_guided_gradient_equals_autograd_through_the_samplers_chain(name, reference, t):
    from sagvideo.models.components import alphas_cumprod_from_config

    alphas = alphas_cumprod_from_config(LINEAR).double()
    eps, gen = _toy_eps(), torch.Generator().manual_seed(4)
    x_t = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    loss = _loss(torch.randn(SHAPE, generator=gen, dtype=torch.float64))
    grid = estimate_grid(t, 2, alphas)
    leaf = x_t.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(loss(reference(eps, leaf, grid, alphas)), leaf)
    for method in ("symplectic", "direct"):
        grad, _ = sag_gradient(eps, x_t, t, alphas, loss, n=2, method=method, sampler=Sampler(name))
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    if name == "lcm":  # the boundary condition matters: DDIM's chain is another gradient
        ddim, _ = sag_gradient(eps, x_t, t, alphas, loss, n=2)
        assert (ddim - expected).abs().max() > 1e-9


# ---------------------------------------------------------------- configs and refusals

def test_shipped_few_step_configs_and_their_tiny_twins_agree():
    lightning, lcm = load_config("lightning"), load_config("lcm")
    assert (lightning.sampling.scheduler, lightning.sampling.steps, lightning.sampling.cfg_scale) == ("euler", 4, 1.0)
    assert lightning.sampling.timestep_spacing == "trailing" and lightning.model.motion_adapter.startswith("hf://")
    assert (lcm.sampling.scheduler, lcm.sampling.steps, lcm.sampling.cfg_scale) == ("lcm", 6, 1.5)
    assert lcm.model.loras == ["hf://wangfuyun/AnimateLCM/AnimateLCM_sd15_t2v_lora.safetensors:0.8"]
    for name, full in (("tiny-lightning", lightning), ("tiny-lcm", lcm)):
        tiny = load_config(name)
        assert tiny.model.preset == "tiny" and tiny.sampling == full.sampling and tiny.guidance == full.guidance


@pytest.mark.parametrize("overrides, key", [
    ({"sampling.scheduler": "dpm"}, "sampling.scheduler"),
    ({"sampling.scheduler": "euler"}, "sampling.timestep_spacing"),  # the default spacing is linspace
    ({"sampling.scheduler": "lcm", "sampling.steps": 60}, "sampling.steps"),
    ({"sampling.scheduler": "lcm", "guidance.method": "ug"}, "guidance.method"),
    ({"sampling.scheduler": "lcm", "guidance.scheme": "heun"}, "guidance.scheme"),
    ({"sampling.scheduler": "lcm", "guidance.gradient": "adjoint"}, "guidance.gradient"),
])
def test_combinations_a_scheduler_cannot_run_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, overrides)


def test_every_method_runs_under_euler_and_unguided_lcm_takes_any_method():
    from sagvideo.method_registry import PIPELINE_METHODS

    for method in PIPELINE_METHODS:
        load_config("lightning", {"guidance.method": method})  # Euler's step is DDIM's
    load_config("lcm", {"guidance.method": "ug", "guidance.enabled": False})


def test_hub_file_references_are_fetched_or_refused_naming_the_key(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"'model\.motion_adapter'.*hf://ORG/REPO/FILE"):
        classify("hf://ByteDance/only-two-parts", "model.motion_adapter")
    with pytest.raises(ConfigError, match=r"'model\.motion_adapter'.*animatediff_lightning_4step.*ByteDance"):
        classify(load_config("lightning").model.motion_adapter, "model.motion_adapter")
    with pytest.raises(ConfigError, match=r"'model\.loras'.*AnimateLCM_sd15_t2v_lora"):
        parse_lora(load_config("lcm").model.loras[0])
    with pytest.raises(ConfigError, match=r"'model\.loras'.*'x' after the last ':' is not a number"):
        parse_lora("hf://a/b/c.safetensors:x")


# ---------------------------------------------------------------- tiny runs end to end

SMALL = {"video.size": 32, "guidance.passes": 1, "guidance.n": 1, "output.metrics": False}


@pytest.fixture(scope="module")
def runtime():
    return Runtime.from_config(load_config("tiny"))


@pytest.mark.parametrize("name, overrides", [
    ("tiny-lightning", {"video.frames": 3, "video.window": 2, "video.overlap": 1}),  # context windows too
    ("tiny-lcm", {"video.frames": 2, "sampling.steps": 4}),
])
def test_tiny_few_step_video_runs_and_reports_its_sampler(fixtures, runtime, name, overrides):
    config = load_config(name, {**SMALL, **overrides})
    batches = []  # the motion UNet's batch per call: CFG branches x windows (one window per call)
    hook = runtime.components.unet_motion.register_forward_pre_hook(lambda _, args: batches.append(args[0].shape[0]))
    try:
        result = stylize_video(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg", "a rabbit",
                               config=config, runtime=runtime)
    finally:
        hook.remove()
    assert set(batches) == ({1} if name == "tiny-lightning" else {2})  # CFG off: one branch per evaluation
    sampler, steps = result.report["sampler"], config.sampling.steps
    assert sampler["scheduler"] == config.sampling.scheduler and sampler["steps"] == steps
    assert sampler["guided_steps"] == [i for i in range(steps) if 0.3 <= i / steps < 0.7]
    assert sampler["cfg"].startswith("off" if name == "tiny-lightning" else "on")
    assert [r["index"] for r in result.report["guided_steps"]] == sampler["guided_steps"]
    assert result.frames.shape[0] == config.video.frames
    assert result.report["windows"]["count"] == (2 if name == "tiny-lightning" else 1)


@pytest.mark.parametrize("name", ["tiny-lightning", "tiny-lcm"])
def test_tiny_few_step_image_with_denoise_runs(fixtures, runtime, name):
    config = load_config(["image", name], {**SMALL, "sampling.steps": 4, "sampling.denoise": 0.5})
    result = stylize_image("a ship", fixtures / "starry_night.jpg", config=config, runtime=runtime,
                           depth_from=fixtures / "shipwreck.jpg")
    assert result.frames.ndim == 3 and result.report["sampler"]["scheduler"] == config.sampling.scheduler
    assert result.report["sampler"]["timesteps"] == Sampler(config.sampling.scheduler).timesteps(
        1000, 4, "trailing")[2:]  # the last half of the schedule
