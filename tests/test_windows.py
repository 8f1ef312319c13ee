"""Context windows: weights, the one-window case, and the exact windowed guidance gradient."""

import pytest
import torch

from sagvideo.guidance import SAGParams, WindowedEps, context_windows, ddim_timesteps, sag_gradient, sample
from sagvideo.guidance.windows import window_spans


def sd_alphas():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


class FrameMixingEps(torch.nn.Module):
    """A toy motion model: mixes frames (temporal conv + attention-like mean), nonlinear in x and t."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(4, 4, 3, padding=1).double()

    def forward(self, x, t):
        h = torch.tanh(self.conv(x) * (1 + t / 1000))
        return h + 0.1 * x.mean(dim=2, keepdim=True) * torch.sin(x)


def window_fn_of(net, log=None):
    def window_fn(xs, t, spans):
        if log is not None:
            log.append((xs.shape[0], xs.shape[2], torch.is_grad_enabled() and xs.requires_grad))
        e = net(xs, t)
        return e, e

    return window_fn


@pytest.mark.parametrize("frames,size,overlap", [(40, 16, 4), (17, 16, 4), (33, 8, 3), (64, 16, 8), (10, 4, 0)])
def test_blend_weights_sum_to_one_and_rise_smoothly(frames, size, overlap):
    windows = context_windows(frames, size, overlap)
    assert all(abs(s - 1.0) < 1e-12 for s in windows.frame_weight_sums())
    assert windows.spans[0][0] == 0 and windows.spans[-1][1] == frames
    assert all(stop - start == size for start, stop in windows.spans)
    for (start, stop), weights in zip(windows.spans, windows.weights):
        assert min(weights) > 0
        if start > 0 and overlap:  # an interior left edge rises across the overlap
            ramp = weights[:overlap]
            assert list(ramp) == sorted(ramp) and ramp[0] < 0.5


def test_one_window_when_the_window_holds_the_clip():
    assert window_spans(16, 16, 4) == [(0, 16)] and window_spans(16, 0, 0) == [(0, 16)]
    assert context_windows(12, 16, 4).weights == ((1.0,) * 12,)
    with pytest.raises(ValueError, match="overlap must be between 0 and the window size - 1 \\(15\\)"):
        window_spans(40, 16, 16)


def test_a_single_window_is_exactly_the_joint_prediction():
    net = FrameMixingEps()
    x = torch.randn(1, 4, 12, 6, 6, dtype=torch.float64)
    windowed = WindowedEps(window_fn_of(net), context_windows(12, 16, 4))
    assert torch.equal(windowed(x, 500), net(x, 500))


@pytest.mark.parametrize("batch", [1, 3])
def test_windowed_gradient_equals_autograd_through_the_windowed_eps(batch):
    """The symplectic adjoint with per-window VJPs is the exact gradient of the windowed sampler."""
    net = FrameMixingEps()
    torch.manual_seed(2)
    x = torch.randn(1, 4, 20, 6, 6, dtype=torch.float64)
    target = torch.randn_like(x)
    loss = lambda x0: ((torch.sin(x0) - target) ** 2).mean()  # noqa: E731
    ac = sd_alphas()
    log = []
    windowed = WindowedEps(window_fn_of(net, log), context_windows(20, 8, 3), batch=batch)
    assert len(windowed.windows) == 4
    for n in (1, 3):
        direct, l_direct = sag_gradient(windowed, x, 700, ac, loss, n=n, method="direct")
        log.clear()
        sym, l_sym = sag_gradient(windowed, x, 700, ac, loss, n=n, method="symplectic")
        assert float((sym - direct).norm() / direct.norm()) < 1e-10 and torch.allclose(l_sym, l_direct)
        graphs = [(k, frames) for k, frames, grad in log if grad]
        assert graphs and max(k for k, _ in graphs) <= batch and {f for _, f in graphs} == {8}  # one group at a time


def test_windowed_sampling_is_deterministic_and_differs_from_joint():
    net = FrameMixingEps()
    x = torch.randn(1, 4, 20, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ac, steps = sd_alphas(), ddim_timesteps(1000, 5)
    loss = lambda x0: (x0 ** 2).mean()  # noqa: E731
    windowed = WindowedEps(window_fn_of(net), context_windows(20, 8, 3))
    params = SAGParams(n=2, passes=2, start=0.2, end=0.8)

    def run():
        return sample(windowed, x, ac, steps, loss_fn=loss, params=params,
                      generator=torch.Generator().manual_seed(4)).x0

    assert torch.equal(run(), run())
    assert not torch.equal(run(), sample(net, x, ac, steps, loss_fn=loss, params=params,
                                         generator=torch.Generator().manual_seed(4)).x0)
