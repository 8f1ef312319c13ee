"""Configuration: dataclasses with defaults, YAML files in `configs/`, validated overrides.

A config is built as `defaults <- YAML file(s) <- overrides` (flat dotted keys such as
`guidance.n`, or nested dicts). Unknown keys and wrong types raise `ConfigError` naming the
key and listing the valid ones. User dicts are copied before they are merged.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import defaults
from .errors import ConfigError
from .method_registry import METHODS, PIPELINE_METHODS, deprecated_key
from .schedule_settings import check_scheduler

CONFIG_PACKAGE = "sagvideo"  # configs ship inside the package: sagvideo/configs/*.yaml
MAX_SIZE = 4096  # pixels per side: beyond this SD 1.5 breaks down and memory explodes
NOISE_SCHEMES = ("independent", "shuffled")
BETA_SCHEDULES = ("linear", "scaled_linear")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")
MAX_FRAMES = 1_000_000


@dataclass
class ModelConfig:
    """Which networks to use, and how they live in memory.

    base, motion_adapter, controlnet, vae, clip_vision: a hub id, a diffusers folder, or a single
    checkpoint file (.safetensors; .ckpt/.pth are pickles: only from sources you trust).
    """

    preset: str = "default"  # "default": the models below; "tiny": small random weights, offline
    base: str = defaults.DEFAULT_BASE
    motion_adapter: str = defaults.DEFAULT_MOTION_ADAPTER
    controlnet: str = defaults.DEFAULT_CONTROLNET
    vae: str = ""  # "" = the base model's VAE
    clip_vision: str = defaults.DEFAULT_CLIP_VISION
    ip_adapter: str = defaults.DEFAULT_IP_ADAPTER  # SD 1.5 IP-Adapter: hub id, folder or .safetensors/.bin file
    image_encoder: str = defaults.DEFAULT_IMAGE_ENCODER  # its CLIP vision encoder: hub id or folder
    loss_decoder: str = ""  # "" = the VAE (exact); a tiny autoencoder for the loss only: an approximation
    single_file_config: str = defaults.DEFAULT_BASE  # configs for single-file checkpoints (hub id or folder)
    loras: list = field(default_factory=list)  # "PATH" or "PATH:SCALE", image or motion LoRAs
    depth: str = "midas"  # "midas" (controlnet-aux), "tiny", or a transformers depth model id
    device: str = "auto"  # "auto" = cuda when available
    dtype: str = "auto"  # "auto" = float16 on CUDA, float32 on CPU
    compile: bool = False  # torch.compile the UNet and ControlNet (slow first step; see bench pipeline)
    attention_slicing: bool = False  # attention in slices: less memory, a little slower
    vae_slicing: bool = False  # VAE encode/decode one frame at a time
    vae_tiling: bool = False  # VAE encode/decode in overlapping tiles (large frames)
    cpu_offload: bool = False  # keep each network on the CPU until it runs (accelerate hooks; CUDA only)


@dataclass
class VideoConfig:
    """Which part of the input to stylize, at what size, and through which motion windows."""

    frames: int | str = 16  # a count, or "all": the whole selected span
    stride: int = 1
    start: int = 0
    start_time: float | None = None  # seconds; instead of `start`
    duration: float | None = None  # seconds from the start; instead of `frames`
    size: int = 512  # short side in pixels, rounded to a multiple of 8
    window: int = 16  # frames the motion module sees at once (0: all frames jointly)
    overlap: int = 4  # frames shared by neighbouring windows, blended smoothly
    window_batch: int = 1  # windows predicted in one network call (more is faster, needs more memory)
    noise: str = "shuffled"  # starting noise: "independent" per frame, or "shuffled" repeats of the first window


@dataclass
class SamplingConfig:
    """The denoising loop: stateless DDIM with classifier-free guidance and ControlNet-depth."""

    steps: int = 25
    cfg_scale: float = 7.5
    controlnet_scale: float = 1.0
    negative_prompt: str = ""
    seed: int = 0
    denoise: float = 1.0  # 1: from pure noise; S < 1: from the source noised to fraction S of the schedule
    # The noise schedule the motion adapter was trained with (AnimateDiff v1.5 recipe: linear betas,
    # linspace timesteps); the image config uses SD 1.5's own (scaled_linear, leading).
    beta_schedule: str = defaults.ANIMATEDIFF_SCHEDULE["beta_schedule"]
    beta_start: float = defaults.ANIMATEDIFF_SCHEDULE["beta_start"]
    beta_end: float = defaults.ANIMATEDIFF_SCHEDULE["beta_end"]
    timestep_spacing: str = defaults.ANIMATEDIFF_SCHEDULE["timestep_spacing"]
    scheduler: str = "ddim"  # ddim | euler (AnimateDiff-Lightning) | lcm (AnimateLCM); see schedule_settings.py


@dataclass
class GuidanceConfig:
    """Guidance toward the style image: the method and the knobs methods share (README: Guidance methods)."""

    enabled: bool = True
    method: str = "sag"  # the guidance method: a pipeline method of `method_registry.METHODS`
    gradient: str = "symplectic"  # how SAG takes its gradient: symplectic | direct | adjoint
    scheme: str = "euler"  # euler (DDIM) | heun
    n: int = 4  # noise-prediction evaluations in the clean estimate (heun: solver steps)
    adaptive_n: bool = False  # n on the first guided step, down to 1 on the last
    passes: int | None = None  # passes per guided step (time travel; 1 = none); unset: the method's default
    strength: float = 0.2  # relative to CFG: rho = strength * cfg_scale * RMS(eps_c - eps_u) / RMS(grad)
    start: float = 0.3  # guided steps: fraction range [start, end) of the schedule
    end: float = 0.7
    layer: int = 3  # CLIP hidden_states index for the Gram loss
    decode_chunk: int = 1  # frames decoded per chunk in the loss backward
    cond_only: bool = False  # take the guidance gradient through the conditional branch only
    # exact memory levers of the gradient (same result; see models/checkpointing.py, pipeline/cfg_split.py):
    # true | false | auto (when the activations it saves are estimated above 256 MiB: models/saved_bytes.py)
    gradient_checkpointing: bool | str = "auto"  # every block of the UNet (motion modules too) and ControlNet
    decoder_checkpointing: bool | str = "auto"  # every block of the VAE decoder in the loss
    cfg_split: bool | str = "auto"  # one CFG branch's VJP at a time: true | false | auto (CUDA, memory short)


@dataclass
class IPAdapterConfig:
    """The image prompt: the style image fed to the UNet through IP-Adapter (`model.ip_adapter`)."""

    scale: float = 1.0  # 0: off (exactly the pipeline without an adapter); at most 2
    mode: str = "style"  # style | style+layout | all: which attention blocks receive the image


@dataclass
class OutputConfig:
    """What to write beside the mp4."""

    gif: bool = False
    frames_dir: bool = False
    contact_sheet: bool = True
    overwrite: bool = False
    crf: int = 18
    preview: int = 0  # every k steps, write the decoded clean estimate of a few frames (0: off)
    metrics: bool = True  # warp error, flicker, style distance, CLIP consistency, depth fidelity in the report
    plot: bool = True  # OUT.plot.png: loss per guided pass and the per-frame metrics


@dataclass
class DistributedConfig:
    """One clip over several processes (sagvideo.distributed): its context windows shared out per step."""

    devices: int = 1  # processes per machine (one per GPU); 1 = the whole clip in this process
    num_nodes: int = 1  # machines (launched by torchrun or SLURM srun, as for the batch)
    accelerator: str = "auto"  # auto (from model.device) | cpu | gpu


def wants_distributed(config: "Config") -> bool:
    """Whether the config asks for one clip over several processes (sagvideo.distributed)."""
    return config.distributed.devices > 1 or config.distributed.num_nodes > 1


def accelerator_for(config: "Config") -> str:
    """The Lightning accelerator matching `model.device` (the batch's and a distributed run's default)."""
    return {"cpu": "cpu", "cuda": "gpu"}.get(config.model.device.split(":")[0], "auto")


class _ConfigBase:
    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict, ready for YAML/JSON."""
        return dataclasses.asdict(self)


# The sections: the fixed ones, then each pipeline method's own knobs (the registry names them:
# `ug.backward_steps`, `doodl.iterations`, ...), then the outputs.
_SECTIONS = [("model", ModelConfig), ("video", VideoConfig), ("sampling", SamplingConfig),
             ("guidance", GuidanceConfig),
             *[(METHODS[name].section, METHODS[name].settings) for name in PIPELINE_METHODS if METHODS[name].section],
             ("ip_adapter", IPAdapterConfig), ("output", OutputConfig), ("distributed", DistributedConfig)]
Config = dataclasses.make_dataclass("Config", [(name, kind, field(default_factory=kind)) for name, kind in _SECTIONS],
                                    bases=(_ConfigBase,))
Config.__module__ = __name__  # pickled by batch workers: found again as sagvideo.config.Config
Config.__doc__ = "A whole configuration: one attribute per section (`config.guidance.n`, `config.ug.forward_scale`)."


_MISSING = object()


def _coerce(kind: str, value: Any) -> Any:
    """`value` as `kind` ("int", "float", "bool", "str", "list", "None"), or _MISSING when it is not one.

    A list is of strings; one string is a list of one, and a comma-free `--set` text too.
    """
    if kind == "None":
        return None if value is None else _MISSING
    if kind == "list":
        if isinstance(value, str):
            return [value] if value else []
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        return _MISSING
    if isinstance(value, bool):
        return value if kind == "bool" else _MISSING
    if kind == "bool" and isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
        return value.lower() in {"true", "yes", "1"}
    if kind == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    if kind == "float":
        try:
            number = float(value) if isinstance(value, (int, float, str)) else _MISSING
        except ValueError:
            return _MISSING
        return number if number is _MISSING or math.isfinite(number) else _MISSING
    if kind == "str" and isinstance(value, str):
        return value
    return _MISSING


def _check_value(key: str, value: Any, annotation: Any) -> Any:
    """Coerce `value` to the field type (int -> float allowed; "int | None" unions) or raise naming `key`.

    Floats must be finite: `inf` and `nan` are refused here, before anything runs.
    """
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    kinds = [k.strip() for k in text.split("|")]
    for kind in kinds:
        coerced = _coerce(kind, value)
        if coerced is not _MISSING:
            return coerced
    names = {"float": "a finite number", "None": "unset (null)", "list": "a list of text"}
    wanted = " or ".join(names.get(k, k) for k in kinds)
    raise ConfigError(
        f"config key '{key}' must be {wanted}, got {value!r}. "
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


def _flatten(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{'guidance.n': 8, 'video': {'frames': 4}} -> {'guidance.n': 8, 'video.frames': 4}."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        elif "." in key:
            flat[key] = value
        else:
            raise ConfigError(
                f"config key '{key}' needs a section, e.g. 'guidance.{key}'. "
                f"Sections: {', '.join(f.name for f in dataclasses.fields(Config))}."
            )
    return flat


def _nest(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Turn {'guidance.n': 8, 'video': {'frames': 4}} into nested sections; old key names renamed."""
    nested: dict[str, dict[str, Any]] = {}
    given: dict[str, str] = {}  # current key -> the name it was given as
    for key, value in _flatten(overrides).items():
        new = deprecated_key(key)
        section, sub = new.split(".", 1)
        if new in given and nested[section][sub] != value:
            raise ConfigError(f"config keys '{given[new]}' and '{key}' both set '{new}' ({nested[section][sub]!r} "
                              f"and {value!r}). Give it once, as '{new}'.")
        given[new] = key
        nested.setdefault(section, {})[sub] = value
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


def shipped_configs() -> dict[str, Any]:
    """The named configs that ship with the package: name -> resource (read with `.read_text()`)."""
    folder = importlib.resources.files(CONFIG_PACKAGE) / "configs"
    return {entry.name[:-5]: entry for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def resolve_config_path(name_or_path: str | Path) -> Any:
    """A YAML file path, or the name of a shipped config ("tiny", "video", "image", "12gb", "8gb")."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    named = shipped_configs()
    if str(name_or_path) in named:
        return named[str(name_or_path)]
    raise ConfigError(
        f"config '{name_or_path}' is neither a file nor the name of a shipped config. "
        f"Give a path to a YAML file or one of: {', '.join(sorted(named))}."
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


def _in_range(value: float, low: float, high: float, key: str, unit: str = "") -> None:
    _require(low <= value <= high, key, f"must be between {low:g} and {high:g}{unit}, got {value:g}.")


def _validate_video(v: VideoConfig) -> None:
    if isinstance(v.frames, str):
        _require(v.frames == "all", "video.frames", f"must be a number of frames or 'all', got {v.frames!r}.")
    else:
        _in_range(v.frames, 1, MAX_FRAMES, "video.frames")
    _in_range(v.stride, 1, 10_000, "video.stride")
    _in_range(v.start, 0, 10**9, "video.start")
    _require(v.start_time is None or v.start == 0, "video.start_time",
             f"and video.start both choose the first frame; give one of them (got {v.start_time} s and frame {v.start}).")
    _require(v.start_time is None or v.start_time >= 0, "video.start_time", f"must be >= 0 seconds, got {v.start_time}.")
    _require(v.duration is None or v.duration > 0, "video.duration", f"must be > 0 seconds, got {v.duration}.")
    _in_range(v.size, 8, MAX_SIZE, "video.size", " pixels")
    _in_range(v.window, 0, MAX_FRAMES, "video.window")
    _require(v.window == 0 or 0 <= v.overlap < v.window, "video.overlap",
             f"must be at least 0 and smaller than video.window ({v.window}), got {v.overlap}. "
             f"To fix: use e.g. video.overlap={max(0, v.window // 4)}.")
    _in_range(v.window_batch, 1, 64, "video.window_batch")
    _require(v.noise in NOISE_SCHEMES, "video.noise", f"must be one of {', '.join(NOISE_SCHEMES)}, got {v.noise!r}.")


def _validate_sampling(s: SamplingConfig) -> None:
    _in_range(s.steps, 1, 1000, "sampling.steps")
    _require(0 < s.denoise <= 1, "sampling.denoise",
             f"must be above 0 and at most 1 (the fraction of the schedule to run from the source), got {s.denoise}. "
             f"To fix: use e.g. --denoise 0.6, or 1 to start from pure noise.")
    _require(s.beta_schedule in BETA_SCHEDULES, "sampling.beta_schedule",
             f"must be one of {', '.join(BETA_SCHEDULES)}, got {s.beta_schedule!r}.")
    _require(0 < s.beta_start < s.beta_end < 1, "sampling.beta_start",
             f"and sampling.beta_end must satisfy 0 < beta_start < beta_end < 1, got {s.beta_start}, {s.beta_end}.")
    _require(s.timestep_spacing in TIMESTEP_SPACINGS, "sampling.timestep_spacing",
             f"must be one of {', '.join(TIMESTEP_SPACINGS)}, got {s.timestep_spacing!r}.")


def _validate_ip_adapter(ip: IPAdapterConfig) -> None:
    _require(0 <= ip.scale <= defaults.IP_ADAPTER_MAX_SCALE, "ip_adapter.scale",
             f"must be a number from 0 (off) to {defaults.IP_ADAPTER_MAX_SCALE:g}, got {ip.scale:g}. "
             f"To fix: use e.g. --ip-adapter-scale 1 (or 0 to turn the image prompt off).")
    _require(ip.mode in defaults.IP_ADAPTER_MODES, "ip_adapter.mode",
             f"must be one of {', '.join(defaults.IP_ADAPTER_MODES)}, got {ip.mode!r}. "
             f"To fix: use e.g. --ip-adapter-mode style.")


def _validate_distributed(d: DistributedConfig) -> None:
    _in_range(d.devices, 1, 4096, "distributed.devices")
    _in_range(d.num_nodes, 1, 4096, "distributed.num_nodes")
    _require(d.accelerator in ("auto", "cpu", "gpu", "cuda"), "distributed.accelerator",
             f"must be auto, cpu or gpu, got {d.accelerator!r}. To fix: use e.g. --accelerator gpu.")


def validate(config: Config) -> None:
    """Range checks that types alone do not catch: every number is bounded before anything runs."""
    v, s, g, m = config.video, config.sampling, config.guidance, config.model
    _require(m.preset in ("default", "tiny"), "model.preset", f"must be 'default' or 'tiny', got {m.preset!r}.")
    _require(m.dtype in ("auto", "float16", "bfloat16", "float32"), "model.dtype",
             f"must be auto, float16, bfloat16 or float32, got {m.dtype!r}.")
    _validate_video(v)
    _validate_sampling(s)
    _in_range(s.cfg_scale, 0, 100, "sampling.cfg_scale")
    _in_range(s.controlnet_scale, 0, 10, "sampling.controlnet_scale")
    _require(0 <= s.seed < 2**64, "sampling.seed", f"must be a whole number from 0 to 2**64 - 1, got {s.seed}.")
    _require(g.method in PIPELINE_METHODS, "guidance.method",
             f"must be one of {', '.join(PIPELINE_METHODS)}, got {g.method!r}.")
    _require(g.gradient in defaults.GRADIENT_METHODS, "guidance.gradient",
             f"must be one of {', '.join(defaults.GRADIENT_METHODS)}, got {g.gradient!r}.")
    _require(g.scheme in defaults.SCHEMES, "guidance.scheme",
             f"must be one of {', '.join(defaults.SCHEMES)}, got {g.scheme!r}.")
    _in_range(g.n, 1, 1000, "guidance.n")
    _require(g.passes is None or 1 <= g.passes <= 100, "guidance.passes",
             f"must be between 1 and 100 (or unset: the method's default), got {g.passes}.")
    _in_range(g.strength, 0, 1000, "guidance.strength")
    _require(0.0 <= g.start <= g.end <= 1.0, "guidance.start",
             f"and guidance.end must satisfy 0 <= start <= end <= 1, got {g.start}, {g.end}.")
    _in_range(g.layer, 1, 64, "guidance.layer")
    _in_range(g.decode_chunk, 1, 1024, "guidance.decode_chunk")
    for key in ("cfg_split", "gradient_checkpointing", "decoder_checkpointing"):
        value = getattr(g, key)
        _require(isinstance(value, bool) or value == "auto", f"guidance.{key}",
                 f"must be true, false or auto, got {value!r}.")
    _validate_ip_adapter(config.ip_adapter)
    check_scheduler(config)
    _validate_distributed(config.distributed)
    _in_range(config.output.crf, 0, 51, "output.crf")
    _in_range(config.output.preview, 0, 1000, "output.preview")
