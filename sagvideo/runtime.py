"""The networks a process holds: loaded on first use, reused across jobs.

A `Runtime` is cheap to make: the diffusion components load when a stage first needs them and
the depth estimator when depth is first estimated, so `sagvideo depth` never loads the video
model and a run with precomputed depth never loads a depth model.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .config import Config, ModelConfig
from .models.components import Components, load_components, resolve_device_dtype, tiny_components
from .models.presets import ModelIds


class Runtime:
    """Networks for one model configuration on one device: `components` and `depth_estimator()`."""

    def __init__(self, model: ModelConfig, *, video: bool = True, device: str | torch.device | None = None,
                 components: Components | None = None):
        self.model = copy.deepcopy(model)
        self.video = video
        self.device, self.dtype = resolve_device_dtype(device or model.device, model.dtype)
        self._components = components
        self._depth: Any = None

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
            if m.preset == "tiny":
                components = tiny_components(seed=0, video=self.video).to(self.device, self.dtype)
            else:
                ids = ModelIds(base=m.base, motion_adapter=m.motion_adapter, controlnet=m.controlnet,
                               clip_vision=m.clip_vision)
                components = load_components(ids, device=self.device, dtype=self.dtype, video=self.video)
            if m.compile:
                for module in (components.unet, components.controlnet):
                    module.compile()  # in place; the first call of each shape compiles
            self._components = components
        return self._components

    def depth_estimator(self) -> Any:
        """The `model.depth` estimator (a `DepthEstimator`), loaded on first use."""
        if self._depth is None:
            from .video.depth import make_depth_estimator

            self._depth = make_depth_estimator(self.model.depth, self.device)
        return self._depth
