"""The image prompt of a job: the style image through the IP-Adapter, on top of the text prompt.

    models = runtime.image_prompt_models()          # encoder + adapter layers, loaded once per runtime
    prompt = ImagePrompt.from_style(models, style, scale=1.0, mode="style")   # encoder runs once
    with prompt.attached(components) as blocks:      # the adapter in the UNet while sampling
        eps = DepthControlledEps(..., image_embeds=prompt.embeds)

`ip_adapter.scale` 0 means no `ImagePrompt` at all: the UNet is the one without an adapter.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from ..config import Config, ModelConfig
from ..models.components import Components
from ..models.image_encoder import embed_image, load_image_prompt_models
from ..models.ip_adapter import IPAdapterLayers, attached


def memory_saving(model: ModelConfig) -> bool:
    """Whether the model settings ask to save memory: then the encoder does not stay on the device."""
    return model.cpu_offload or model.vae_slicing or model.vae_tiling or model.attention_slicing


class ImagePromptModels:
    """The IP-Adapter layers and image encoder of one runtime, for its components.

    With a memory-saving model config the encoder leaves the device after each job's one
    embedding: to the CPU on a GPU, and freed (reloaded by the next job) on a CPU.
    """

    def __init__(self, model: ModelConfig, components: Components):
        self.model = model
        self.components = components
        self.encoder: torch.nn.Module | None = None
        self.encoder_entry: dict[str, Any] = {}
        self.layers: IPAdapterLayers | None = None
        self.load_seconds = 0.0
        self._load()

    def _load(self) -> None:
        start = time.perf_counter()
        c = self.components
        dtype = torch.float32 if c.device.type == "cpu" else c.dtype
        self.encoder, self.encoder_entry, layers = load_image_prompt_models(
            self.model.ip_adapter, self.model.image_encoder, c.unet2d, preset=c.preset, dtype=dtype)
        self.layers = self.layers or layers
        self.load_seconds += time.perf_counter() - start

    def embed(self, style: torch.Tensor) -> torch.Tensor:
        """Style image (3, H, W) in [0, 1] -> image embedding (1, E) float32 on the components' device."""
        if self.encoder is None:
            self._load()
        device = self.components.device
        torch.nn.Module.to(self.encoder, device=device)
        embeds = embed_image(self.encoder, style, device)
        if memory_saving(self.model):
            if device.type == "cuda":
                torch.nn.Module.to(self.encoder, device="cpu")
                torch.cuda.empty_cache()
            else:
                self.encoder = None
        return embeds


@dataclass
class ImagePrompt:
    """One job's image prompt: embeds (2, 1, E) (unconditional zeros first, as diffusers' pipelines
    give the plain IP-Adapter), the adapter layers, scale and mode; `report` for the run report."""

    embeds: torch.Tensor
    layers: IPAdapterLayers
    scale: float
    mode: str
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_style(cls, models: ImagePromptModels, style: torch.Tensor, *, scale: float, mode: str) -> "ImagePrompt":
        """Run the image encoder once on the style image (3, H, W) in [0, 1]."""
        start = time.perf_counter()
        image = models.embed(style)
        seconds = time.perf_counter() - start
        report = {"scale": scale, "mode": mode, "adapter": dict(models.layers.source),
                  "image_encoder": dict(models.encoder_entry), "embed_seconds": round(seconds, 4),
                  "load_seconds": round(models.load_seconds, 4)}
        return cls(torch.stack([torch.zeros_like(image), image]), models.layers, scale, mode, report)

    @contextmanager
    def attached(self, components: Components) -> Iterator[list[str]]:
        """The adapter in the UNet(s) while the block runs; yields (and reports) the blocks fed."""
        unets = [u for u in (components.unet_motion, components.unet2d) if u is not None]
        with attached(unets, self.layers, self.scale, self.mode) as blocks:
            self.report["blocks"] = blocks
            yield blocks


def off_report(config: Config) -> dict[str, Any]:
    """The report's `ip_adapter` entry when the image prompt is off (scale 0)."""
    return {"scale": 0.0, "mode": config.ip_adapter.mode, "enabled": False,
            "note": "ip_adapter.scale 0: no image prompt; the UNet ran without an adapter"}
