"""The proxy benchmark model: data, training code path, the committed checkpoint, CFG wrapper, style loss."""

import pytest
import torch

from sagvideo.errors import InputError
from sagvideo.guidance import sag_gradient
from sagvideo.proxy import (
    DEFAULT_CHECKPOINT, NULL_LABEL, ProxyEps, ProxyUNet, RandomGramLoss, UNetConfig, accuracy, digit_split,
    load_digit_images, load_proxy, proxy_alphas_cumprod, style_texture,
)
from sagvideo.proxy.evaluate import balanced_labels, sample_digits
from sagvideo.proxy.train import main as train_main

MAX_CHECKPOINT_BYTES = 5 * 1024 * 1024
# 20 samples (2 per digit) x 20 DDIM steps at CFG 3. Measured: the committed model scores 20/20
# (also with noise seeds 1-3; 100 samples x 50 steps: 0.86 / 0.98 / 0.99 at CFG 1 / 2 / 3), while
# untrained networks (init seeds 0-2, noise seeds 0-2) score 0.00-0.15, i.e. chance (0.1). 16/20
# leaves room for a few borderline samples to flip on another platform; 6/20 is far above chance.
SAMPLE_ACC_MIN = 0.8
UNTRAINED_ACC_MAX = 0.3


@pytest.fixture(scope="module")
def proxy():
    return load_proxy()


def _quick_sample_accuracy(model, classifier) -> float:
    labels = balanced_labels(2)
    images = sample_digits(model, labels, proxy_alphas_cumprod(), cfg_scale=3.0, steps=20, seed=0)
    return accuracy(classifier, images.clamp(-1, 1), labels)


def test_digits_are_16x16_in_range_with_a_fixed_disjoint_split():
    images, labels = load_digit_images()
    assert images.shape == (1797, 1, 16, 16) and images.dtype == torch.float32
    assert float(images.min()) == -1.0 and float(images.max()) == 1.0
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))
    a, b = digit_split(), digit_split()
    assert len(a.train_labels) + len(a.test_labels) == 1797 and len(a.test_labels) == 359
    assert torch.equal(a.test_images, b.test_images)  # seeded: the same split every time
    assert not torch.equal(digit_split(seed=1).test_labels, a.test_labels)


def test_schedule_is_ddpm_linear():
    a = proxy_alphas_cumprod()
    assert a.shape == (1000,) and a.dtype == torch.float64
    beta_1 = 1e-4 + (0.02 - 1e-4) / 999  # linspace(1e-4, 0.02, 1000)[1]
    assert float(a[0]) == pytest.approx(1 - 1e-4) and float(a[1]) == pytest.approx((1 - 1e-4) * (1 - beta_1))
    assert bool((a[1:] < a[:-1]).all()) and float(a[-1]) < 1e-4


def test_toy_training_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "toy.pt"
    meta = train_main(["--out", str(out), "--steps", "2", "--channels", "8", "--clf-epochs", "1",
                       "--eval-per-class", "0", "--log-every", "1"])
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == ["toy.pt"]  # no temporary left over
    loaded = load_proxy(out)
    assert loaded.model.config == UNetConfig(channels=8)
    assert loaded.meta["settings"]["steps"] == 2 and loaded.meta["final_train_loss"] == meta["final_train_loss"]
    for net in (loaded.model, loaded.classifier):
        assert not net.training and all(not p.requires_grad and p.dtype == torch.float32 for p in net.parameters())


def test_training_refuses_a_missing_output_folder_before_training(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        train_main(["--out", str(tmp_path / "absent" / "p.pt"), "--steps", "1"])


def test_a_missing_checkpoint_names_the_command_that_recreates_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m sagvideo\.proxy\.train --out"):
        load_proxy(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"damaged or not a proxy checkpoint.*python -m sagvideo\.proxy\.train"):
        load_proxy(tmp_path / "junk.pt")


def test_committed_checkpoint_is_small_and_its_record_holds(proxy):
    assert DEFAULT_CHECKPOINT.stat().st_size <= MAX_CHECKPOINT_BYTES
    meta = proxy.meta
    assert meta["num_parameters"] == sum(p.numel() for p in proxy.model.parameters()) <= 1_000_000
    data = digit_split()
    measured = accuracy(proxy.classifier, data.test_images, data.test_labels)
    assert measured == pytest.approx(meta["classifier_test_accuracy"])  # the weights round-trip
    assert meta["classifier_test_accuracy"] > 0.95
    assert torch.equal(proxy.alphas_cumprod, proxy_alphas_cumprod())


def test_cfg_samples_of_the_trained_model_are_recognised_and_untrained_ones_are_not(proxy):
    assert _quick_sample_accuracy(proxy.model, proxy.classifier) >= SAMPLE_ACC_MIN
    torch.manual_seed(0)
    untrained = ProxyUNet(proxy.model.config).eval().requires_grad_(False)
    assert _quick_sample_accuracy(untrained, proxy.classifier) <= UNTRAINED_ACC_MAX


def test_proxy_eps_is_batched_cfg_and_reports_the_branch_difference(proxy):
    torch.manual_seed(0)
    x, labels, w = torch.randn(3, 1, 16, 16), torch.tensor([1, 4, 7]), 2.5
    eps_fn = ProxyEps(proxy.model, labels, w)
    eps, diff = eps_fn.eps_with_reference(x, 500)
    eps_c = proxy.model(x, 500, labels)
    eps_u = proxy.model(x, 500, torch.full((3,), NULL_LABEL))
    assert eps.shape == diff.shape == x.shape
    assert torch.allclose(diff, eps_c - eps_u, atol=1e-5)
    assert torch.allclose(eps, eps_u + w * diff, atol=1e-5) and torch.equal(eps, eps_fn(x, 500))
    assert torch.allclose(ProxyEps(proxy.model, 4, 1.0)(x, 500), proxy.model(x, 500, torch.full((3,), 4)), atol=1e-5)
    with pytest.raises(ValueError, match="batch size"):
        eps_fn(torch.randn(2, 1, 16, 16), 500)
    with pytest.raises(ValueError, match="digits 0..9"):
        ProxyEps(proxy.model, 10, 2.0)


def test_random_gram_loss_is_zero_on_its_target_positive_elsewhere_and_differentiable():
    texture = style_texture()
    loss = RandomGramLoss(texture)
    assert float(loss(texture)) == 0.0
    digits = digit_split().test_images[:4].clone().requires_grad_(True)
    per_image = loss.per_image(digits)
    assert per_image.shape == (4,) and bool((per_image > 0).all())
    (grad,) = torch.autograd.grad(loss(digits), digits)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0
    assert float(RandomGramLoss(texture)(digits)) == float(loss(digits))  # fixed seed: the same function
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        loss(torch.zeros(1, 3, 16, 16))


def test_sag_gradient_runs_on_the_proxy(proxy):
    x_t = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    grad, value = sag_gradient(ProxyEps(proxy.model, torch.tensor([3, 8]), 3.0), x_t, 400, proxy.alphas_cumprod,
                               RandomGramLoss(), n=2, method="symplectic")
    assert grad.shape == x_t.shape and bool(torch.isfinite(grad).all()) and float(value) > 0
