"""LoRAs from `model.loras`: image LoRAs (SD 1.5 UNet attention, optionally the text encoder) and
AnimateDiff motion LoRAs (the motion modules' attention), loaded with diffusers' peft backend.

Entries are "PATH" or "PATH:SCALE" (scale 1.0 by default). Files in diffusers, peft (a UNet's
own `save_lora_adapter`, keys without a "unet." prefix) and kohya/A1111 ("lora_unet_...") key
formats load; kohya keys are converted by `StableDiffusionLoraLoaderMixin.lora_state_dict`.
Every LoRA is checked against the networks before any is loaded: a layer it names must exist
and have the LoRA's input/output widths, so a LoRA for another base model (e.g. SDXL) fails
with a ConfigError naming the file instead of loading half-way.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .components import Components
from .hashing import DIGEST_CHARS, file_sha256
from .hub_files import fetch_hub_file, is_hub_file
from .sources import CHECKPOINT_SUFFIXES, KIND_WORDS, checkpoint_kind, read_state_dict

KEY = "model.loras"
_PARAM = re.compile(r"^(?P<module>.+)\.lora_(?P<part>A|B)\.weight$")  # peft names, after conversion
_PREFIXES = ("unet", "text_encoder")


@dataclass(frozen=True)
class LoraSpec:
    """One `model.loras` entry: the file and its scale."""

    entry: str
    path: Path
    scale: float


def _scale(entry: str, tail: str, head: str) -> float:
    try:
        scale = float(tail)
    except ValueError:
        raise ConfigError(f"config key '{KEY}' has the entry '{entry}': '{tail}' after the last ':' is not a "
                          f"number (and '{entry}' is not a file). To fix: write PATH:SCALE with a number, "
                          f"e.g. '{head}:0.8'.") from None
    if not math.isfinite(scale):
        raise ConfigError(f"config key '{KEY}' has the entry '{entry}' with scale {tail}. To fix: use a finite "
                          f"number, e.g. '{head}:0.8'.")
    return scale


def parse_lora(entry: str) -> LoraSpec:
    """"PATH" or "PATH:SCALE" -> LoraSpec; the last ':' splits only when what follows is a number.

    A path that itself contains ':' works without a scale. Raises ConfigError naming the entry
    for a scale that is not a finite number, or a file that does not exist.
    """
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"config key '{KEY}' has the entry {entry!r}; each must be \"PATH\" or \"PATH:SCALE\".")
    entry = entry.strip()
    path, scale = entry, 1.0
    if is_hub_file(entry):  # hf://ORG/REPO/FILE[:SCALE]: the scheme's ':' is not a scale
        head, sep, tail = entry[len("hf://"):].rpartition(":")
        path, scale = (entry, 1.0) if not sep else ("hf://" + head, _scale(entry, tail, head))
        return LoraSpec(entry, fetch_hub_file(path, KEY), scale)
    if ":" in entry and not Path(entry).expanduser().is_file():
        head, tail = entry.rsplit(":", 1)
        path, scale = head, _scale(entry, tail, head)
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"config key '{KEY}' has the entry '{entry}', but {file} is not a file. To fix: check the "
                          f"path (a .safetensors LoRA, optionally followed by :SCALE).")
    if not file.name.lower().endswith(CHECKPOINT_SUFFIXES):
        raise ConfigError(f"config key '{KEY}' has the entry '{entry}', which is not a LoRA file. To fix: give a "
                          f".safetensors LoRA (or .ckpt/.pt/.pth/.bin).")
    return LoraSpec(entry, file.resolve(), scale)


def _split(spec: LoraSpec) -> tuple[dict, dict | None, dict, dict]:
    """The file's LoRA tensors as diffusers keys: (unet part, network alphas, text encoder part, others)."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    raw = read_state_dict(spec.path, KEY)
    kind = checkpoint_kind(list(raw))
    if kind != "lora":
        raise ConfigError(f"config key '{KEY}': {spec.path} is not a LoRA; it seems to hold {KIND_WORDS[kind]}. "
                          f"To fix: list only LoRA files under {KEY}.")
    state, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(raw)  # kohya/A1111 -> diffusers keys
    if not any(k.split(".", 1)[0] in _PREFIXES for k in state):
        state = {f"unet.{k}": v for k, v in state.items()}  # a model's own adapter file: UNet keys only
    parts: dict[str, dict] = {p: {} for p in (*_PREFIXES, "other")}
    for k, v in state.items():
        parts[k.split(".", 1)[0] if k.split(".", 1)[0] in _PREFIXES else "other"][k] = v
    return parts["unet"], alphas, parts["text_encoder"], parts["other"]


def _peft_names(part: dict, prefix: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Keys as peft will see them inside `model`, the way diffusers converts them when loading."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft

    bare = {k.removeprefix(f"{prefix}."): v for k, v in part.items()}
    if prefix == "unet":
        return bare if any("lora_A" in k for k in bare) else convert_unet_state_dict_to_peft(bare)
    names = convert_state_dict_to_peft(convert_state_dict_to_diffusers(bare))
    if not hasattr(model, "text_model"):  # transformers 5 flattens CLIPTextModel
        names = {k.removeprefix("text_model."): v for k, v in names.items()}
    return names


def _mismatches(model: torch.nn.Module, names: dict[str, torch.Tensor]) -> list[str]:
    """Why LoRA tensors do not fit `model`: a layer that does not exist, or of another width."""
    modules = dict(model.named_modules())
    problems = []
    for key, tensor in names.items():
        m = _PARAM.match(key)
        if m is None:
            continue  # alphas, biases, DoRA magnitudes: follow their A/B pairs
        layer = modules.get(m["module"])
        weight = getattr(getattr(layer, "base_layer", layer), "weight", None)
        if weight is None:
            problems.append(f"'{m['module']}' is not a layer of {type(model).__name__}")
        elif m["part"] == "A" and tensor.shape[1] != weight.shape[1]:
            problems.append(f"'{m['module']}' takes {weight.shape[1]} inputs, the LoRA {tensor.shape[1]}")
        elif m["part"] == "B" and tensor.shape[0] != weight.shape[0]:
            problems.append(f"'{m['module']}' gives {weight.shape[0]} outputs, the LoRA {tensor.shape[0]}")
    return problems


@dataclass
class _Checked:
    spec: LoraSpec
    unet: dict
    alphas: dict | None
    text: dict
    target: str


def _check(spec: LoraSpec, c: Components) -> _Checked:
    """Read one LoRA and check every tensor fits the UNet (motion UNet when loaded) or text encoder."""
    unet_part, alphas, text_part, other = _split(spec)
    motion = any(".motion_modules." in k for k in unet_part)
    image = any(".motion_modules." not in k for k in unet_part) or bool(text_part)
    target = "image+motion" if motion and image else "motion" if motion else "image"
    if c.unet_motion is None:  # an image run has no motion modules to load into
        unet_part = {k: v for k, v in unet_part.items() if ".motion_modules." not in k}
    problems = [f"keys for a part Stable Diffusion 1.5 does not have: '{next(iter(other))}'"] if other else []
    problems += _mismatches(c.unet, _peft_names(unet_part, "unet", c.unet)) if unet_part else []
    if text_part:
        problems += _mismatches(c.text_encoder, _peft_names(text_part, "text_encoder", c.text_encoder))
    if problems or not (unet_part or text_part or target == "motion"):
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ConfigError(f"config key '{KEY}': {spec.path} does not fit the loaded Stable Diffusion 1.5 networks "
                          f"({shown or 'no UNet or text encoder keys'}): it is probably a LoRA for another base model "
                          f"(e.g. SDXL). To fix: use an SD 1.5 (or AnimateDiff motion) LoRA, or remove it from {KEY}.")
    return _Checked(spec, unet_part, alphas, text_part, target)


def _load_into_text_encoder(text_encoder: torch.nn.Module, part: dict, alphas: dict | None, name: str) -> None:
    """Inject a LoRA into the CLIP text encoder with peft itself.

    transformers' own adapter loading (what diffusers' `load_lora_into_text_encoder` calls)
    demands a newer peft than the UNet path does, so the text encoder takes peft's functions
    directly, configured the way diffusers configures them (`get_peft_kwargs`).
    """
    from diffusers.utils import get_peft_kwargs
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    names = _peft_names(part, "text_encoder", text_encoder)
    ranks = {k: v.shape[1] for k, v in names.items() if ".lora_B." in k and v.dim() > 1}
    alphas = {k.removeprefix("text_encoder."): v for k, v in (alphas or {}).items() if k.startswith("text_encoder.")}
    if not hasattr(text_encoder, "text_model"):  # transformers 5 flattens CLIPTextModel
        alphas = {k.removeprefix("text_model."): v for k, v in alphas.items()}
    config = LoraConfig(**get_peft_kwargs(ranks, alphas or None, names, is_unet=False))
    inject_adapter_in_model(config, text_encoder, adapter_name=name)
    set_peft_model_state_dict(text_encoder, names, adapter_name=name)


def apply_loras(c: Components, entries: list[str]) -> list[dict[str, Any]]:
    """Load every `model.loras` entry into `c` (in place) at its scale; return what was applied.

    Each record: {"path", "scale", "sha256_16", "target": "image"|"motion"|"image+motion",
    "text_encoder": bool}; a motion LoRA in an image run (no motion module) is skipped with a
    warning and recorded with "skipped". The networks stay frozen (LoRA weights get no grads).
    """
    from diffusers.utils import set_weights_and_activate_adapters

    checked = [_check(parse_lora(e), c) for e in entries]  # all checked before any is loaded
    records, unet_adapters, text_adapters = [], {}, {}
    for i, item in enumerate(checked):
        spec = item.spec
        record = {"path": str(spec.path), "scale": spec.scale, "sha256_16": file_sha256(spec.path)[:DIGEST_CHARS],
                  "target": item.target, "text_encoder": bool(item.text)}
        records.append(record)
        if not (item.unet or item.text):  # a motion LoRA in an image run
            warnings.warn(f"{KEY}: {spec.path.name} is a motion LoRA; this image run has no motion module, so it is "
                          f"not applied.", UserWarning, stacklevel=2)
            record["skipped"] = "image run: no motion module"
            continue
        name = f"sagvideo_lora_{i}"
        if item.unet:
            c.unet.load_lora_adapter(item.unet, prefix="unet", network_alphas=item.alphas, adapter_name=name)
            unet_adapters[name] = spec.scale
        if item.text:
            _load_into_text_encoder(c.text_encoder, item.text, item.alphas, name)
            text_adapters[name] = spec.scale
    if unet_adapters:
        c.unet.set_adapters(list(unet_adapters), weights=list(unet_adapters.values()))
    if text_adapters:
        set_weights_and_activate_adapters(c.text_encoder, list(text_adapters), list(text_adapters.values()))
    for module in c.modules().values():  # peft makes its new weights trainable; SAG's VJPs must not keep grads
        module.requires_grad_(False).eval()
    c.loras = records
    return records
