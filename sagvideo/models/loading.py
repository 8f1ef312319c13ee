"""Pretrained components from hub ids, diffusers folders or single checkpoint files, with their digests.

`load_components(ModelIds(...))`: pretrained components. Each
role is loaded the way its reference asks (see `sources.classify`): a folder or hub id with
`from_pretrained` (offline-first, `hub.load_pretrained`), a file with diffusers' single-file
loaders (`singlefile`). The result's `sources` say, per role, what was loaded and the digest of
the weights that were read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from ..errors import ConfigError
from .components import Components, _assemble, resolve_device_dtype
from .hub import hub_reachable, load_pretrained
from .presets import ModelIds
from .singlefile import BaseParts, load_file_model, load_sd_checkpoint
from .sources import (
    FILE, SAFE_SUFFIXES, ModelRef, check_file_fits, classify, describe, read_keys, read_state_dict,
)


class _Loader:
    """Loads roles for one `ModelIds`, all in `dtype`, offline when the hub cannot be reached."""

    def __init__(self, ids: ModelIds, dtype: torch.dtype, local_files_only: bool | None):
        self.ids, self.dtype = ids, dtype
        self.extra = {} if local_files_only is None else {"local_files_only": local_files_only}
        self.offline = bool(local_files_only) or not hub_reachable()
        self._pickles: dict[Path, dict[str, torch.Tensor]] = {}  # read once: a pickle has no cheap key list

    def keys(self, ref: ModelRef) -> list[str]:
        """The tensor names in file `ref` (a .safetensors header; a pickle is read whole and kept)."""
        if ref.path.name.lower().endswith(SAFE_SUFFIXES):
            return read_keys(ref.path, ref.key)
        if ref.path not in self._pickles:
            self._pickles[ref.path] = read_state_dict(ref.path, ref.key)
        return list(self._pickles[ref.path])

    def file_kind(self, ref: ModelRef) -> str:
        """The kind of network in file `ref`, checked against its config key ("" for a folder or hub id)."""
        return check_file_fits(ref, self.keys(ref)) if ref.kind == FILE else ""

    def pretrained(self, loader, name: str, what: str, key: str, **kw) -> Any:
        return load_pretrained(loader, name, what=what, config_key=key, **self.extra, **kw)

    def file_model(self, cls, ref: ModelRef, what: str) -> torch.nn.Module:
        """A network from the single file `ref`, after checking the file holds what its key expects."""
        self.file_kind(ref)
        state = self._pickles.pop(ref.path, None) or read_state_dict(ref.path, ref.key)
        return load_file_model(cls, ref, state, dtype=self.dtype, offline=self.offline,
                               single_file_config=self.ids.single_file_config, what=what)

    def role(self, cls, ref: ModelRef, what: str, **kw) -> torch.nn.Module:
        """A diffusers model for `ref`: from its file, or `from_pretrained` of its folder / hub id."""
        if ref.kind == FILE:
            return self.file_model(cls, ref, what)
        # diffusers models are read straight into `dtype` (float16: half the host memory)
        return self.pretrained(cls.from_pretrained, ref.name, what, ref.key, torch_dtype=self.dtype, **kw)

    def base(self, ref: ModelRef, file_kind: str) -> BaseParts:
        """UNet, VAE, text encoder, tokenizer and scheduler config of `model.base` (`file_kind` for a file)."""
        if file_kind == "sd_checkpoint":
            self._pickles.pop(ref.path, None)  # the pipeline loader reads the file itself
            return load_sd_checkpoint(ref, single_file_config=self.ids.single_file_config, dtype=self.dtype,
                                      offline=self.offline)
        # a UNet file takes the rest from `model.single_file_config`; a folder or hub id has it all
        rest, key = ((self.ids.single_file_config, "model.single_file_config") if ref.kind == FILE
                     else (ref.name, ref.key))
        if ref.kind == FILE and classify(rest, key).kind == FILE:
            raise ConfigError(f"config key 'model.single_file_config' is a file ({rest}); it must be a hub id or a "
                              f"diffusers folder of Stable Diffusion 1.5. To fix: set it to "
                              f"{ModelIds().single_file_config} or a downloaded copy.")
        unet = self.role(UNet2DConditionModel, ref, "Stable Diffusion UNet", subfolder="unet")
        vae = (None if self.ids.vae else
               self.pretrained(AutoencoderKL.from_pretrained, rest, "Stable Diffusion VAE", key, subfolder="vae",
                               torch_dtype=self.dtype))
        # transformers models are cast by `_assemble` (their dtype keyword differs between versions)
        text_encoder = self.pretrained(CLIPTextModel.from_pretrained, rest, "Stable Diffusion text encoder", key,
                                       subfolder="text_encoder")
        tokenizer = self.pretrained(CLIPTokenizer.from_pretrained, rest, "Stable Diffusion tokenizer", key,
                                    subfolder="tokenizer")
        sched = self.pretrained(DDIMScheduler.load_config, rest, "Stable Diffusion scheduler config", key,
                                subfolder="scheduler")
        return BaseParts(unet, vae, text_encoder, tokenizer, dict(sched))


def _sources(ids: ModelIds, refs: dict[str, ModelRef], base_kind: str, video: bool) -> dict[str, dict[str, Any]]:
    """Per role: what was loaded and the digest of the weight files read for it."""
    base, own_vae = refs["base"], bool(ids.vae)
    base_parts = ("unet", "text_encoder") + (() if own_vae else ("vae",))
    out = {"base": describe(base, base_parts if base.kind != FILE else ("",))}
    if base.kind == FILE and base_kind == "unet":  # the rest of the base came from the config source
        rest = classify(ids.single_file_config, "model.single_file_config")
        out["single_file_config"] = describe(rest, ("text_encoder",) + (() if own_vae else ("vae",)))
    for role in ("vae", "motion_adapter", "controlnet", "clip_vision"):
        if role in refs and (role != "motion_adapter" or video):
            out[role] = describe(refs[role])
    return out


def load_components(ids: ModelIds = ModelIds(), *, device: str | torch.device = "auto",
                               dtype: str | torch.dtype = "auto", video: bool = True,
                               local_files_only: bool | None = None) -> Components:
    """Components for `ids` (hub ids, diffusers folders or single files), with `sources` filled in.

    Raises ModelUnavailableError when a model is neither local nor cached and the hub cannot be
    reached, ConfigError for a file that is missing, unreadable, or of the wrong kind for its key.
    """
    device, dtype = resolve_device_dtype(device, dtype)
    loader = _Loader(ids, dtype, local_files_only)
    refs = {"base": classify(ids.base, "model.base"), "controlnet": classify(ids.controlnet, "model.controlnet"),
            "clip_vision": classify(ids.clip_vision, "model.clip_vision")}
    if ids.vae:
        refs["vae"] = classify(ids.vae, "model.vae")
    if video:
        refs["motion_adapter"] = classify(ids.motion_adapter, "model.motion_adapter")
    if refs["clip_vision"].kind == FILE:
        raise ConfigError(f"config key 'model.clip_vision' is a file ({ids.clip_vision}); the CLIP vision model is "
                          f"loaded from a hub id or a transformers folder. To fix: use e.g. "
                          f"{ModelIds().clip_vision}.")
    base_kind = loader.file_kind(refs["base"])
    parts = loader.base(refs["base"], base_kind)
    vae = loader.role(AutoencoderKL, refs["vae"], "VAE") if ids.vae else parts.vae
    adapter = loader.role(MotionAdapter, refs["motion_adapter"], "AnimateDiff motion adapter") if video else None
    controlnet = loader.role(ControlNetModel, refs["controlnet"], "ControlNet (depth)")
    clip_vision = loader.pretrained(CLIPVisionModelWithProjection.from_pretrained, ids.clip_vision, "CLIP vision model",
                                    "model.clip_vision")
    names: dict[str, str | None] = {"base": refs["base"].shown,
                                    "motion_adapter": refs["motion_adapter"].shown if video else None,
                                    "controlnet": refs["controlnet"].shown, "clip_vision": refs["clip_vision"].shown}
    if ids.vae:
        names["vae"] = refs["vae"].shown
    c = _assemble(parts.unet, adapter, controlnet, vae, parts.text_encoder, parts.tokenizer, clip_vision,
                  parts.scheduler_config, ids=names, preset="pretrained", device=device, dtype=dtype)
    c.sources = _sources(ids, refs, base_kind, video)
    return c
