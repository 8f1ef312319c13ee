"""The Gram style loss on CLIP features and its chunked latent wrapper."""

import pytest
import torch

from sagvideo.guidance import GramStyleLoss, LatentStyleLoss, gram
from sagvideo.guidance.losses import CLIP_MEAN, CLIP_STD
from sagvideo.models.components import tiny_components


@pytest.fixture(scope="module")
def clip():
    return tiny_components(seed=0, video=False).clip_vision


def test_gram_is_features_transpose_times_features():
    f = torch.randn(2, 5, 3)
    assert torch.allclose(gram(f)[1], f[1].T @ f[1])


def test_style_image_itself_has_zero_loss_and_frames_are_averaged(clip):
    torch.manual_seed(0)
    style = torch.rand(3, 40, 56)
    loss = GramStyleLoss(clip, style, layer=3)
    assert float(loss(style[None])) < 1e-3 * float(loss(torch.rand(1, 3, 40, 56)))
    frames = torch.rand(3, 3, 32, 32)
    per_frame = loss.per_frame(frames)
    assert per_frame.shape == (3,) and torch.allclose(loss(frames), per_frame.mean())


def test_features_use_clip_normalisation_and_the_chosen_block_without_cls(clip):
    loss = GramStyleLoss(clip, torch.rand(3, 32, 32), layer=3)
    image = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    expected = clip(pixel_values=(image - mean) / std, output_hidden_states=True).hidden_states[3][:, 1:]
    assert torch.allclose(loss.features(image), expected, atol=1e-6)
    with pytest.raises(ValueError, match="layer must be between 1 and 4"):
        GramStyleLoss(clip, torch.rand(3, 32, 32), layer=9)


def test_chunked_value_and_grad_equals_autograd_of_the_whole(clip):
    torch.manual_seed(1)
    decoder = torch.nn.Conv2d(4, 3, 1).double()
    frame_loss = GramStyleLoss(clip, torch.rand(3, 32, 32))
    wrapped = LatentStyleLoss(lambda z: torch.tanh(decoder(z.double())).float(), frame_loss, chunk=2)
    latents = torch.randn(1, 4, 5, 32, 32)  # (B, C, F, h, w): 5 frames in chunks of 2
    leaf = latents.clone().requires_grad_(True)
    expected_value = wrapped(leaf)
    (expected_grad,) = torch.autograd.grad(expected_value, leaf)
    value, grad = wrapped.value_and_grad(latents)
    assert torch.allclose(value, expected_value.detach(), rtol=1e-5)
    assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("layer", [1, 3, 4])
def test_the_truncated_encoder_gives_the_full_models_loss(clip, layer):
    """Only the first `layer` blocks run; the loss equals the one on the full model's hidden states."""
    style, frames = torch.rand(3, 40, 56), torch.rand(2, 3, 48, 48)
    loss = GramStyleLoss(clip, style, layer=layer)

    def full_features(images):
        x = torch.nn.functional.interpolate(images, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
        mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return clip(pixel_values=(x - mean) / std, output_hidden_states=True).hidden_states[layer][:, 1:]

    expected = (gram(full_features(frames)) - gram(full_features(style[None]))[0]).flatten(1).norm(dim=1)
    assert torch.allclose(loss.per_frame(frames), expected, rtol=1e-5)
    blocks = []
    hooks = [b.register_forward_hook(lambda *a: blocks.append(1)) for b in getattr(clip, "vision_model", clip).encoder.layers]
    try:
        loss(frames)
    finally:
        for h in hooks:
            h.remove()
    assert len(blocks) == layer  # the later blocks never ran
