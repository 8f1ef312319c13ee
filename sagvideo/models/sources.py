"""What a model reference names (hub id, diffusers folder, or one checkpoint file), and what a file holds.

`model.base`, `model.motion_adapter`, `model.controlnet` and `model.vae` each take a hub id
("org/name"), a diffusers folder, or a single checkpoint file: `.safetensors`, or a pickle
(`.ckpt`, `.pth`, `.pt`, `.bin`, read with torch's weights-only unpickler and a warning).
`classify` decides which, `Checkpoint` reads a file, `checkpoint_kind` says from its keys what
kind of network a file holds (so a ControlNet given as the motion adapter is named as such),
and `describe` gives the report's entry with the weights' digest.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..defaults import CHECKPOINT_SUFFIXES, PICKLE_SUFFIXES, SAFE_SUFFIXES  # noqa: F401 (re-exported)
from ..errors import ConfigError
from .hub_files import fetch_hub_file, is_hub_file
from .hashing import DIGEST_CHARS, file_sha256, folder_sha256_16, hub_snapshot

HUB, FOLDER, FILE = "hub", "folder", "file"

# What each kind from `checkpoint_kind` is, in words for error messages.
KIND_WORDS = {
    "sd_checkpoint": "a whole Stable Diffusion checkpoint (UNet, VAE and text encoder)",
    "sdxl": "an SDXL model (another base model than Stable Diffusion 1.5)",
    "unet": "a Stable Diffusion UNet",
    "unet_motion": "a whole AnimateDiff UNet (UNet and motion modules together)",
    "motion_adapter": "an AnimateDiff motion adapter",
    "controlnet": "a ControlNet",
    "vae": "a VAE (autoencoder)",
    "text_encoder": "a CLIP text encoder",
    "lora": "a LoRA",
    "unknown": "weights of no kind sagvideo knows",
}
# The kinds each config key accepts as a single file.
ROLE_KINDS = {
    "model.base": ("sd_checkpoint", "unet"),
    "model.motion_adapter": ("motion_adapter",),
    "model.controlnet": ("controlnet",),
    "model.vae": ("vae", "sd_checkpoint"),
}
ROLE_WORDS = {"model.base": "a Stable Diffusion 1.5 checkpoint or UNet", "model.motion_adapter":
              "an AnimateDiff motion adapter", "model.controlnet": "a ControlNet", "model.vae": "a VAE"}


@dataclass(frozen=True)
class ModelRef:
    """A model reference as given under config `key`: `kind` is "hub", "folder" or "file"."""

    name: str
    kind: str
    key: str
    path: Path | None = None  # resolved, for a folder or a file

    @property
    def shown(self) -> str:
        """The reference as the report shows it: a hub id, or an absolute path."""
        return str(self.path) if self.path is not None else self.name


def _looks_like_path(name: str) -> bool:
    """A hub id is "name" or "org/name"; anything else that is not on disk is a missing path."""
    return (name.lower().endswith(CHECKPOINT_SUFFIXES) or name.startswith(("/", ".", "~"))
            or name.count("/") > 1 or "\\" in name)


def classify(name: str, key: str) -> ModelRef:
    """Decide whether `name` (the value of config `key`) is a folder, a checkpoint file or a hub id.

    Raises ConfigError for a path that does not exist and for a file that is not a checkpoint.
    A hub file (`hf://ORG/REPO/FILE`, `hub_files`) is fetched and is then a file.
    """
    path = fetch_hub_file(name, key) if is_hub_file(name) else Path(name).expanduser()
    if path.is_dir():
        return ModelRef(name, FOLDER, key, path.resolve())
    if path.is_file():
        if not path.name.lower().endswith(CHECKPOINT_SUFFIXES):
            raise ConfigError(f"config key '{key}' is the file {path}, which is not a checkpoint. To fix: give a "
                              f".safetensors file (or .ckpt/.pth/.pt/.bin), a diffusers folder, or a hub id.")
        return ModelRef(name, FILE, key, path.resolve())
    if _looks_like_path(name):
        raise ConfigError(f"config key '{key}' is {name}, but there is no such file or folder. To fix: check the "
                          f"path, or give a hub id (org/name).")
    return ModelRef(name, HUB, key)


def warn_pickle(path: Path, key: str) -> None:
    """Say that a pickle checkpoint can carry code, once per load."""
    warnings.warn(f"config key '{key}': {path.name} is a pickle ({path.suffix}), a format that can run code when "
                  f"loaded. sagvideo reads it with torch's weights-only unpickler, but only load files from sources "
                  f"you trust; prefer .safetensors.", UserWarning, stacklevel=3)


def _not_a_checkpoint(path: Path, key: str, exc: BaseException) -> ConfigError:
    return ConfigError(f"config key '{key}': {path} is not a readable checkpoint ({type(exc).__name__}: {exc}). "
                       f"To fix: give a complete .safetensors file (re-download it if it was cut short), a diffusers "
                       f"folder, or a hub id.")


def read_checkpoint(path: Path, key: str) -> Any:
    """What a checkpoint file holds, loaded on the CPU (a pickle warns first, and loads weights
    only); ConfigError naming the file and `key` if it cannot be read."""
    try:
        if path.name.lower().endswith(SAFE_SUFFIXES):
            from safetensors.torch import load_file

            return load_file(str(path))
        warn_pickle(path, key)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to parse means the same thing to the user
        raise _not_a_checkpoint(path, key, exc) from exc


def read_state_dict(path: Path, key: str) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file on the CPU; a pickle warns first. ConfigError if unreadable."""
    state = read_checkpoint(path, key)
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # Lightning-style checkpoints nest the weights
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ConfigError(f"config key '{key}': {path} holds no weight tensors. To fix: give a model checkpoint.")
    return tensors


def read_keys(path: Path, key: str) -> list[str]:
    """The tensor names of a checkpoint; for .safetensors only the header is read."""
    if not path.name.lower().endswith(SAFE_SUFFIXES):
        return list(read_state_dict(path, key))
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as exc:
        raise _not_a_checkpoint(path, key, exc) from exc


def checkpoint_kind(keys: list[str]) -> str:
    """The kind of network whose weights carry these names (a key of `KIND_WORDS`).

    Knows the diffusers layouts and the original ones (LDM "model.diffusion_model.*",
    "control_model.*", AnimateDiff "temporal_transformer"), and kohya/diffusers/peft LoRAs.
    """
    names = set(keys)

    def has(*parts: str) -> bool:
        return any(any(part in k for part in parts) for k in names)

    if has("lora_", ".lora.", "lora_unet_", "lora_te_"):
        return "lora"
    if has("conditioner.embedders", "add_embedding.linear_1", "model.diffusion_model.label_emb"):
        return "sdxl"
    # before the SD check: ControlNet 1.0 files carry a whole SD model beside "control_model.*"
    if has("controlnet_cond_embedding", "control_model.", "input_hint_block", "controlnet_down_blocks"):
        return "controlnet"
    if any(k.startswith("model.diffusion_model.") for k in names):  # LDM layout; a UNet alone has no VAE
        return "sd_checkpoint" if has("first_stage_model.") else "unet"
    if has(".motion_modules."):
        return "unet_motion" if "conv_in.weight" in names else "motion_adapter"
    if "conv_in.weight" in names and has("time_embedding.", "up_blocks."):
        return "unet"
    if any(k.startswith(("encoder.", "first_stage_model.")) for k in names) and has("decoder."):
        return "vae"
    if has("text_model.", "token_embedding", "cond_stage_model."):
        return "text_encoder"
    return "unknown"


def check_file_fits(ref: ModelRef, keys: list[str]) -> str:
    """The file's kind, after checking that config key `ref.key` accepts it (ConfigError if not)."""
    kind = checkpoint_kind(keys)
    if kind not in ROLE_KINDS[ref.key]:
        better = [k for k, kinds in ROLE_KINDS.items() if kind in kinds]
        fix = (f"give it as `{better[0]}`" if better else "use a file made for Stable Diffusion 1.5")
        raise ConfigError(f"config key '{ref.key}' is {ref.path}, which seems to hold {KIND_WORDS[kind]}, not "
                          f"{ROLE_WORDS[ref.key]}. To fix: {fix}, and give `{ref.key}` {ROLE_WORDS[ref.key]}.")
    return kind


def describe(ref: ModelRef, subfolders: tuple[str, ...] = ("",)) -> dict[str, Any]:
    """The report's entry for a model: {"source", "kind", "sha256_16"} (digest None if nothing to hash).

    A folder or cached hub id is hashed over the weight files diffusers/transformers load from
    `subfolders`; a file over its bytes.
    """
    if ref.kind == FILE:
        digest = file_sha256(ref.path)[:DIGEST_CHARS]
    else:
        root = ref.path if ref.kind == FOLDER else hub_snapshot(ref.name)
        digest = folder_sha256_16(root, subfolders) if root is not None else None
    return {"source": ref.shown, "kind": ref.kind, "sha256_16": digest}
