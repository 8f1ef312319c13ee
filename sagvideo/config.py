"""Configuration: dataclasses with defaults, YAML files in `configs/`, validated overrides.

A config is built as `defaults <- YAML file(s) <- overrides` (flat dotted keys such as
`guidance.n`, or nested dicts). Unknown keys and wrong types raise `ConfigError` naming the
key and listing the valid ones. User dicts are copied before they are merged.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
METHODS = ("symplectic", "direct", "adjoint")
SCHEMES = ("euler", "heun")
MAX_SIZE = 4096  # pixels per side: beyond this SD 1.5 breaks down and memory explodes


@dataclass
class ModelConfig:
    """Which networks to use: hub ids or local folders, or the offline `tiny` preset."""

    preset: str = "default"  # "default": the ids below; "tiny": small random weights, offline
    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    motion_adapter: str = "guoyww/animatediff-motion-adapter-v1-5-2"
    controlnet: str = "lllyasviel/control_v11f1p_sd15_depth"
    clip_vision: str = "openai/clip-vit-base-patch32"
    depth: str = "midas"  # "midas" (controlnet-aux), "tiny", or a transformers depth model id
    device: str = "auto"  # "auto" = cuda when available
    dtype: str = "auto"  # "auto" = float16 on CUDA, float32 on CPU


@dataclass
class VideoConfig:
    """Which part of the input to stylize, and at what size."""

    frames: int = 16
    stride: int = 1
    start: int = 0
    size: int = 512  # short side in pixels, rounded to a multiple of 8


@dataclass
class SamplingConfig:
    """The denoising loop: stateless DDIM with classifier-free guidance and ControlNet-depth."""

    steps: int = 25
    cfg_scale: float = 7.5
    controlnet_scale: float = 1.0
    negative_prompt: str = ""
    seed: int = 0


@dataclass
class GuidanceConfig:
    """Symplectic Adjoint Guidance toward the style image (see DESIGN section 2)."""

    enabled: bool = True
    method: str = "symplectic"  # symplectic | direct | adjoint
    scheme: str = "euler"  # euler (DDIM) | heun
    n: int = 4  # noise-prediction evaluations in the clean estimate (heun: solver steps)
    adaptive_n: bool = False  # n on the first guided step, down to 1 on the last
    repeats: int = 2  # time-travel: passes of each guided step (1 = no repeat)
    strength: float = 1.5  # rho = strength * RMS(eps_c - eps_u) / RMS(grad); 0.2 x cfg 7.5
    start: float = 0.3  # guided steps: fraction range [start, end) of the schedule
    end: float = 0.7
    layer: int = 3  # CLIP hidden_states index for the Gram loss
    decode_chunk: int = 1  # frames decoded per chunk in the loss backward
    cond_only: bool = False  # take the guidance gradient through the conditional branch only
    gradient_checkpointing: bool = False  # UNet activation checkpointing during VJPs


@dataclass
class OutputConfig:
    """What to write beside the mp4."""

    gif: bool = False
    frames_dir: bool = False
    contact_sheet: bool = True
    overwrite: bool = False
    crf: int = 18


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict, ready for YAML/JSON."""
        return dataclasses.asdict(self)


def _check_value(key: str, value: Any, annotation: Any) -> Any:
    """Coerce `value` to the field type (int -> float allowed) or raise naming `key`."""
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(
        annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    )
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.lower() in {"true", "yes", "1"}
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(
        f"config key '{key}' must be {kind.__name__ if kind else annotation}, got {value!r}. "
        f"Fix the value in your config file or flag."
    )


def _unknown(what: str, name: str, valid: Any, valid_label: str, prefix: str = "") -> ConfigError:
    """'unknown X (did you mean Y?). Valid ...: a, b, c.'"""
    hint = difflib.get_close_matches(name, list(valid), n=1)
    return ConfigError(
        f"unknown {what}" + (f" (did you mean '{prefix}{hint[0]}'?)" if hint else "")
        + f". {valid_label}: {', '.join(valid)}."
    )


def _apply(section_obj: Any, section: str, values: Mapping[str, Any]) -> None:
    fields = {f.name: f for f in dataclasses.fields(section_obj)}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(f"config key '{section}.{key}'", key, fields, f"Valid keys in '{section}'", f"{section}.")
        setattr(section_obj, key, _check_value(f"{section}.{key}", value, fields[key].type))


def _nest(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Turn {'guidance.n': 8, 'video': {'frames': 4}} into nested sections."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            nested.setdefault(key, {}).update(value)
        elif "." in key:
            section, sub = key.split(".", 1)
            nested.setdefault(section, {})[sub] = value
        else:
            raise ConfigError(
                f"config key '{key}' needs a section, e.g. 'guidance.{key}'. "
                f"Sections: {', '.join(f.name for f in dataclasses.fields(Config))}."
            )
    return nested


def merge(config: Config, overrides: Mapping[str, Any] | None, *, source: str = "overrides") -> Config:
    """Return a copy of `config` with `overrides` applied and validated."""
    merged = copy.deepcopy(config)
    if not overrides:
        return merged
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{source} must be a mapping of config keys, got {type(overrides).__name__}.")
    sections = {f.name for f in dataclasses.fields(Config)}
    for section, values in _nest(copy.deepcopy(dict(overrides))).items():
        if section not in sections:
            raise _unknown(f"config section '{section}' in {source}", section, sorted(sections), "Valid sections")
        _apply(getattr(merged, section), section, values)
    validate(merged)
    return merged


def parse_set_items(items: list[str] | None) -> dict[str, Any]:
    """`--set` pairs ["guidance.n=8", ...] -> {"guidance.n": 8}; values read as YAML scalars."""
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}. To fix: write e.g. --set guidance.n=2.")
        overrides[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return overrides


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a file in `configs/` ("tiny", "video", "image", "low-memory")."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []
    raise ConfigError(
        f"config '{name_or_path}' is neither a file nor a name in {CONFIG_DIR}. "
        f"Give a path to a YAML file" + (f" or one of: {', '.join(known)}." if known else ".")
    )


def load_config(
    files: str | Path | list[str | Path] | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Defaults, then each YAML file in order, then `overrides`; validated."""
    config = Config()
    if files is not None and not isinstance(files, list):
        files = [files]
    for name in files or []:
        path = resolve_config_path(name)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}. Fix the syntax.") from exc
        config = merge(config, data, source=str(path))
    return merge(config, overrides)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {message}")


def validate(config: Config) -> None:
    """Range checks that types alone do not catch."""
    v, s, g, m = config.video, config.sampling, config.guidance, config.model
    _require(m.preset in ("default", "tiny"), "model.preset", f"must be 'default' or 'tiny', got {m.preset!r}.")
    _require(m.dtype in ("auto", "float16", "bfloat16", "float32"), "model.dtype",
             f"must be auto, float16, bfloat16 or float32, got {m.dtype!r}.")
    _require(v.frames >= 1, "video.frames", f"must be >= 1, got {v.frames}.")
    _require(v.stride >= 1, "video.stride", f"must be >= 1, got {v.stride}.")
    _require(v.start >= 0, "video.start", f"must be >= 0, got {v.start}.")
    _require(8 <= v.size <= MAX_SIZE, "video.size", f"must be between 8 and {MAX_SIZE} pixels, got {v.size}.")
    _require(s.steps >= 1, "sampling.steps", f"must be >= 1, got {s.steps}.")
    _require(s.cfg_scale >= 0, "sampling.cfg_scale", f"must be >= 0, got {s.cfg_scale}.")
    _require(g.method in METHODS, "guidance.method", f"must be one of {', '.join(METHODS)}, got {g.method!r}.")
    _require(g.scheme in SCHEMES, "guidance.scheme", f"must be one of {', '.join(SCHEMES)}, got {g.scheme!r}.")
    _require(g.n >= 1, "guidance.n", f"must be >= 1, got {g.n}.")
    _require(g.repeats >= 1, "guidance.repeats", f"must be >= 1, got {g.repeats}.")
    _require(g.strength >= 0, "guidance.strength", f"must be >= 0, got {g.strength}.")
    _require(0.0 <= g.start <= g.end <= 1.0, "guidance.start",
             f"and guidance.end must satisfy 0 <= start <= end <= 1, got {g.start}, {g.end}.")
    _require(g.layer >= 1, "guidance.layer", f"must be >= 1, got {g.layer}.")
    _require(g.decode_chunk >= 1, "guidance.decode_chunk", f"must be >= 1, got {g.decode_chunk}.")
    _require(config.output.crf >= 0, "output.crf", f"must be >= 0, got {config.output.crf}.")
