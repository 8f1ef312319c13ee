"""The networks a process holds: loaded on first use, reused across jobs.

A `Runtime` is cheap to make: the diffusion components load when a stage first needs them and
the depth estimator when depth is first estimated, so `sagvideo depth` never loads the video
model and a run with precomputed depth never loads a depth model.

How the networks live is part of the model settings, so the Runtime applies it once, on load,
in this order: LoRAs (`model.loras`), the memory levers (`model.attention_slicing`,
`vae_slicing`, `vae_tiling`), CPU offload (`model.cpu_offload`, CUDA only), `model.compile`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..config import Config, ModelConfig
from ..errors import ConfigError
from .levers import set_memory_levers
from ..models.components import Components, resolve_device_dtype, tiny_components
from ..models.loading import load_components
from ..models.loras import apply_loras
from ..models.offload import enable_cpu_offload
from ..models.presets import ModelIds


class Runtime:
    """Networks for one model configuration on one device: `components` and `depth_estimator()`."""

    def __init__(self, model: ModelConfig, *, video: bool = True, device: str | torch.device | None = None,
                 components: Components | None = None):
        self.model = copy.deepcopy(model)
        self.video = video
        self.device, self.dtype = resolve_device_dtype(device or model.device, model.dtype)
        if model.cpu_offload and self.device.type != "cuda":  # checked before anything loads
            raise ConfigError(f"model.cpu_offload needs a CUDA device, but the model runs on {self.device}. To fix: "
                              f"set model.cpu_offload: false, or run on a GPU (model.device: cuda).")
        self._components = components
        self._depth: Any = None
        self._loss_decoders: dict[str, Any] = {}
        self._image_prompt: Any = None

    @classmethod
    def from_config(cls, config: Config, video: bool = True, device: str | torch.device | None = None) -> "Runtime":
        """A runtime for `config.model` (nothing is loaded yet); `video=False` skips the motion module."""
        return cls(config.model, video=video, device=device)

    @classmethod
    def from_components(cls, components: Components, depth: str = "tiny") -> "Runtime":
        """Wrap components built elsewhere (e.g. random weights at real sizes for benchmarks)."""
        model = ModelConfig(depth=depth, device=str(components.device),
                            dtype=str(components.dtype).replace("torch.", ""))
        return cls(model, video=components.unet_motion is not None, device=components.device, components=components)

    @property
    def loaded(self) -> bool:
        """Whether the diffusion components are in memory."""
        return self._components is not None

    @property
    def components(self) -> Components:
        """The diffusion networks, loaded (or built, for the tiny preset) on first access."""
        if self._components is None:
            m = self.model
            # CPU offload loads to the CPU; the hooks then move each network to the GPU when it runs
            home = torch.device("cpu") if m.cpu_offload else self.device
            if m.preset == "tiny":
                components = tiny_components(seed=0, video=self.video).to(home, self.dtype)
            else:
                ids = ModelIds(base=m.base, motion_adapter=m.motion_adapter, controlnet=m.controlnet,
                               clip_vision=m.clip_vision, vae=m.vae, single_file_config=m.single_file_config)
                components = load_components(ids, device=home, dtype=self.dtype, video=self.video)
            self._components = self.prepare(components)
        return self._components

    def prepare(self, components: Components) -> Components:
        """Apply the model settings that shape the loaded networks (in place); see the module docstring."""
        m = self.model
        if m.loras:
            apply_loras(components, list(m.loras))
        # set here, not per job: a Runtime serves one model config, and encode/decode run outside applied_levers
        components.levers = set_memory_levers(components, attention_slicing=m.attention_slicing,
                                              vae_slicing=m.vae_slicing, vae_tiling=m.vae_tiling)
        if m.cpu_offload:
            enable_cpu_offload(components, self.device)
            components.levers.append("cpu_offload")
        if m.compile:
            for module in (components.unet, components.controlnet):
                module.compile()  # in place; the first call of each shape compiles
            components.levers.append("compile")
        return components

    def image_prompt_models(self) -> Any:
        """The IP-Adapter layers and image encoder (`model.ip_adapter`, `model.image_encoder`), loaded on
        first use (an `image_prompt.ImagePromptModels`)."""
        if self._image_prompt is None:
            from .image_prompt import ImagePromptModels

            self._image_prompt = ImagePromptModels(self.model, self.components)
        return self._image_prompt

    def loss_decoder(self, name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
        """A job's `model.loss_decoder` (an `AutoencoderTiny`) and its report entry, loaded on first use
        (a job setting: jobs of one runtime may ask for different ones)."""
        if name not in self._loss_decoders:
            from ..models.loss_decoder import load_loss_decoder

            self._loss_decoders[name] = load_loss_decoder(name, self.components)
        return self._loss_decoders[name]

    def depth_estimator(self) -> Any:
        """The `model.depth` estimator (a `DepthEstimator`), loaded on first use."""
        if self._depth is None:
            from ..video.depth import make_depth_estimator

            self._depth = make_depth_estimator(self.model.depth, self.device)
        return self._depth
