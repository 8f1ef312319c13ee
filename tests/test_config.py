"""Configuration: named files load, layers override in order, bad keys and values are named."""

import pytest

from sagvideo.config import CONFIG_DIR, Config, load_config, merge, parse_set_items
from sagvideo.errors import ConfigError


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
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
    with pytest.raises(ConfigError, match="low-memory"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("guidance: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
