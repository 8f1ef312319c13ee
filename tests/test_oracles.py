"""Tests whose expected values come from outside the code under test.

* DDIM steps and timesteps against diffusers' `DDIMScheduler` (both schedules the project uses);
* the Heun clean estimate against a reference written here in the ODE variables;
* every guidance method on a toy problem with a known answer: a Gaussian data model (its exact
  noise prediction is `eps(x, t) = sqrt(1 - a_t) x`) and a convex loss `|x0 - target|^2`; the
  guided sample must land nearer the target than the unguided one from the same noise, so a
  flipped update sign or a wrong target term fails;
* SAG's guided step against a step built here with autograd through a hand-written n-step chain.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from sagvideo.config import load_config
from sagvideo.guidance import SAGParams, clean_estimate, ddim_step, ddim_timesteps, guided_step, predict_x0, sample
from sagvideo.guidance.methods import ClassifierLoss, sample_gfcg
from sagvideo.method_registry import METHODS
from sagvideo.method_registry import CGSettings, DOODLSettings, MPGDSettings, UGSettings


def schedules():
    """(diffusers scheduler config, steps) for the video schedule (defaults) and the image one (configs/image.yaml)."""
    for name in ("video", "image"):
        s = load_config(name).sampling
        yield name, {"beta_schedule": s.beta_schedule, "beta_start": s.beta_start, "beta_end": s.beta_end,
                     "timestep_spacing": s.timestep_spacing, "steps_offset": 1 if s.timestep_spacing == "leading" else 0,
                     "clip_sample": False, "set_alpha_to_one": True}, 25


@pytest.mark.parametrize("name,config,steps", list(schedules()))
def test_ddim_steps_and_timesteps_match_diffusers(name, config, steps):
    scheduler = DDIMScheduler(num_train_timesteps=1000, **config)
    scheduler.set_timesteps(steps)
    assert ddim_timesteps(1000, steps, spacing=config["timestep_spacing"]) == scheduler.timesteps.tolist(), name
    ac = scheduler.alphas_cumprod.double()
    gen = torch.Generator().manual_seed(0)
    for t in scheduler.timesteps.tolist():
        x, eps = (torch.randn(2, 4, 3, 8, 8, generator=gen, dtype=torch.float64) for _ in range(2))
        want = scheduler.step(eps, t, x, eta=0.0)
        prev = t - 1000 // steps  # diffusers' previous timestep; below 0 it steps to alpha-bar 1
        a_prev = float(ac[prev]) if prev >= 0 else 1.0
        # diffusers keeps alpha-bar in float32 and computes its coefficients in it: float32 tolerances
        torch.testing.assert_close(ddim_step(x, eps, float(ac[t]), a_prev), want.prev_sample, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(predict_x0(x, eps, float(ac[t])), want.pred_original_sample, rtol=1e-5, atol=1e-6)


def sd_alphas():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def bent_eps(x, t):
    """A nonlinear, timestep-dependent noise predictor (any shape)."""
    return torch.tanh(x * (1 + t / 1000)) + 0.1 * x


@pytest.mark.parametrize("n", [1, 2, 4])
def test_heun_estimate_matches_a_reference_written_in_the_ode_variables(n):
    ac, t = sd_alphas(), 700
    x = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    points = sorted({round(t * (n - k) / n) for k in range(n)}, reverse=True)
    alphas = [float(ac[s]) for s in points] + [1.0]
    sigma = [math.sqrt((1 - a) / a) for a in alphas]
    y = x / math.sqrt(alphas[0])  # y = x / sqrt(a), dy/dsigma = eps(x, t)
    for k, s in enumerate(points):
        h = sigma[k + 1] - sigma[k]
        d1 = bent_eps(math.sqrt(alphas[k]) * y, s)
        if k == len(points) - 1:  # onto the clean end: Euler
            y = y + h * d1
        else:
            d2 = bent_eps(math.sqrt(alphas[k + 1]) * (y + h * d1), points[k + 1])
            y = y + h * (d1 + d2) / 2
    got = clean_estimate(bent_eps, x, t, ac, n=n, scheme="heun")
    torch.testing.assert_close(got, y * math.sqrt(alphas[-1]), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ every method on a convex toy

STEPS = ddim_timesteps(1000, 10)
TARGET = torch.full((1, 4, 2, 4, 4), 0.5, dtype=torch.float64)


class GaussianEps:
    """The exact noise prediction for data ~ N(0, I): x_t ~ N(0, I) too and eps = sqrt(1 - a_t) x_t."""

    def __init__(self):
        self.ac = sd_alphas()

    def __call__(self, x, t):
        return math.sqrt(1.0 - float(self.ac[t])) * x


def distance_loss(x0):
    return ((x0 - TARGET) ** 2).sum()


def toward_target(name, settings=None, params=None):
    """(distance of the guided sample to the target, of the unguided one), from the same noise."""
    eps, x_T = GaussianEps(), torch.randn(TARGET.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    params = params or SAGParams(strength=0.5, start=0.2, end=0.8, n=2, passes=1)
    guided = METHODS[name].sampler(eps, x_T, eps.ac, STEPS, loss_fn=distance_loss, params=params, settings=settings,
                                   generator=torch.Generator().manual_seed(0)).x0
    plain = sample(eps, x_T, eps.ac, STEPS).x0
    return float((guided - TARGET).norm()), float((plain - TARGET).norm())


@pytest.mark.parametrize("name,settings", [
    ("sag", None), ("freedom", None),
    ("ug", UGSettings(backward_steps=0)),  # forward guidance alone
    ("ug", UGSettings(forward_scale=0.0, backward_steps=3, backward_lr=0.05)),  # backward guidance alone
    ("mpgd", MPGDSettings(scale=1.0)),
    ("cg", CGSettings(scale=0.2)),
    ("doodl", DOODLSettings(iterations=4, clip=0.05, perturbation=0.0)),
])
def test_every_method_moves_the_sample_toward_the_target(name, settings):
    guided, plain = toward_target(name, settings)
    assert guided < 0.95 * plain, (name, guided, plain)


class GaussianClasses:
    """K classes, class k's data N(mu_k, I): eps = sqrt(1 - a_t) (x - sqrt(a_t) mu_k) is exact for
    each (the unconditional label gets N(mean of the mu_k, I)); the classifier prefers the nearest mean."""

    def __init__(self, means, ac):
        self.means, self.ac = means, ac

    def eps_for_class(self, x, t, labels):
        a = float(self.ac[t])
        mu = torch.stack([self.means.mean(0) if int(k) < 0 else self.means[int(k)] for k in labels])
        return math.sqrt(1 - a) * (x - math.sqrt(a) * mu)

    def classify(self, x0):
        return -torch.cdist(x0.flatten(1), self.means.flatten(1)) ** 2


def test_gfcg_moves_samples_toward_the_target_class():
    means = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.5]], dtype=torch.float64).view(3, 2, 1, 1)
    model, ac = GaussianClasses(means, sd_alphas()), sd_alphas()
    x_T = torch.randn(6, 2, 1, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    probability = lambda x0: float(-ClassifierLoss(model.classify, labels)(x0))  # noqa: E731 (log p of the targets)
    params = SAGParams(start=0.0, end=1.0)
    guided = sample_gfcg(model, x_T, ac, STEPS, labels=labels, cfg_scale=0.0, params=params).x0
    plain = sample_gfcg(model, x_T, ac, STEPS, labels=labels, cfg_scale=0.0, params=SAGParams(start=0.0, end=0.0)).x0
    assert probability(guided) > probability(plain) + 1.0, (probability(guided), probability(plain))


# ------------------------------------------------------------------ SAG's step against autograd

def hand_built_sag_step(x, t, t_prev, n, strength=0.5):
    """x0_hat by n DDIM steps written here, g by autograd, rho = strength RMS(eps) / RMS(g), one DDIM step - rho g."""
    eps, ac = GaussianEps(), sd_alphas()
    leaf = x.clone().requires_grad_(True)
    points = [round(t * (n - k) / n) for k in range(n)]
    alphas = [float(ac[s]) for s in points] + [1.0]
    y = leaf
    for k, s in enumerate(points):
        e = eps(y, s)
        y = math.sqrt(alphas[k + 1]) * (y - math.sqrt(1 - alphas[k]) * e) / math.sqrt(alphas[k]) \
            + math.sqrt(1 - alphas[k + 1]) * e
    (g,) = torch.autograd.grad(distance_loss(y), leaf)
    e_t, a_t, a_prev = eps(x, t), float(ac[t]), float(ac[t_prev])
    rho = strength * e_t.pow(2).mean().sqrt() / g.pow(2).mean().sqrt()
    return math.sqrt(a_prev) * (x - math.sqrt(1 - a_t) * e_t) / math.sqrt(a_t) + math.sqrt(1 - a_prev) * e_t - rho * g


@pytest.mark.parametrize("n", [2, 4])
def test_sags_guided_step_and_sampler_take_the_gradient_through_n_ddim_steps(n):
    """A sampler that dropped to the one-step estimate (n forced to 1) takes another step."""
    eps, ac, t, t_prev = GaussianEps(), sd_alphas(), 601, 501
    x = torch.randn(TARGET.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    want = hand_built_sag_step(x, t, t_prev, n)
    got = guided_step(eps, x, t, float(ac[t_prev]), ac, distance_loss, SAGParams(strength=0.5, n=n, passes=1), n=n)
    torch.testing.assert_close(got.x_prev, want, rtol=1e-9, atol=1e-9)
    seen = {}
    params = SAGParams(strength=0.5, start=0.0, end=0.5, n=n, passes=1)  # of the steps [601, 501], the first
    METHODS["sag"].sampler(eps, x, ac, [t, t_prev], loss_fn=distance_loss, params=params,
                           on_step=lambda i, t, x_t, x0, loss: seen.setdefault(i, x_t))
    torch.testing.assert_close(seen[1], want, rtol=1e-9, atol=1e-9)
