"""One depth map per frame: estimators, clip-wide normalisation, precomputed maps and a cache.

Depth here is relative inverse depth ("disparity", larger = nearer), the convention of MiDaS,
DPT and Depth Anything and of ControlNet-depth conditioning images (white = near).
Normalisation is over the whole clip, never per frame: per-frame min/max rescaling makes
the conditioning flicker when the depth range of the scene changes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..images import decode_image
from ..models.hub import load_pretrained
from ..files import atomic_path

DEPTH_FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")


@runtime_checkable
class DepthEstimator(Protocol):
    """Maps uint8 frames (F, H, W, 3) to float32 raw relative depth (F, H, W), larger = nearer."""

    name: str

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"Depth estimation needs uint8 frames (F, H, W, 3), got {frames.dtype} {frames.shape}.")
    return frames


def _to_frame_size(depth: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(B, h, w) or (B, 1, h, w) depth -> float32 numpy (B, height, width), bilinear."""
    depth = depth.reshape(depth.shape[0], 1, depth.shape[-2], depth.shape[-1]).float()
    depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=False)
    return depth[:, 0].cpu().numpy().astype(np.float32)


class MidasDepth:
    """MiDaS DPT-Hybrid from controlnet-aux, returning its raw disparity (not its uint8 image).

    `MidasDetector.__call__` rescales each image to 0-255 on its own, which would make the
    depth flicker, so the wrapped network (`detector.model`) is called directly, with the same
    input scaling ([-1, 1]) and a short side of `detect_resolution` (multiple of 32).
    """

    def __init__(self, model_id: str = "lllyasviel/Annotators", device: str | torch.device = "cpu",
                 *, detect_resolution: int = 384, batch_size: int = 4):
        from controlnet_aux.midas import MidasDetector  # slow import (all of controlnet-aux): only when used

        detector = load_pretrained(MidasDetector.from_pretrained, model_id,
                                   what="MiDaS depth estimator", config_key="model.depth")
        self._setup(detector.model, device, f"midas:{model_id}@{detect_resolution}", detect_resolution, batch_size)

    def _setup(self, net: torch.nn.Module, device, name: str, detect_resolution: int, batch_size: int) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.detect_resolution = detect_resolution
        self.batch_size = batch_size
        self.name = name

    @classmethod
    def from_network(cls, net: torch.nn.Module, name: str, device: str | torch.device = "cpu",
                     *, detect_resolution: int = 384, batch_size: int = 4) -> "MidasDepth":
        """Wrap an already built MiDaS-style network: (B, 3, h, w) in [-1, 1] -> disparity (B, h, w)."""
        self = cls.__new__(cls)
        self._setup(net, device, name, detect_resolution, batch_size)
        return self

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (F, H, W, 3) -> float32 raw MiDaS disparity (F, H, W)."""
        frames = _check_frames(frames)
        n, height, width = frames.shape[:3]
        scale = self.detect_resolution / min(height, width)
        net_h, net_w = (max(32, round(s * scale / 32) * 32) for s in (height, width))
        out = np.empty((n, height, width), dtype=np.float32)
        for i in range(0, n, self.batch_size):
            x = torch.from_numpy(frames[i:i + self.batch_size]).to(self.device).permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(net_h, net_w), mode="bicubic", align_corners=False, antialias=True)
            x = (x / 127.5 - 1.0).clamp(-1, 1)
            out[i:i + len(x)] = _to_frame_size(self.net(x), height, width)
        return out


class TransformersDepth:
    """Any `transformers` depth model (DPT, Depth Anything, ...) by hub id, folder, or instance.

    `predicted_depth` is interpolated back to the frame size. Models that predict metric depth
    (`config.depth_estimation_type == "metric"`, larger = farther) are turned into 1 / depth so
    every estimator returns larger = nearer.
    """

    def __init__(self, model_id_or_model, device: str | torch.device = "cpu", *, processor=None,
                 name: str | None = None, batch_size: int = 4):
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        if isinstance(model_id_or_model, (str, os.PathLike)):
            model_id = str(model_id_or_model)
            model = load_pretrained(AutoModelForDepthEstimation.from_pretrained, model_id,
                                    what="depth estimator", config_key="model.depth")
            if processor is None:
                processor = load_pretrained(AutoImageProcessor.from_pretrained, model_id,
                                            what="depth estimator image processor", config_key="model.depth")
            name = name or model_id
        else:
            model = model_id_or_model
            if processor is None:
                raise InputError("TransformersDepth given a model instance also needs its `processor=`.")
            name = name or type(model).__name__
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.name = name
        self.metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (F, H, W, 3) -> float32 raw relative depth (F, H, W), larger = nearer."""
        frames = _check_frames(frames)
        n, height, width = frames.shape[:3]
        out = np.empty((n, height, width), dtype=np.float32)
        for i in range(0, n, self.batch_size):
            # transformers' processors reject numpy views with negative strides: pass copies.
            images = [np.ascontiguousarray(f) for f in frames[i:i + self.batch_size]]
            inputs = self.processor(images=images, return_tensors="pt")
            pred = self.model(pixel_values=inputs["pixel_values"].to(self.device)).predicted_depth
            if self.metric:
                pred = 1.0 / pred.clamp_min(1e-3)
            out[i:i + len(images)] = _to_frame_size(pred, height, width)
        return out


def tiny_depth_estimator(seed: int = 0, device: str | torch.device = "cpu") -> TransformersDepth:
    """A real but tiny random-weight DPT (about 0.1 M parameters, 64x64 input), built offline.

    Its maps mean nothing; it exercises the same code path as a pretrained model. The
    convolutions get PyTorch's default init and the last layer a positive bias because DPT's
    own small-normal init followed by ReLU outputs almost exactly zero everywhere.
    """
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        image_size=64, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[16, 16, 32, 32], reassemble_factors=[4, 2, 1, 0.5],
        fusion_hidden_size=16, head_hidden_size=16, initializer_range=0.3,
    )
    with torch.random.fork_rng(devices=[]):  # deterministic weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = DPTForDepthEstimation(config)
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.reset_parameters()
        model.head.head[-2].bias.data.fill_(0.5)
    processor = DPTImageProcessor(size={"height": 64, "width": 64}, keep_aspect_ratio=False)
    return TransformersDepth(model, device, processor=processor, name=f"tiny-dpt-seed{seed}")


def make_depth_estimator(name: str, device: str | torch.device = "cpu") -> DepthEstimator:
    """"midas" -> MidasDepth, "tiny" -> tiny random DPT, anything else -> TransformersDepth(name)."""
    if name == "midas":
        return MidasDepth(device=device)
    if name == "tiny":
        return tiny_depth_estimator(device=device)
    return TransformersDepth(name, device)


def normalize_clip_depth(raw: np.ndarray) -> np.ndarray:
    """float (F, H, W) -> float32 (F, H, W) in [0, 1], one min/max for the whole clip.

    A constant clip maps to zeros. Non-finite values are an error (they would poison the range).
    """
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 3:
        raise InputError(f"Depth maps must be (F, H, W), got shape {raw.shape}.")
    if not np.isfinite(raw).all():
        raise InputError("Depth maps contain NaN or inf. To fix: check the depth estimator or the precomputed maps.")
    low, high = float(raw.min()), float(raw.max())
    if high - low <= 0:
        return np.zeros_like(raw)
    return ((raw - low) / (high - low)).astype(np.float32)


def _read_depth_file(path: Path) -> np.ndarray:
    """One precomputed map as float32 (h, w): images via `decode_image`, NPY as stored.

    Image files come back upright (EXIF orientation) in [0, 1]: 8-bit / 255, 16-bit / 65535,
    colour and palette maps as their luminance; alpha is ignored.
    """
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
        arr = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
        if arr.ndim != 2:
            raise InputError(f"Depth map '{path}' has shape {arr.shape}; expected (H, W).")
        return arr
    with Image.open(path) as img:
        return decode_image(img).luminance()


def load_depth_dir(folder: str | os.PathLike, n_frames: int, size: tuple[int, int]) -> np.ndarray:
    """Precomputed maps (PNG/JPG/NPY sorted by name, white/large = near) -> (F, H, W) in [0, 1].

    Each map is resized to `size` = (W, H); the clip is then normalised as a whole.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"Depth folder '{folder}' not found. To fix: pass a folder of one depth map per frame.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in DEPTH_FILE_SUFFIXES and p.is_file())
    if len(files) != n_frames:
        raise InputError(
            f"Depth folder '{folder}' has {len(files)} depth maps ({'/'.join(DEPTH_FILE_SUFFIXES)}), but "
            f"{n_frames} are needed, one per selected frame. To fix: provide exactly {n_frames} maps "
            f"named so they sort in frame order (depth_00000.png, ...), or change --frames/--stride/--start."
        )
    width, height = size
    maps = np.empty((n_frames, height, width), dtype=np.float32)
    for i, path in enumerate(files):
        try:
            arr = _read_depth_file(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"Cannot read depth map '{path}' ({exc}). "
                             f"To fix: replace it with a PNG or NPY map.") from exc
        maps[i] = np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR))
    return normalize_clip_depth(maps)


def depth_cache_key(frames: np.ndarray, estimator_name: str, key_extra: str = "") -> str:
    """Hex digest identifying (frame bytes and shape, estimator name, extra key)."""
    h = hashlib.sha256()
    h.update(repr((frames.shape, str(frames.dtype), estimator_name, key_extra)).encode())
    h.update(np.ascontiguousarray(frames).data)
    return h.hexdigest()


def clip_depth(clip_frames: np.ndarray, estimator: DepthEstimator, cache_dir: str | os.PathLike | None = None,
               key_extra: str = "") -> np.ndarray:
    """uint8 (F, H, W, 3) -> clip-normalised depth float32 (F, H, W) in [0, 1], cached.

    With `cache_dir`, the raw maps are stored as depth-<hash>.npz (hash of the frames, the
    estimator name and `key_extra`) and reused when the shape matches; the file is written
    atomically so an interrupted run never leaves a truncated cache entry.
    """
    frames = _check_frames(clip_frames)
    expected = frames.shape[:3]
    cache_file = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir).expanduser()
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file = cache_dir / f"depth-{depth_cache_key(frames, estimator.name, key_extra)[:32]}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as data:
                    raw = data["raw"]
                if raw.shape == expected:
                    return normalize_clip_depth(raw)
            except (OSError, ValueError, KeyError):
                pass  # unreadable entry: recompute and overwrite it
    raw = np.asarray(estimator(frames), dtype=np.float32)
    if raw.shape != expected:
        raise ValueError(f"Depth estimator '{estimator.name}' returned shape {raw.shape}, expected {expected}.")
    if cache_file is not None:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, raw=raw)
    return normalize_clip_depth(raw)


def depth_to_uint8(depth: np.ndarray) -> np.ndarray:
    """Normalised depth (F, H, W) in [0, 1] -> uint8 gray maps (F, H, W), for files and previews."""
    return (np.clip(depth, 0.0, 1.0) * 255).round().astype(np.uint8)


def depth_to_control_image(depth: np.ndarray) -> torch.Tensor:
    """Normalised depth (F, H, W) in [0, 1] -> float32 tensor (F, 3, H, W) in [0, 1] (gray RGB)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 3:
        raise InputError(f"Depth must be (F, H, W), got shape {depth.shape}.")
    t = torch.from_numpy(np.ascontiguousarray(depth)).clamp(0.0, 1.0)
    return t[:, None].expand(-1, 3, -1, -1).contiguous()
