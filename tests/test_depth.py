"""Depth maps: tiny offline estimator, clip-wide normalisation, precomputed maps, cache, offline errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from sagvideo.errors import InputError, ModelUnavailableError
from sagvideo.video import depth as D
from sagvideo.video.io import read_clip

from _fixtures import require_fixture


@pytest.fixture(scope="module")
def tiny() -> D.TransformersDepth:
    return D.tiny_depth_estimator(seed=0)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Six real frames (64 x 112) from the fixture clip, plus a black and a white frame."""
    path = require_fixture("bigbuckbunny.mp4")
    real = read_clip(path, frames=6, stride=20, size=64).frames
    flat = np.stack([np.zeros_like(real[0]), np.full_like(real[0], 255)])
    return np.concatenate([real, flat])


class CountingEstimator:
    """Wraps a real estimator and counts how often it runs."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, 0

    def __call__(self, frames):
        self.calls += 1
        return self.inner(frames)


def test_tiny_estimator_builds_fast_and_runs_offline(frames, tiny):  # `tiny`: imports done
    start = time.perf_counter()
    est = D.tiny_depth_estimator(seed=1)
    assert time.perf_counter() - start < 2.0
    assert isinstance(est, D.DepthEstimator) and est.name == "tiny-dpt-seed1"
    assert sum(p.numel() for p in est.model.parameters()) < 500_000
    raw = est(frames)
    assert raw.shape == frames.shape[:3] and raw.dtype == np.float32 and np.isfinite(raw).all()
    # A real network: different content gives different maps, and the same seed the same weights.
    assert not np.allclose(raw[0], raw[6]) and not np.allclose(raw[6], raw[7])
    np.testing.assert_array_equal(D.tiny_depth_estimator(seed=1)(frames[:2]), raw[:2])


def test_normalize_clip_depth_is_clip_wide():
    raw = np.stack([np.linspace(0, 1, 12).reshape(3, 4), np.linspace(2, 3, 12).reshape(3, 4)]).astype(np.float32)
    out = D.normalize_clip_depth(raw)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    assert out[0].max() == pytest.approx(1 / 3) and out[1].min() == pytest.approx(2 / 3)
    const = D.normalize_clip_depth(np.full((2, 3, 4), 7.0))
    assert np.array_equal(const, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(InputError, match="NaN"):
        D.normalize_clip_depth(np.array([[[np.nan]]]))


def test_clip_depth_normalised_over_clip_not_per_frame(frames, tiny):
    depth = D.clip_depth(frames, tiny)
    assert depth.shape == frames.shape[:3] and depth.dtype == np.float32
    assert depth.min() == 0.0 and depth.max() == 1.0
    spans = [(d.min(), d.max()) for d in depth]
    assert any(lo > 0.01 or hi < 0.99 for lo, hi in spans), "every frame spans [0, 1]: per-frame normalisation"


def test_cache_reuses_maps(frames, tiny, tmp_path):
    counting = CountingEstimator(tiny)
    first = D.clip_depth(frames, counting, tmp_path, key_extra="seed0")
    assert counting.calls == 1 and len(list(tmp_path.glob("depth-*.npz"))) == 1
    again = D.clip_depth(frames, counting, tmp_path, key_extra="seed0")
    assert counting.calls == 1 and np.array_equal(first, again)
    D.clip_depth(frames, counting, tmp_path, key_extra="other")  # different key: recomputed
    D.clip_depth(frames[:3], counting, tmp_path, key_extra="seed0")  # different frames: recomputed
    assert counting.calls == 3
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_cache_with_wrong_shape_is_recomputed(frames, tiny, tmp_path):
    counting = CountingEstimator(tiny)
    D.clip_depth(frames[:2], counting, tmp_path)
    (entry,) = tmp_path.glob("depth-*.npz")
    np.savez(entry, raw=np.zeros((1, 4, 4), np.float32))  # stale entry with another shape
    out = D.clip_depth(frames[:2], counting, tmp_path)
    assert counting.calls == 2 and out.shape == frames[:2].shape[:3]
    with np.load(entry) as data:
        assert data["raw"].shape == frames[:2].shape[:3]  # rewritten


def test_estimator_with_wrong_shape_is_rejected(frames):
    class Broken:
        name = "broken"

        def __call__(self, x):
            return np.zeros((len(x), 4, 4), np.float32)

    with pytest.raises(ValueError, match="broken.*shape"):
        D.clip_depth(frames[:2], Broken())


def test_midas_wrapper_returns_raw_disparity_at_frame_size():
    # A MiDaS-shaped network (input [-1, 1], output (B, h, w)) whose output is mean brightness:
    # the raw values must pass through unnormalised, at frame size.
    class MeanBrightness(torch.nn.Module):
        def forward(self, x):
            assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0 and x.min() >= -1 and x.max() <= 1
            return x.mean(dim=1)

    est = D.MidasDepth.from_network(MeanBrightness(), name="mean", detect_resolution=64)
    frames = np.stack([np.full((30, 50, 3), 0, np.uint8), np.full((30, 50, 3), 255, np.uint8)])
    out = est(frames)
    assert out.shape == (2, 30, 50) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], -1, atol=1e-5)
    np.testing.assert_allclose(out[1], 1, atol=1e-5)


def test_load_depth_dir_formats_order_and_normalisation(tmp_path):
    near = np.full((10, 20), 200, np.uint8)
    Image.fromarray(near).save(tmp_path / "d_000.png")  # 8-bit gray: 200/255
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 1] = 255  # pure green: luminance 0.587 * 255 -> 150
    Image.fromarray(rgb).save(tmp_path / "d_001.png")
    deep = np.full((5, 10), 1000, np.uint16)
    deep[:, 5:] = 1001  # one step of 65535: lost if read as 8-bit
    Image.fromarray(deep).save(tmp_path / "d_002.png")
    np.save(tmp_path / "d_003.npy", np.full((10, 20), 1.0, np.float32))
    (tmp_path / "notes.txt").write_text("ignored")
    out = D.load_depth_dir(tmp_path, 4, (16, 8))
    assert out.shape == (4, 8, 16) and out.dtype == np.float32
    assert out.min() == 0 and out.max() == 1 and out[3].min() == 1  # NPY 1.0 is the largest value
    assert out[0].mean() == pytest.approx(200 / 255, abs=0.01) and out[1].mean() == pytest.approx(150 / 255, abs=0.01)
    assert out[2, :, -1].mean() > out[2, :, 0].mean() and out[2].max() < 0.02  # 16-bit kept


def test_load_depth_dir_count_mismatch(tmp_path):
    for i in range(2):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(InputError, match="has 2 depth maps.*but 3 are needed"):
        D.load_depth_dir(tmp_path, 3, (4, 4))
    with pytest.raises(InputError, match="not found"):
        D.load_depth_dir(tmp_path / "missing", 3, (4, 4))


def test_depth_to_control_image():
    depth = np.random.default_rng(0).random((3, 8, 12), dtype=np.float32)
    control = D.depth_to_control_image(depth)
    assert control.shape == (3, 3, 8, 12) and control.dtype == torch.float32
    assert torch.equal(control[:, 0], control[:, 2]) and torch.allclose(control[:, 1], torch.from_numpy(depth))


def test_make_depth_estimator_tiny():
    est = D.make_depth_estimator("tiny")
    assert isinstance(est, D.TransformersDepth) and est.name.startswith("tiny")


@pytest.mark.parametrize("build,model_id", [
    (lambda: D.MidasDepth(), "lllyasviel/Annotators"),
    (lambda: D.TransformersDepth("Intel/dpt-hybrid-midas"), "Intel/dpt-hybrid-midas"),
    (lambda: D.make_depth_estimator("depth-anything/Depth-Anything-V2-Small-hf"),
     "depth-anything/Depth-Anything-V2-Small-hf"),
])
def test_hub_models_fail_fast_offline(monkeypatch, build, model_id):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=model_id):
        build()
    assert time.perf_counter() - start < 10
