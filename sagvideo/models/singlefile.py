"""Load one network from a single checkpoint file with diffusers' single-file loaders.

A file carries weights but not the architecture; that comes from `model.single_file_config`
(a hub id or a diffusers folder with subfolders unet, vae, text_encoder, tokenizer, scheduler,
and optionally controlnet and motion_adapter). Without those two subfolders, a ControlNet's
config is the default depth ControlNet's and a motion adapter's is the one diffusers infers for
the file (AnimateDiff v1/v2/v3), read from the hub cache when offline.

Every failure is a ConfigError or ModelUnavailableError naming the file, its config key, what
the file seems to hold, and the fix.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from diffusers.loaders.single_file_utils import SingleFileComponentError
from diffusers.utils import logging as diffusers_logging

from .. import defaults
from ..errors import ConfigError, ModelUnavailableError
from .sources import KIND_WORDS, ModelRef, checkpoint_kind

# diffusers raises these for a file whose tensors do not fit the architecture of the config.
_FIT_ERRORS = (ValueError, RuntimeError, KeyError, IndexError, TypeError, AttributeError, SingleFileComponentError)


@dataclass(frozen=True)
class ConfigSource:
    """Where a single file's architecture comes from: `from_single_file(config=..., subfolder=...)`."""

    config: str | None  # None: diffusers infers a default hub id from the file's keys
    subfolder: str | None


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers' final `.to(dtype)` of single-file models logs a spurious float32 warning."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)


def _has_config(config: str, subfolder: str) -> bool:
    """Whether `config` (a folder or a cached hub id) has `<subfolder>/config.json`."""
    folder = Path(config).expanduser()
    if folder.is_dir():
        return (folder / subfolder / "config.json").is_file()
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(config, f"{subfolder}/config.json"), str)
    except Exception:  # not a valid repo id: no config there
        return False


def config_source(key: str, single_file_config: str, keys: list[str]) -> ConfigSource:
    """The config for a file under config `key`, from `model.single_file_config` when it has one."""
    config = str(Path(single_file_config).expanduser()) if Path(single_file_config).expanduser().is_dir() \
        else single_file_config
    sub = {"model.base": "unet", "model.vae": "vae", "model.controlnet": "controlnet",
           "model.motion_adapter": "motion_adapter"}[key]
    if key in ("model.base", "model.vae") or _has_config(config, sub):
        return ConfigSource(config, sub)
    if key == "model.controlnet":
        return ConfigSource(defaults.DEFAULT_CONTROLNET, None)  # every SD 1.5 ControlNet shares this layout
    if any("temporal_transformer" in k for k in keys):
        return ConfigSource(None, None)  # original AnimateDiff file: diffusers tells v1/v2/v3 apart
    return ConfigSource(defaults.DEFAULT_MOTION_ADAPTER, None)


def _config_words(source: ConfigSource) -> str:
    if source.config is None:
        return "the AnimateDiff config diffusers picks for this file"
    return f"'{source.config}'" + (f" (subfolder {source.subfolder})" if source.subfolder else "")


def _config_missing(ref: ModelRef, source: ConfigSource, exc: BaseException, offline: bool) -> ModelUnavailableError:
    where = "neither a folder nor in the Hugging Face cache, and the hub cannot be reached" if offline \
        else f"not usable ({exc})"
    return ModelUnavailableError(
        f"config key '{ref.key}' is the single file {ref.path}; its architecture comes from "
        f"{_config_words(source)}, which is {where}. To fix: set `model.single_file_config` to a diffusers folder "
        f"with subfolders unet, vae, text_encoder, tokenizer, scheduler (and controlnet or motion_adapter with "
        f"their config.json) that matches the file, or download that config where the hub is reachable.")


def _incomplete(ref: ModelRef, keys: list[str], what: str, source: ConfigSource, count: str) -> ConfigError:
    return ConfigError(
        f"config key '{ref.key}': {ref.path} lacks {count} of the weights of {what}; it seems to hold "
        f"{KIND_WORDS[checkpoint_kind(keys)]} of another architecture than the config from {_config_words(source)} "
        f"(or a damaged file). To fix: use a file that matches, or set `model.single_file_config` to the diffusers "
        f"folder of the model the file was made for.")


def check_complete(model: torch.nn.Module, ref: ModelRef, keys: list[str], what: str, source: ConfigSource) -> None:
    """ConfigError when the file left weights of `model` unset (diffusers leaves them on the meta device)."""
    missing = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if missing:
        raise _incomplete(ref, keys, what, source, f"{len(missing)} (e.g. '{missing[0]}')")


def load_file_model(cls: Any, ref: ModelRef, state_dict: dict[str, torch.Tensor], *, single_file_config: str,
                    dtype: torch.dtype, offline: bool, what: str) -> torch.nn.Module:
    """`cls.from_single_file` on an already read (and kind-checked) `state_dict` of file `ref`."""
    keys = list(state_dict)
    source = config_source(ref.key, single_file_config, keys)
    try:
        # no torch_dtype: its final `.to` would fail on weights the file lacks before we can name them
        model = cls.from_single_file(dict(state_dict), config=source.config, subfolder=source.subfolder,
                                     local_files_only=offline)
    except OSError as exc:  # the config could not be found
        raise _config_missing(ref, source, exc, offline) from exc
    except _FIT_ERRORS as exc:
        if "meta tensor" in str(exc):  # diffusers leaves what the file lacks on the meta device, then fails moving it
            raise _incomplete(ref, keys, what, source, "some") from exc
        raise ConfigError(
            f"config key '{ref.key}': {ref.path} does not fit {what} as configured by {_config_words(source)} "
            f"({type(exc).__name__}: {str(exc)[:300]}). It seems to hold {KIND_WORDS[checkpoint_kind(keys)]}. "
            f"To fix: use a matching file, or set `model.single_file_config` to the diffusers folder of the model "
            f"the file was made for.") from exc
    check_complete(model, ref, keys, what, source)
    return torch.nn.Module.to(model, dtype=dtype)


@dataclass
class BaseParts:
    """What a Stable Diffusion base provides: UNet, VAE, text encoder, tokenizer, scheduler config."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]


def load_sd_checkpoint(ref: ModelRef, *, single_file_config: str, dtype: torch.dtype, offline: bool) -> BaseParts:
    """A whole LDM-layout SD 1.x checkpoint through `StableDiffusionPipeline.from_single_file`.

    The pipeline's configs (and tokenizer files) come from `single_file_config`; the safety
    checker and feature extractor are not loaded.
    """
    from diffusers import StableDiffusionPipeline

    config = str(Path(single_file_config).expanduser()) if Path(single_file_config).expanduser().is_dir() \
        else single_file_config
    source = ConfigSource(config, None)
    try:
        with _quiet_diffusers():
            pipe = StableDiffusionPipeline.from_single_file(
                str(ref.path), config=config, torch_dtype=dtype, local_files_only=offline,
                safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    except OSError as exc:
        raise _config_missing(ref, source, exc, offline) from exc
    except _FIT_ERRORS as exc:
        raise ConfigError(
            f"config key 'model.base': {ref.path} could not be loaded as a Stable Diffusion 1.x checkpoint with the "
            f"configs of {_config_words(source)} ({type(exc).__name__}: {str(exc)[:300]}). To fix: use an SD 1.x "
            f"checkpoint, or set `model.single_file_config` to the diffusers folder of the model it was made for."
        ) from exc
    for model, what in ((pipe.unet, "a UNet"), (pipe.vae, "a VAE"), (pipe.text_encoder, "a text encoder")):
        check_complete(model, ref, ["model.diffusion_model."], what, source)
    return BaseParts(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, dict(pipe.scheduler.config))

