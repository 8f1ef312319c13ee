"""Guidance methods: FreeDoM is SAG n = 1, MPGD never differentiates the network, DOODL's chain gradient
is exact, UG's backward step descends, every method runs on video shapes / windows / chunked losses
seeded, the class methods work on the proxy, the registry and config sections, and the benchmark."""

import argparse
import dataclasses

import pytest
import torch

from sagvideo.method_registry import METHODS, PIPELINE_METHODS, PassCost
from sagvideo.bench.methods import ProxyClasses, matched_knob, measure_in_process
from sagvideo.bench.method_sweep import bench_methods
from sagvideo.config import load_config
from sagvideo.errors import ConfigError
from sagvideo.guidance import (
    CheckedEps, GradientCost, SAGParams, WindowedEps, context_windows, ddim_step, ddim_timesteps, sample,
)
from sagvideo.guidance.methods import (
    ClassifierLoss, backward_guidance, chain_gradient, chain_grid, sample_cg, sample_freedom, sample_gfcg,
    sample_mpgd,
)
from sagvideo.method_registry import DOODLSettings, MPGDSettings, UGSettings

STEPS = ddim_timesteps(1000, 6)
# cheap settings; MPGD at SAG's step size (its official 75 x overshoots the toy network)
FAST = {"ug": UGSettings(backward_steps=2), "doodl": DOODLSettings(iterations=2),
        "mpgd": MPGDSettings(scale=1.0)}


def sd_alphas(dtype=torch.float64):
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).to(dtype)


class ToyNet(torch.nn.Module):
    """A nonlinear, timestep-dependent, frame-mixing noise predictor on (B, 4, F, h, w)."""

    def __init__(self, seed, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = torch.nn.Conv3d(4, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv3d(8, 4, 3, padding=1)
        self.to(dtype).requires_grad_(False)

    def forward(self, x, t):
        return torch.tanh(self.conv2(torch.nn.functional.silu(self.conv1(x) * (1 + t / 1000)))) + 0.05 * x * x


class ToyCFG:
    """A `ReferencedEps`: eps_u + 2 (eps_c - eps_u), the reference eps_c - eps_u; counts graph calls."""

    def __init__(self, dtype=torch.float32):
        self.cond, self.uncond, self.graph_calls = ToyNet(0, dtype), ToyNet(1, dtype), 0

    def eps_with_reference(self, x, t):
        self.graph_calls += int(torch.is_grad_enabled() and x.requires_grad)
        e_c, e_u = self.cond(x, t), self.uncond(x, t)
        return e_u + 2.0 * (e_c - e_u), e_c - e_u

    def __call__(self, x, t):
        return self.eps_with_reference(x, t)[0]


class ChunkedLoss:
    """A `LossWithGradient`: mean over frames of a nonconvex per-frame loss, gradient frame by frame."""

    def __init__(self, like):
        self.target, self.grads = torch.randn(like.shape, generator=torch.Generator().manual_seed(3)).to(like), 0

    def per_frame(self, x0, f):
        return ((torch.sin(x0[:, :, f]) - self.target[:, :, f]) ** 2).mean()

    def __call__(self, x0):
        return torch.stack([self.per_frame(x0, f) for f in range(x0.shape[2])]).mean()

    def value_and_grad(self, x0):
        self.grads += 1
        total, grad = 0.0, torch.zeros_like(x0)
        for f in range(x0.shape[2]):
            leaf = x0.detach().requires_grad_(True)
            with torch.enable_grad():
                value = self.per_frame(leaf, f) / x0.shape[2]
                grad += torch.autograd.grad(value, leaf)[0]
            total += float(value)
        return torch.tensor(total), grad


class NoGraphWindows(WindowedEps):
    """A windowed predictor whose forward must never build a graph (differentiation only through vjp)."""

    def eps_with_reference(self, x, t):
        assert not (torch.is_grad_enabled() and x.requires_grad), "a graph was held across windows"
        return super().eps_with_reference(x, t)


def windowed(net):
    return NoGraphWindows(lambda xw, t, spans: net.eps_with_reference(xw, t), context_windows(6, 4, 2))


def video(seed=0, dtype=torch.float32):
    return torch.randn(1, 4, 6, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def run(name, eps_fn, x_T, loss_fn, **kw):
    params = kw.pop("params", SAGParams(strength=1.0, n=2, passes=2))
    return METHODS[name].sampler(eps_fn, x_T, sd_alphas(), STEPS, loss_fn=loss_fn, params=params,
                                  settings=FAST.get(name), generator=torch.Generator().manual_seed(7), **kw)


def test_registry_names_the_pipeline_methods_and_the_config_sections():
    assert PIPELINE_METHODS == ("sag", "freedom", "ug", "mpgd", "doodl")
    sections = load_config(None).to_dict()
    assert {m.section for m in METHODS.values() if m.pipeline and m.section} == {"ug", "mpgd", "doodl"} <= set(sections)


def test_freedom_is_sag_with_n1_bit_for_bit():
    eps, x_T = ToyCFG(), video()
    loss = ChunkedLoss(x_T)
    params = SAGParams(strength=1.0, n=4, passes=2)
    got = sample_freedom(eps, x_T, sd_alphas(), STEPS, loss_fn=loss, params=params,
                         generator=torch.Generator().manual_seed(5))
    want = sample(eps, x_T, sd_alphas(), STEPS, loss_fn=loss, params=dataclasses.replace(params, n=1),
                  generator=torch.Generator().manual_seed(5))
    assert torch.equal(got.x0, want.x0) and [r.n for r in got.records] == [1] * len(want.records)


def test_mpgd_never_differentiates_the_network():
    eps, x_T = ToyCFG(), video()
    result = sample_mpgd(eps, x_T, sd_alphas(), STEPS, loss_fn=ChunkedLoss(x_T), params=SAGParams(passes=3),
                         settings=MPGDSettings(scale=1.0))
    assert eps.graph_calls == 0 and len(result.records) == 3 * len(SAGParams().guided_indices(len(STEPS)))
    assert all(r.cost["vjps"] == 0 and r.cost["eps_evals_graph"] == 0 and r.cost["eps_evals"] == 1
               for r in result.records)


def test_doodl_full_chain_symplectic_gradient_equals_autograd_float64():
    eps, ac = ToyCFG(torch.float64), sd_alphas()
    x_T, loss = video(1, torch.float64), ChunkedLoss(video(1, torch.float64))
    cost = GradientCost()
    checked = CheckedEps(eps, cost)
    value, grad, _ = chain_gradient(checked, checked, x_T, chain_grid(STEPS, ac), loss)
    leaf = x_T.clone().requires_grad_(True)
    x, alphas = leaf, [float(ac[t]) for t in STEPS] + [1.0]
    for k, t in enumerate(STEPS):
        x = ddim_step(x, eps(x, t), alphas[k], alphas[k + 1])
    (expected,) = torch.autograd.grad(loss(x), leaf)
    assert float((grad - expected).norm() / expected.norm()) < 1e-10 and float(value) == pytest.approx(float(loss(x)))
    s = len(STEPS)  # one graph at a time: 2S - 1 evaluations (the last forward one keeps its graph), S VJPs
    assert (cost.eps_evals, cost.eps_evals_graph, cost.vjps) == (s - 1, s, s)


def test_doodl_moves_x_T_keeping_each_samples_norm():
    eps, x_T = ToyCFG(), torch.randn(2, 4, 6, 4, 4, generator=torch.Generator().manual_seed(2))
    plain, seen = ChunkedLoss(x_T), {}  # a plain callable: autograd for the loss gradient
    result = run("doodl", eps, x_T, lambda x: plain(x), on_step=lambda i, t, x, x0, l: seen.setdefault(i, x))
    norms = lambda x: x.flatten(1).norm(dim=1)  # noqa: E731
    assert torch.allclose(norms(seen[0]), norms(x_T), rtol=1e-5) and not torch.equal(seen[0], x_T)
    assert [r.iteration for r in result.records] == [0, 1]


def test_ug_backward_guidance_lowers_a_convex_loss():
    center = torch.randn(2, 4, 6, 4, 4, generator=torch.Generator().manual_seed(4))
    loss = lambda x: ((x - center) ** 2).sum()  # noqa: E731
    x0 = torch.zeros_like(center)
    delta = backward_guidance(loss, x0, steps=5, lr=0.1)
    assert float(loss(x0 + delta)) < float(loss(x0)) and float(delta.abs().max()) <= 0.5 + 1e-6


@pytest.mark.parametrize("name", PIPELINE_METHODS)
@pytest.mark.parametrize("kind", ["referenced", "windowed"])
def test_every_method_runs_on_video_seeded_with_costs(name, kind):
    net, x_T = ToyCFG(), video()
    eps = net if kind == "referenced" else windowed(net)
    first, second = (run(name, eps, x_T, ChunkedLoss(x_T)) for _ in range(2))
    assert first.x0.shape == x_T.shape and bool(torch.isfinite(first.x0).all())
    assert torch.equal(first.x0, second.x0)  # same seed, same bytes
    assert first.records and all({"eps_evals", "eps_evals_graph", "vjps"} <= set(r.cost) for r in first.records)
    if name != "mpgd":
        assert sum(r.cost["vjps"] for r in first.records) > 0
    assert not torch.equal(first.x0, sample(eps, x_T, sd_alphas(), STEPS).x0)


def test_every_method_gets_its_loss_gradient_from_value_and_grad():
    for name in PIPELINE_METHODS:
        net, x_T = ToyCFG(), video()
        loss = ChunkedLoss(x_T)
        run(name, net, x_T, loss)
        assert loss.grads > 0, name


def test_bad_settings_and_inputs_are_named():
    net, x_T = ToyCFG(), video()
    with pytest.raises(TypeError, match="UGSettings"):
        METHODS["ug"].sampler(net, x_T, sd_alphas(), STEPS, loss_fn=ChunkedLoss(x_T), params=SAGParams(),
                               settings=MPGDSettings())
    with pytest.raises(ValueError, match="strictly from high to low"):
        METHODS["mpgd"].sampler(net, x_T, sd_alphas(), STEPS[::-1], loss_fn=ChunkedLoss(x_T), params=SAGParams())
    with pytest.raises(ValueError, match="symplectic"):
        run("doodl", net, x_T, ChunkedLoss(x_T), params=SAGParams(gradient="adjoint"))


def test_method_config_sections_take_overrides_and_name_unknown_keys():
    config = load_config(None, {"ug.backward_steps": 5, "doodl": {"iterations": 3}})
    assert config.ug.backward_steps == 5 and config.doodl.iterations == 3 and config.mpgd == MPGDSettings()
    with pytest.raises(ConfigError, match="did you mean 'ug.backward_steps'"):
        load_config(None, {"ug.backward_step": 5})
    with pytest.raises(ConfigError, match="guidance.passes"):
        load_config(None, {"guidance.passes": 0})


@pytest.fixture(scope="module")
def proxy():
    from sagvideo.proxy import load_proxy

    return load_proxy()


def test_cg_and_gfcg_raise_class_accuracy_on_the_proxy(proxy):
    from sagvideo.proxy import ProxyEps
    from sagvideo.proxy.evaluate import balanced_labels

    labels = balanced_labels(2)  # 20 samples from the unconditional model (CFG 0): chance accuracy
    x_T = torch.randn(20, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    eps, ac = ProxyEps(proxy.model, labels, 0.0), proxy.alphas_cumprod
    accuracy = lambda x: float((proxy.classifier(x.clamp(-1, 1)).argmax(1) == labels).float().mean())  # noqa: E731
    params = SAGParams(passes=1)
    unguided = accuracy(sample(eps, x_T, ac, STEPS).x0)
    cg = accuracy(sample_cg(eps, x_T, ac, STEPS, loss_fn=ClassifierLoss(proxy.classifier, labels), params=params).x0)
    model = ProxyClasses(proxy)
    gfcg = sample_gfcg(model, x_T, ac, STEPS, labels=labels, cfg_scale=0.0, params=params)
    assert unguided <= 0.3 and cg >= 0.8 and accuracy(gfcg.x0) >= 0.8, (unguided, cg, accuracy(gfcg.x0))
    assert all(r.cost["vjps"] == 0 and r.cost["classifier_calls"] == 1 for r in gfcg.records)
    again = sample_gfcg(ProxyClasses(proxy), x_T, ac, STEPS, labels=labels, cfg_scale=0.0, params=params)
    assert torch.equal(gfcg.x0, again.x0)


def cheap_rows(kind, params):
    """Every row in this process."""
    return measure_in_process(kind, params)


def test_a_small_methods_benchmark_produces_every_row(monkeypatch, tmp_path):
    import sagvideo.bench.method_sweep as sweep

    # two sweep points per method keep it fast; the row structure is what is tested
    monkeypatch.setattr(sweep, "RELATIVE_STRENGTHS", (0.0, 1.0))
    monkeypatch.setattr(sweep, "SWEEPS", {
        "style": {m: (k, None if v is None else v[:2], f, z) for m, (k, v, f, z) in sweep.SWEEPS["style"].items()},
        "class": {m: (k, None if v is None else v[:2], f, z) for m, (k, v, f, z) in sweep.SWEEPS["class"].items()}})
    monkeypatch.setattr(sweep, "SAG_NS", (1,))
    monkeypatch.setattr(sweep, "PAPER_DEFAULTS", ("mpgd",))
    plot = tmp_path / "fronts.png"
    rows = bench_methods(argparse.Namespace(steps=2, seeds=2, plot=str(plot)), run=cheap_rows, log=lambda s: None)
    got = {(r["task"], r["method"], r.get("role")) for r in rows}
    for task, methods in sweep.SWEEPS.items():
        assert {(task, "none", "control"), (task, "sag", "control")} <= got
        assert {(task, m, "sweep") for m in methods} <= got
        budget = next(r["evals"] + r["vjps"] for r in rows if r["task"] == task and r["role"] == "control"
                      and r["method"] == "sag")
        for m in methods:
            points = [r for r in rows if r["task"] == task and r["method"] == m and r.get("role") == "sweep"]
            assert len(points) == 2 and sum(bool(p.get("best")) for p in points) == 1
            best = next(p for p in points if p.get("best"))
            assert best["paired"]["vs_own_control"]["seeds"] == 2 and ("vs_sag_best" in best["paired"]) == (m != "sag")
            if METHODS[m].match_knob:  # matched compute: within SAG n = 4's evaluations + VJPs
                assert all(p["evals"] + p["vjps"] <= budget for p in points), points
    assert {("style", "sag", "n"), ("style", "mpgd", "defaults")} <= got
    for r in rows:
        assert r["seeds"] == 2 and len(r["loss_per_seed"]) == 2 and len(r["judge_per_seed"]) == 2
        assert r["evals"] > 0 and r["loss_std"] >= 0 and 0 <= r["judge_accuracy"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from sagvideo.bench.report_table import methods_markdown

    table = methods_markdown(rows)  # README's table, made from the rows
    assert all(f"`{m}`" in table for task in sweep.SWEEPS.values() for m in task) and "Peak memory" in table


def test_best_point_and_pareto_front_by_hand():
    from sagvideo.bench.method_sweep import best_point
    from sagvideo.bench.pareto_plot import pareto_front

    pts = [{"sweep_value": 0.0, "loss_mean": 9.0, "judge_accuracy": 1.0},
           {"sweep_value": 1.0, "loss_mean": 7.0, "judge_accuracy": 1.0},
           {"sweep_value": 2.0, "loss_mean": 6.0, "judge_accuracy": 0.9},
           {"sweep_value": 4.0, "loss_mean": 8.0, "judge_accuracy": 0.5}]
    assert best_point(pts, floor=0.95)["sweep_value"] == 1.0  # 2.0 is lower but loses the digit
    assert best_point(pts, floor=0.85)["sweep_value"] == 2.0
    assert [p["sweep_value"] for p in pareto_front(pts)] == [2.0, 1.0]  # 0.0 and 4.0 are dominated


@pytest.mark.parametrize("name", [*PIPELINE_METHODS, "cg"])
def test_registry_cost_per_pass_is_what_each_sampler_does(name):
    """The registry's costs (progress bar, batch order, matched benchmark) are the samplers' counts."""
    net, x_T = ToyCFG(), video()
    result = run(name, net, x_T, ChunkedLoss(x_T))
    entry, params = METHODS[name], SAGParams(strength=1.0, n=2, passes=2)
    counted = [(r.cost["eps_evals"], r.cost["eps_evals_graph"], r.cost["vjps"]) for r in result.records]
    n = len(STEPS) if entry.whole_chain else (1 if "n" not in entry.uses else params.n)
    cost = entry.cost(n)
    assert counted == [(cost.evaluations, cost.graph_evaluations, cost.vjps)] * len(counted), name
    passes = FAST["doodl"].iterations if entry.whole_chain else params.passes_for(name) * len(params.guided_ns(len(STEPS)))
    assert len(counted) == passes


def test_only_methods_that_scale_by_strength_are_off_at_strength_zero():
    assert not METHODS["sag"].guides(0.0) and not METHODS["ug"].guides(0.0)
    assert METHODS["doodl"].guides(0.0) and METHODS["cg"].guides(0.0)
    ug, doodl = METHODS["ug"].run_cost(10, {4: 1, 5: 1}, None), METHODS["doodl"].run_cost(10, {4: 1}, None)
    assert ug == PassCost(graph_evaluations=12, vjps=12, evaluations=8)  # 6 passes x 2 guided steps, 8 plain steps
    assert doodl.evaluations == 50 * 9 + 10 and doodl.vjps == 50 * 10  # 50 iterations of the chain, then the chain


def test_a_pipeline_benchmark_row_runs_a_shipped_configs_sampler_and_counts_its_costs(one_torch_thread):
    """`sagvideo bench pipeline --configs`: one row in this process (each row is a child process there)."""
    from sagvideo.bench.pipeline import SAMPLES, measure_pipeline
    from sagvideo.schedule_settings import cfg_off

    row = measure_pipeline("tiny", 2, 2, True, 64, "cpu", str(SAMPLES / "clip.mp4"), str(SAMPLES / "style.png"),
                           {"video.size": 64, "output.metrics": False}, config_name="lightning")
    lightning = load_config("lightning").sampling
    assert (row["config"], row["scheduler"], row["cfg_scale"], row["steps"]) == (
        "lightning", lightning.scheduler, lightning.cfg_scale, 2)
    assert row["guided_steps"] == [1] and row["vjps"] > 0 and row["devices"] == 1
    assert row["branch_evaluations"] == row["network_evaluations"] * (1 if cfg_off(lightning.cfg_scale) else 2)
