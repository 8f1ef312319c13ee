"""Quality metrics on synthetic clips with known answers, plus one real clip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sagvideo.errors import InputError
from sagvideo.metrics import (METRICS, clip_consistency, compute_metrics, depth_fidelity, flicker, plot_run,
                              source_flow, style_distance, warp_error)

from _fixtures import require_fixture

SHIFT = (2, 1)  # (dx, dy) px per frame of the translated clip


def textured_clip(frames: int = 8, shift: tuple[int, int] = SHIFT, size=(64, 96), seed: int = 0) -> np.ndarray:
    """A smooth random texture seen through a window moving by `shift` px per frame: uint8 (F, h, w, 3)."""
    rng = np.random.default_rng(seed)
    h, w = size
    big = cv2.GaussianBlur(rng.random((h + 40 + frames * shift[1], w + 40 + frames * shift[0], 3)).astype(np.float32),
                           (0, 0), 2.0)
    big = ((big - big.min()) / (big.max() - big.min()) * 255).round().astype(np.uint8)
    return np.stack([big[20 + t * shift[1]:20 + t * shift[1] + h, 20 + t * shift[0]:20 + t * shift[0] + w]
                     for t in range(frames)])


def shuffled(clip: np.ndarray) -> np.ndarray:
    return clip[[2, 4, 3, 6, 5, 0, 1, 7]]  # a fixed permutation with no two neighbours kept


@pytest.fixture(scope="module")
def clip_model():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8)
    return CLIPVisionModel(config).eval()


# --- temporal ---------------------------------------------------------------------------------

def test_static_clip_has_zero_flicker_and_zero_warp_error():
    static = np.repeat(textured_clip(1), 5, axis=0)
    assert warp_error(static, source_flow(static)).per_pair == [0.0] * 4
    result = flicker(static, static)
    assert result.value == 0.0 and result.static_source and result.per_pair == [None] * 4


def test_static_source_flicker_is_the_outputs_change():
    static = np.repeat(textured_clip(1), 3, axis=0)
    moving = textured_clip(3)
    result = flicker(moving, static)
    assert result.static_source
    assert result.value == pytest.approx(np.abs(np.diff(moving.astype(float), axis=0)).mean() / 255)


def test_flow_recovers_the_known_shift():
    flows = list(source_flow(textured_clip()))
    assert len(flows) == 7
    for flow in flows:
        # the content moves by -shift; measured |error| <= 0.005 px, valid fraction >= 0.947
        assert flow.valid.mean() > 0.9
        assert flow.forward[flow.valid].mean(0) == pytest.approx([-SHIFT[0], -SHIFT[1]], abs=0.02)
        assert flow.backward[flow.valid].mean(0) == pytest.approx(list(SHIFT), abs=0.02)


@pytest.mark.parametrize("seed", [0, 1])
def test_translated_clip_has_near_zero_warp_error_and_shuffled_a_large_one(seed):
    clip = textured_clip(seed=seed)
    own = warp_error(clip, source_flow(clip))
    assert max(own.per_pair) < 5e-4  # measured (seeds 0, 1): at most 3.0e-4 (mean 2.4e-4), [0, 1] units
    mixed = shuffled(clip)
    assert warp_error(mixed, source_flow(mixed)).mean > 50 * own.mean  # measured 0.035-0.038, ~150x
    assert warp_error(mixed, source_flow(clip)).mean > 50 * own.mean  # as an output against the source: ~0.10


def test_flicker_of_the_source_itself_is_one():
    clip = textured_clip()
    result = flicker(clip, clip)
    assert result.value == 1.0 and not result.static_source and result.per_pair == [1.0] * 7


def test_output_at_another_size_is_resized_to_the_source():
    clip = textured_clip()
    bigger = np.repeat(np.repeat(clip, 2, axis=1), 2, axis=2)  # area-downscaling this gives clip back exactly
    assert flicker(bigger, clip).value == 1.0
    flows = list(source_flow(clip))
    assert warp_error(bigger, flows) == warp_error(clip, flows)


def test_flow_is_computed_at_most_max_side():
    flows = list(source_flow(textured_clip(3), max_side=48))
    assert flows[0].size == (32, 48)
    assert flows[0].forward[flows[0].valid].mean(0) == pytest.approx([-1.0, -0.5], abs=0.1)  # shift halved


def test_one_frame_clip_has_no_temporal_metrics(clip_model):
    one = textured_clip(1)
    assert warp_error(one, source_flow(one)).mean is None
    assert flicker(one, one).value is None
    assert clip_consistency(one, clip_model).mean is None
    report = compute_metrics(one, one)
    assert report["warp_error"] is None and report["flicker"] is None
    assert report["per_frame"]["warp_error"] == [None]


def test_bad_inputs_raise_errors_that_say_what_to_do():
    clip = textured_clip(3)
    with pytest.raises(InputError, match="uint8 RGB frames"):
        source_flow(clip.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        flicker(clip[0], clip[0])
    with pytest.raises(InputError, match="has 2 frames"):
        flicker(clip[:2], clip)
    with pytest.raises(InputError, match="more flows than the 1 frame pairs"):
        warp_error(clip[:2], source_flow(clip))
    with pytest.raises(InputError, match="1 flows for 2 frame pairs"):
        warp_error(clip, source_flow(clip[:2]))
    with pytest.raises(InputError, match="both depth_estimator and input_depth"):
        compute_metrics(clip, clip, depth_estimator=lambda f: f.mean(-1))


# --- semantic ---------------------------------------------------------------------------------

def test_style_distance_with_a_toy_loss_is_per_frame_and_chunk_independent():
    levels = np.array([0, 64, 128, 191, 255], dtype=np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (5, 8, 12, 3)).copy()
    toy = lambda images: (images - 0.5).abs().mean(dim=(1, 2, 3))  # noqa: E731
    result = style_distance(frames, toy, chunk=2)
    expected = np.abs(levels / 255 - 0.5)
    assert result.values == pytest.approx(expected, abs=1e-6)
    assert result.mean == pytest.approx(expected.mean(), abs=1e-6)
    assert style_distance(frames, toy, chunk=8).values == pytest.approx(result.values, abs=1e-7)
    with pytest.raises(InputError, match="one value per image"):
        style_distance(frames, lambda images: images.mean())


def test_style_distance_accepts_the_projects_gram_loss(clip_model):
    from sagvideo.guidance import GramStyleLoss

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    loss = GramStyleLoss(clip_model, torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)), layer=1)
    direct = loss.per_frame(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    assert style_distance(frames, loss.per_frame, chunk=2).values == pytest.approx(direct.tolist(), rel=1e-5)


def test_clip_consistency_is_one_for_identical_frames_and_lower_otherwise(clip_model):
    rng = np.random.default_rng(0)
    same = np.repeat(rng.integers(0, 256, (1, 40, 56, 3), dtype=np.uint8), 5, axis=0)
    assert clip_consistency(same, clip_model).values == pytest.approx([1.0] * 4, abs=1e-5)
    noise = rng.integers(0, 256, (1, 40, 56, 3), dtype=np.uint8)
    different = np.concatenate([noise, np.zeros_like(noise), np.full_like(noise, 255), noise])
    result = clip_consistency(different, clip_model, chunk=3)
    assert max(result.values) < 0.95  # measured 0.60, 0.25, 0.91 with this seeded tiny model
    assert clip_consistency(different, clip_model, chunk=1).values == pytest.approx(result.values, abs=1e-5)


def _ramp_depth(frames: int = 4, size=(24, 40)) -> np.ndarray:
    y, x = np.mgrid[0:size[0], 0:size[1]]
    return np.stack([((x + 2 * y + 3 * t) % 50) / 49.0 for t in range(frames)]).astype(np.float32)


def test_depth_fidelity_is_one_for_the_same_depth_and_low_for_inverted_or_random():
    depth = _ramp_depth()
    frames = np.zeros((4, 48, 80, 3), dtype=np.uint8)  # the estimators below ignore the pixels
    at_frame_size = lambda f: np.stack([cv2.resize(d, (80, 48)) for d in depth])  # noqa: E731
    # measured 0.987: the resize round trip blurs the ramp's jumps
    assert depth_fidelity(frames, depth, at_frame_size).mean == pytest.approx(1.0, abs=0.02)
    assert depth_fidelity(frames, depth, lambda f: depth).values == pytest.approx([1.0] * 4, abs=1e-9)
    assert depth_fidelity(frames, depth, lambda f: 1.0 - depth).mean == pytest.approx(-1.0, abs=1e-9)
    noise = np.random.default_rng(0).random((4, 24, 40)).astype(np.float32)
    assert abs(depth_fidelity(frames, depth, lambda f: noise).mean) < 0.1  # measured mean 0.015, |r_f| <= 0.05
    flat = depth_fidelity(frames, depth, lambda f: np.ones((len(f), 48, 80), np.float32), chunk=3)
    assert flat.values == [None] * 4 and flat.mean is None
    with pytest.raises(InputError, match="input_depth"):
        depth_fidelity(frames, depth[:3], lambda f: depth)


# --- report and plot --------------------------------------------------------------------------

def test_compute_metrics_returns_strict_json_with_per_frame_lists(clip_model):
    source = textured_clip()
    output = source[:, :, ::-1].copy()  # mirrored: moves the opposite way
    depth = _ramp_depth(8)
    report = compute_metrics(output, source, per_frame_loss=lambda x: x.mean(dim=(1, 2, 3)), clip_model=clip_model,
                             depth_estimator=lambda f: f.mean(-1).astype(np.float32), input_depth=depth)
    json.dumps(report, allow_nan=False)
    assert set(METRICS) <= set(report) and set(report["per_frame"]) == set(METRICS)
    assert all(isinstance(report[name], float) for name in METRICS)
    assert all(len(values) == 8 for values in report["per_frame"].values())
    assert report["warp_error"] > 10 * report["warp_error_source"]  # measured 0.108 vs 0.00024
    assert report["seconds"] >= 0
    bare = compute_metrics(source, source)
    assert bare["flicker"] == 1.0 and bare["style_distance"] is None and bare["per_frame"]["style_distance"] == []


def _check_png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 400
        return np.asarray(image.convert("RGB"))


def test_plot_writes_a_png_also_for_empty_inputs(tmp_path):
    full = tmp_path / "run.png"
    plot_run(full, [5.0, 4.2, 3.9, 3.5], {"warp_error": [None, 0.1, float("nan"), 0.2, 0.15],
                                           "style_distance": [3.0, 2.0, 2.5, 2.0, 1.0], "flat": [0.5] * 5})
    drawn = _check_png(full)
    empty = tmp_path / "empty.png"
    plot_run(empty, [], {"warp_error": [], "style_distance": [None]})
    blank = _check_png(empty)
    assert (drawn != 255).sum() > 2 * (blank != 255).sum()  # curves and ticks, not just two notes
    plot_run(tmp_path / "one.png", [2.0], {"warp_error": [None, 0.1]})
    _check_png(tmp_path / "one.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "one.png", "run.png"]  # no temp files


# --- real clip --------------------------------------------------------------------------------

def test_real_clip_warp_error_is_below_that_of_its_shuffled_frames():
    import decord

    path = require_fixture("bigbuckbunny.mp4")
    frames = decord.VideoReader(str(path), width=128, height=72).get_batch(list(range(8))).asnumpy()
    source = warp_error(frames, source_flow(frames)).mean
    mixed = shuffled(frames)
    # measured: 0.0042 (source), 0.0080 (shuffled, own flow), 0.0115 (shuffled, source flow)
    assert source < 0.75 * warp_error(mixed, source_flow(mixed)).mean
    assert source < 0.75 * warp_error(mixed, source_flow(frames)).mean


# --- the papers' forms: Lai et al.'s squared warp error, projected CLIP embeddings --------------

def test_squared_warp_error_matches_a_hand_computed_case():
    from sagvideo.metrics import PairFlow, pair_warp_error, pair_warp_error_sq

    # 2 x 4 frames; the flow moves every pixel one column right; only columns 0 and 2 are valid.
    # frame is black; next has R = G = 51 j in column j, so warp(next)(x) = next(x + 1) is
    # (0.2, 0.2, 0) at column 0 and (0.6, 0.6, 0) at column 2 in [0, 1] units.
    frame = np.zeros((2, 4, 3), np.uint8)
    nxt = np.zeros((2, 4, 3), np.uint8)
    nxt[..., 0] = nxt[..., 1] = np.array([0, 51, 102, 153], np.uint8)
    forward = np.zeros((2, 4, 2), np.float32)
    forward[..., 0] = 1.0
    valid = np.zeros((2, 4), bool)
    valid[:, [0, 2]] = True
    flow = PairFlow(forward, -forward, valid)
    # squared: per pixel sum over RGB: 0.04 + 0.04 = 0.08 and 0.36 + 0.36 = 0.72; mean 0.4
    assert pair_warp_error_sq(frame, nxt, flow) == pytest.approx(0.4, abs=1e-6)
    # absolute: mean over pixels and channels: (0.4 / 3 + 1.2 / 3) / 2
    assert pair_warp_error(frame, nxt, flow) == pytest.approx(1.6 / 6, abs=1e-6)
    assert pair_warp_error_sq(frame, nxt, PairFlow(forward, -forward, np.zeros((2, 4), bool))) is None


def test_squared_warp_error_of_a_clip_and_in_the_report():
    static = np.repeat(textured_clip(1, size=(16, 16)), 3, axis=0)  # no source motion: zero flow
    out = static.copy()
    out[1] = np.clip(out[0].astype(int) + np.array([51, 102, 0]), 0, 255).astype(np.uint8)
    flows = list(source_flow(static))
    got = warp_error(out, flows, squared=True).per_pair
    want = [float(np.square((out[t + 1].astype(float) - out[t]) / 255).sum(-1).mean()) for t in range(2)]
    assert got == pytest.approx(want, rel=1e-5)
    report = compute_metrics(out, static)
    assert report["warp_error_sq"] == pytest.approx(np.mean(want), rel=1e-5)
    assert report["warp_error_sq_source"] == 0.0 and report["per_frame"]["warp_error_sq"][0] is None


def test_clip_consistency_uses_the_projected_image_embedding_when_there_is_one():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from sagvideo.metrics.semantic import clip_embedding_kind

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=16)
    model = CLIPVisionModelWithProjection(config).eval()
    clip = textured_clip(3, size=(32, 32))
    pixels = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():  # frames already at the model's 32 px: the resize is the identity
        out = model(pixel_values=(pixels - mean) / std)
    cos = lambda e: torch.nn.functional.cosine_similarity(e[:-1], e[1:]).tolist()  # noqa: E731
    got = clip_consistency(clip, model).values
    assert clip_embedding_kind(model) == "projected" and out.image_embeds.shape == (3, 16)
    assert got == pytest.approx(cos(out.image_embeds), abs=1e-5)
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=(pixels - mean) / std).pooler_output
    assert got != pytest.approx(cos(pooled), abs=1e-5)
    assert compute_metrics(clip, clip, clip_model=model)["clip_consistency_embedding"] == "projected"
