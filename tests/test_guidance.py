"""The guidance core: exact symplectic gradients, costs, determinism, and input errors."""

import math

import pytest
import torch

from sagvideo.errors import NonFiniteError
from sagvideo.guidance import (
    GradientCost, SAGParams, clean_estimate, ddim_step, ddim_timesteps, estimate_grid,
    guided_step, predict_x0, sag_gradient, sample,
)


def sd_alphas(dtype=torch.float64):
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).to(dtype)


class TinyVideoEps(torch.nn.Module):
    """A small noise predictor with real nonlinearity, timestep dependence and frame mixing."""

    def __init__(self, dtype):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv3d(4, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv3d(16, 4, 3, padding=1)
        self.to(dtype)

    def forward(self, x, t):
        h = torch.nn.functional.silu(self.conv1(x) * (1 + t / 1000))
        return torch.tanh(self.conv2(h)) + 0.05 * x * x


def style_like_loss(target):
    return lambda x0: ((torch.sin(x0) - target) ** 2).mean() + (x0.mean(dim=2) ** 2).mean()


def setup(dtype):
    torch.manual_seed(1)
    x = torch.randn(1, 4, 3, 8, 8, dtype=dtype)
    return TinyVideoEps(dtype), x, style_like_loss(torch.randn_like(x)), sd_alphas()


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("scheme", ["euler", "heun"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_symplectic_matches_direct(scheme, dtype, tol):
    net, x, loss, ac = setup(dtype)
    for n in (1, 2, 4, 8):
        g_direct, l_direct = sag_gradient(net, x, 700, ac, loss, n=n, method="direct", scheme=scheme)
        g_sym, l_sym = sag_gradient(net, x, 700, ac, loss, n=n, method="symplectic", scheme=scheme)
        assert g_sym.shape == x.shape and g_sym.dtype == dtype
        assert rel(g_sym, g_direct) <= tol, (scheme, n, rel(g_sym, g_direct))
        assert torch.allclose(l_sym, l_direct)
        assert g_direct.norm() > 0


def test_n1_is_autograd_through_one_step_estimate():
    net, x, loss, ac = setup(torch.float64)
    leaf = x.clone().requires_grad_(True)
    expected = torch.autograd.grad(loss(predict_x0(leaf, net(leaf, 500), float(ac[500]))), leaf)[0]
    got, _ = sag_gradient(net, x, 500, ac, loss, n=1)
    assert rel(got, expected) < 1e-12


def test_continuous_adjoint_is_approximate_and_converges():
    net, x, loss, ac = setup(torch.float64)
    errors = []  # O(h); its constant grows with the noise level, so t = 500 shows it at small n
    for n in (2, 4, 8, 16):
        exact, _ = sag_gradient(net, x, 500, ac, loss, n=n, method="direct")
        sym, _ = sag_gradient(net, x, 500, ac, loss, n=n, method="symplectic")
        adj, _ = sag_gradient(net, x, 500, ac, loss, n=n, method="adjoint")
        assert rel(adj, exact) > 1e3 * max(rel(sym, exact), 1e-15)
        errors.append(rel(adj, exact))
    assert all(b < 0.8 * a for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("scheme,evals", [("euler", lambda n: n), ("heun", lambda n: 2 * n - 1)])
def test_symplectic_keeps_the_last_graph_and_wastes_no_evaluation(scheme, evals):
    net, x, loss, ac = setup(torch.float64)
    for n in (1, 4, 8):
        cost = GradientCost()
        sag_gradient(net, x, 700, ac, loss, n=n, scheme=scheme, cost=cost)
        # forward: evals(n) predictions, the last one with its graph; backward: the others re-run
        assert cost.as_dict() == {"eps_evals": evals(n) - 1, "eps_evals_graph": evals(n), "vjps": evals(n)}
    # the caller's prediction at (x_t, t) is reused, not recomputed
    cost = GradientCost()
    with torch.no_grad():
        first = net(x, 700)
    sag_gradient(net, x, 700, ac, loss, n=4, first=first, cost=cost)
    assert cost.eps_evals == 2 and cost.eps_evals_graph == 4 and cost.vjps == 4


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_a_guided_pass_costs_2n_minus_1_evaluations_and_n_vjps(n):
    net, x, loss, ac = setup(torch.float64)
    calls = []

    def counted(z, t):
        calls.append(torch.is_grad_enabled())
        return net(z, t)

    _, (record,) = guided_step(counted, x, 700, float(ac[650]), ac, loss, SAGParams(n=n, passes=1), n=n)[:2]
    assert len(calls) == 2 * n - 1  # the network really ran 2n - 1 times
    assert record.cost == {"eps_evals": n - 1, "eps_evals_graph": n, "vjps": n}
    assert sum(calls) == n  # n of them built a graph, one per VJP
    # n = 1: the one evaluation at x_t makes the DDIM step, sets rho and is differentiated


def test_kept_graph_gives_the_same_step_as_recomputing():
    net, x, loss, ac = setup(torch.float64)
    for n in (1, 3):
        params = SAGParams(n=n, passes=1)
        kept = guided_step(net, x, 600, float(ac[560]), ac, loss, params, n=n)
        # cond_only-style call (a separate gradient network) shares nothing: every evaluation is fresh
        fresh = guided_step(net, x, 600, float(ac[560]), ac, loss, params, n=n, grad_eps_fn=lambda z, t: net(z, t))
        assert rel(kept.x_prev, fresh.x_prev) < 1e-12 and torch.allclose(kept.x0_hat, fresh.x0_hat)


def test_clean_estimate_grid_ends_clean_and_counts_evaluations():
    ac = sd_alphas()
    grid = estimate_grid(800, 4, ac)
    assert grid.timesteps == (800, 600, 400, 200) and grid.alphas[-1] == 1.0
    assert estimate_grid(2, 8, ac).timesteps == (2, 1, 0)  # too few timesteps: repeats dropped
    net, x, _, _ = setup(torch.float64)
    one = clean_estimate(net, x, 800, ac, n=1)
    assert torch.allclose(one, predict_x0(x, net(x, 800), float(ac[800])))
    assert torch.allclose(ddim_step(x, net(x, 800), float(ac[800]), 1.0), one)


def test_guided_sampling_is_seeded_and_bit_identical():
    net, x, loss, ac = setup(torch.float32)
    params = SAGParams(strength=1.0, start=0.2, end=0.8, n=2, passes=2)
    timesteps = ddim_timesteps(1000, 6)

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return sample(net, x, ac, timesteps, loss_fn=loss, params=params, generator=gen)

    a, b = run(0), run(0)
    assert torch.equal(a.x0, b.x0)
    assert len(a.records) == len(params.guided_indices(6)) * 2
    assert not torch.equal(a.x0, run(1).x0)  # repeats draw their noise from the caller's generator
    plain = sample(net, x, ac, timesteps)
    assert not torch.equal(a.x0, plain.x0)  # guidance changes the result


def test_time_travel_uses_callers_generator_and_a_stateless_step():
    net, x, loss, ac = setup(torch.float32)
    params = SAGParams(n=2, passes=3)
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state()
    first, recs, _ = guided_step(net, x, 500, float(ac[460]), ac, loss, params, n=2, generator=gen)
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is untouched
    assert not torch.equal(gen.get_state(), state)  # ... the caller's generator was used
    gen.set_state(state)
    again = guided_step(net, x, 500, float(ac[460]), ac, loss, params, n=2, generator=gen).x_prev
    assert torch.equal(first, again)  # stateless: same input and generator state, same output
    assert [r.repeat for r in recs] == [0, 1, 2] and all(r.rho > 0 for r in recs)


def test_step_size_is_normalised_by_the_cfg_difference():
    net, x, loss, ac = setup(torch.float64)

    class CFGEps:
        def __call__(self, x, t):
            return self.eps_with_reference(x, t)[0]

        def eps_with_reference(self, x, t):
            e = net(x, t)
            return e, 0.25 * torch.ones_like(e)

    params = SAGParams(strength=2.0, n=1, passes=1)
    x_prev, (rec,), _ = guided_step(CFGEps(), x, 500, float(ac[450]), ac, loss, params, n=1)
    g, _ = sag_gradient(CFGEps(), x, 500, ac, loss, n=1)
    rms_g = float(g.pow(2).mean().sqrt())
    assert math.isclose(rec.rho, 2.0 * 0.25 / rms_g, rel_tol=1e-9)
    unguided = ddim_step(x, net(x, 500), float(ac[500]), float(ac[450]))
    assert torch.allclose(unguided - x_prev, rec.rho * g)


def test_schedule_fractions_and_adaptive_n():
    params = SAGParams(start=0.3, end=0.7, n=4)
    assert list(params.guided_indices(100)) == list(range(30, 70))  # the authors' image default
    adaptive = SAGParams(start=0.3, end=0.7, n=8, adaptive_n=True)
    ns = list(adaptive.guided_ns(100).values())
    assert ns[0] == 8 and ns[-1] == 1 and ns == sorted(ns, reverse=True)
    assert ddim_timesteps(1000, 25)[:2] == [961, 921] and ddim_timesteps(1000, 25)[-1] == 1


class TestBadInput:
    def setup_method(self):
        self.net, self.x, self.loss, self.ac = setup(torch.float64)

    def call(self, **kw):
        args = dict(eps_fn=self.net, x_t=self.x, t=500, alphas_cumprod=self.ac, loss_fn=self.loss)
        args.update(kw)
        eps_fn, x_t, t, ac, loss_fn = (args.pop(k) for k in ("eps_fn", "x_t", "t", "alphas_cumprod", "loss_fn"))
        return sag_gradient(eps_fn, x_t, t, ac, loss_fn, **args)

    @pytest.mark.parametrize("n", [0, -1, 1.5, True])
    def test_n(self, n):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            self.call(n=n)

    @pytest.mark.parametrize("t", [-1, 1000])
    def test_t_outside_schedule(self, t):
        with pytest.raises(ValueError, match="outside the schedule.*0 to 999"):
            self.call(t=t)

    def test_t_not_an_integer(self):
        with pytest.raises(TypeError, match="t must be an integer timestep"):
            self.call(t=500.0)

    def test_unknown_method_and_scheme(self):
        with pytest.raises(ValueError, match="unknown method 'exact'.*symplectic, direct, adjoint"):
            self.call(method="exact")
        with pytest.raises(ValueError, match="unknown scheme 'rk4'"):
            self.call(scheme="rk4")

    def test_eps_wrong_shape(self):
        with pytest.raises(ValueError, match="eps_fn returned .*same shape as x"):
            self.call(eps_fn=lambda x, t: x[:, :2])

    def test_eps_not_callable_and_alphas_not_1d(self):
        with pytest.raises(TypeError, match="eps_fn must be callable"):
            self.call(eps_fn=3)
        with pytest.raises(TypeError, match="alphas_cumprod must be a non-empty 1-D"):
            self.call(alphas_cumprod=self.ac[None])

    def test_non_scalar_loss(self):
        with pytest.raises(ValueError, match="loss_fn must return a scalar.*mean"):
            self.call(loss_fn=lambda x0: x0.sum(dim=1))

    def test_nan_loss(self):
        with pytest.raises(NonFiniteError, match="guidance loss contains NaN"):
            self.call(loss_fn=lambda x0: x0.sum() * float("nan"))

    def test_nan_in_a_step_names_the_step(self):
        def eps_fn(x, t):
            e = self.net(x, t)
            return e * float("nan") if t == 250 else e

        with pytest.raises(NonFiniteError, match=r"estimate step 1 \(timestep 250\)"):
            self.call(eps_fn=eps_fn, n=2)

    def test_nan_gradient_names_the_step(self):
        def eps_fn(x, t):  # adds 0 with an infinite derivative (sqrt at 0) at timestep 250 only
            e = self.net(x, t)
            return e + torch.sqrt(torch.abs(x - x.detach())) if t == 250 else e

        with pytest.raises(NonFiniteError, match="adjoint after the VJP of estimate step 1"):
            self.call(eps_fn=eps_fn, n=2)
