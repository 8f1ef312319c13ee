"""Configuration: named files load, layers override in order, bad keys and values are named."""

import pytest

from sagvideo.config import Config, load_config, merge, parse_set_items, shipped_configs
from sagvideo.errors import ConfigError


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_every_shipped_config_loads(name):
    assert isinstance(load_config(name), Config)


def test_layers_apply_in_order_and_inputs_are_not_modified():
    overrides = {"guidance": {"n": 8}, "video.frames": 4}
    config = load_config(["video", "tiny"], overrides)
    assert config.model.preset == "tiny" and config.guidance.n == 8 and config.video.frames == 4
    assert overrides == {"guidance": {"n": 8}, "video.frames": 4}
    base = Config()
    merged = merge(base, {"sampling.steps": "30"})  # strings from flags are coerced
    assert merged.sampling.steps == 30 and base.sampling.steps == 25


def test_set_items_parse_yaml_scalars():
    assert parse_set_items(["guidance.n=8", "guidance.cond_only=true", "sampling.negative_prompt=blurry, dark"]) == {
        "guidance.n": 8, "guidance.cond_only": True, "sampling.negative_prompt": "blurry, dark"}


@pytest.mark.parametrize("overrides,words", [
    ({"guidance.nn": 1}, ["guidance.nn", "did you mean 'guidance.n'"]),
    ({"guidanc.n": 1}, ["config section 'guidanc'", "did you mean 'guidance'"]),
    ({"n": 1}, ["needs a section", "guidance.n"]),
    ({"video.frames": 2.5}, ["video.frames", "must be int"]),
    ({"guidance.enabled": "maybe"}, ["guidance.enabled", "must be bool"]),
    ({"guidance.start": 0.8, "guidance.end": 0.2}, ["guidance.start", "start <= end"]),
    ({"guidance.scheme": "rk4"}, ["guidance.scheme", "euler, heun"]),
    ({"model.dtype": "int8"}, ["model.dtype", "float16"]),
])
def test_bad_keys_and_values_are_named(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    for word in words:
        assert word in str(err.value)


def test_missing_named_config_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="12gb, 8gb, image, lcm, lightning, tiny, tiny-lcm, tiny-lightning, video"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("guidance: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_the_default_schedule_is_the_one_animatediff_samples_with():
    """Our alphas and timesteps equal diffusers' DDIM set up with the AnimateDiff recipe."""
    import torch
    from diffusers import DDIMScheduler

    from sagvideo.guidance import ddim_timesteps
    from sagvideo.models.components import alphas_cumprod_from_config

    s = load_config("video").sampling
    assert Config().sampling == s  # the defaults are the video recipe
    reference = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                              steps_offset=1, timestep_spacing="linspace")
    reference.set_timesteps(s.steps)
    ours = alphas_cumprod_from_config({"num_train_timesteps": 1000, "beta_schedule": s.beta_schedule,
                                       "beta_start": s.beta_start, "beta_end": s.beta_end})
    assert torch.allclose(ours.float(), reference.alphas_cumprod, rtol=1e-6)
    assert ddim_timesteps(1000, s.steps, spacing=s.timestep_spacing) == reference.timesteps.tolist()
    image = load_config("image").sampling  # SD 1.5's own schedule for images
    sd = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    sd.set_timesteps(image.steps)
    assert image.beta_schedule == "scaled_linear"
    assert ddim_timesteps(1000, image.steps, spacing=image.timestep_spacing) == sd.timesteps.tolist()
    trailing = DDIMScheduler(timestep_spacing="trailing")
    trailing.set_timesteps(25)
    assert ddim_timesteps(1000, 25, spacing="trailing") == trailing.timesteps.tolist()


def test_old_names_of_passes_still_work_with_a_notice(capsys):
    from sagvideo import method_registry

    method_registry._noticed.clear()
    for old in ("guidance.repeats", "ug.recurrence", "mpgd.time_travel"):
        assert load_config(None, {old: 3}).guidance.passes == 3
        assert f"'{old}' is deprecated; it is now 'guidance.passes'" in capsys.readouterr().err
    assert load_config(None).guidance.passes is None  # unset: each method's own default
    with pytest.raises(ConfigError, match="'guidance.repeats' and 'ug.recurrence' both set 'guidance.passes'"):
        load_config(None, {"guidance.repeats": 2, "ug.recurrence": 6})
