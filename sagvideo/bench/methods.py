"""One row of `sagvideo bench methods`: a guidance method on the trained proxy model, measured the same way.

Two tasks on `sagvideo.proxy` (class-conditional 16x16 digits, DDIM, classifier-free guidance):

* style: `RandomGramLoss` toward its stripe texture on digits sampled with CFG 3; the score is
  the Gram distance of the final sample (lower is better);
* class: the proxy classifier's cross-entropy `-log p(y | x0)` toward the asked-for digit on
  samples with a weak condition (CFG 1, no amplification).

Quality is judged by `proxy.judge` (held out: an MLP trained on digits the guide classifier never
saw); the guide classifier's own accuracy is kept beside it. A row keeps every seed's loss and
judge verdict, so rows on the same seeds can be compared pair by pair (`paired`). Each row runs
in a child process (`python -m sagvideo.bench methods JSON`), so peak memory (sampled resident
size above the loaded model) is that row's own. All `seeds` samples run as one batch, sample b
from seed b; SAG's step size is normalised over the whole batch, as in the pipeline.
`method_sweep` decides which rows run (sweeps, controls, matched compute).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

STEPS = 10  # sampling steps (--steps): 4 of them guided
SEEDS = 32  # samples per row (--seeds)
CFG = {"style": 3.0, "class": 1.0}
STRENGTH = 0.2  # relative to CFG, the FreeDoM / SAG default (guidance.strength)
MATCH_N = 4  # SAG's n whose evaluations + VJPs the other methods are matched to


class ProxyClasses:
    """The proxy as a `ClassConditional` model: eps_for_class and classify, counting the images it predicts."""

    def __init__(self, proxy: Any):
        self.proxy, self.images = proxy, 0

    def eps_for_class(self, x, t, labels):
        import torch

        from ..guidance.methods import UNCONDITIONAL
        from ..proxy import NULL_LABEL

        self.images += x.shape[0]
        labels = torch.where(labels == UNCONDITIONAL, torch.full_like(labels, NULL_LABEL), labels)
        return self.proxy.model(x, t, labels)

    def classify(self, x0):
        return self.proxy.classifier(x0)


class CountingEps:
    """A `ReferencedEps` around the CFG predictor that counts its calls without / with a graph."""

    def __init__(self, inner: Any):
        self.inner, self.evals, self.evals_graph = inner, 0, 0

    def eps_with_reference(self, x, t):
        import torch

        if torch.is_grad_enabled() and x.requires_grad:
            self.evals_graph += 1
        else:
            self.evals += 1
        return self.inner.eps_with_reference(x, t)

    def __call__(self, x, t):
        return self.eps_with_reference(x, t)[0]


def _params(task: str, n: int, passes: int | None = None):
    """The shared knobs; `passes` None: each method's default."""
    from ..guidance import SAGParams

    return SAGParams(strength=STRENGTH * CFG[task], start=0.3, end=0.7, n=n, passes=passes)


def _run(proxy, task: str, method: str, x_T, labels, steps: int, n: int, knobs: dict):
    """(final samples, counting eps or None, records, network images or None) of one method."""
    import torch

    from ..guidance import ddim_timesteps, sample
    from ..guidance.methods import ClassifierLoss, sample_gfcg
    from ..method_registry import METHODS
    from ..proxy import NUM_TRAIN_TIMESTEPS, ProxyEps, RandomGramLoss

    timesteps = ddim_timesteps(NUM_TRAIN_TIMESTEPS, steps)
    eps = CountingEps(ProxyEps(proxy.model, labels, CFG[task]))
    loss_fn = RandomGramLoss() if task == "style" else ClassifierLoss(proxy.classifier, labels)
    gen = torch.Generator().manual_seed(0)
    if method == "none":
        return sample(eps, x_T, proxy.alphas_cumprod, timesteps).x0, eps, [], None
    if method == "gfcg":
        model = ProxyClasses(proxy)
        own = {k.split(".", 1)[1]: v for k, v in knobs.items() if k.startswith("gfcg.")}
        out = sample_gfcg(model, x_T, proxy.alphas_cumprod, timesteps, labels=labels, cfg_scale=CFG[task],
                          params=_params(task, 1), settings=METHODS["gfcg"].settings(**own))
        return out.x0, None, out.records, model.images
    shared = {k.split(".", 1)[1]: v for k, v in knobs.items() if k.startswith("guidance.")}
    own = {k.split(".", 1)[1]: v for k, v in knobs.items() if not k.startswith("guidance.")}
    entry = METHODS[method]
    params = dataclasses.replace(_params(task, n), **shared)
    out = entry.sampler(eps, x_T, proxy.alphas_cumprod, timesteps, loss_fn=loss_fn, params=params,
                  settings=entry.settings(**own), generator=gen)
    return out.x0, eps, out.records, None


def _significant(value: Any, digits: int = 5) -> float:
    """A float kept to `digits` significant digits (the class task's cross-entropy spans decades)."""
    return float(f"{float(value):.{digits}g}")


def measure_method(task: str, method: str, setting: str, steps: int, seeds: int, n: int = MATCH_N,
                   knobs: dict | None = None) -> dict[str, Any]:
    """One row: run `method` on `task` for `seeds` samples; score (mean, sd and per seed), the guide
    classifier's and the held-out judge's accuracy (per seed too), counts, peak memory, seconds."""
    import torch

    from ..guidance.methods import ClassifierLoss
    from ..proxy import RandomGramLoss, load_proxy
    from ..proxy.evaluate import balanced_labels
    from ..proxy.judge import load_judge
    from .memory import PeakMemory

    proxy, (judge, _) = load_proxy(), load_judge()
    labels = balanced_labels(-(-seeds // 10))[:seeds]
    x_T = torch.stack([torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(s)) for s in range(seeds)])
    with PeakMemory(torch.device("cpu")) as mem:
        start = time.perf_counter()
        x0, eps, records, images = _run(proxy, task, method, x_T, labels, steps, n, knobs or {})
        seconds = time.perf_counter() - start
    with torch.no_grad():
        per_sample = (RandomGramLoss().per_image(x0) if task == "style"
                      else ClassifierLoss(proxy.classifier, labels).per_sample(x0))
        guide_right = proxy.classifier(x0.clamp(-1, 1)).argmax(dim=1) == labels
        judge_right = judge(x0.clamp(-1, 1)).argmax(dim=1) == labels
    evals = eps.evals + eps.evals_graph if eps is not None else images / (2 * seeds)  # in CFG (2B) batches
    vjps = sum(r.cost.get("vjps", 0) for r in records)
    return {"task": task, "method": method, "setting": setting, "n": n if method == "sag" else None,
            "knobs": ", ".join(f"{k}={v}" for k, v in (knobs or {}).items()) or "-",
            "loss_mean": _significant(per_sample.mean()), "loss_std": _significant(per_sample.std()),
            "accuracy": round(float(guide_right.float().mean()), 3),
            "judge_accuracy": round(float(judge_right.float().mean()), 3),
            "loss_per_seed": [_significant(v, 7) for v in per_sample],
            "judge_per_seed": [int(v) for v in judge_right],
            "evals": evals, "evals_graph": eps.evals_graph if eps else 0,
            "vjps": vjps, "peak_mem_mb": round(mem.peak_mb, 1), "seconds": round(seconds, 2),
            "seeds": seeds, "steps": steps}


def matched_knob(method: str, budget: float, task: str, steps: int) -> int:
    """The largest value of the method's `match_knob` whose evaluations + VJPs stay within `budget`."""
    from ..method_registry import METHODS, UNGUIDED_STEP

    entry = METHODS[method]
    if entry.whole_chain:  # iterations over the S-step chain, then the plain chain once more
        return max(0, int((budget - steps * UNGUIDED_STEP.calls) // entry.cost(steps).calls))
    guided = len(_params(task, 1).guided_indices(steps))
    per_pass = entry.cost(1).calls  # the matched methods take the one-step estimate
    return max(1, int((budget - (steps - guided) * UNGUIDED_STEP.calls) // (guided * per_pass)))


def measure_in_process(kind: str, params: dict) -> dict:
    """`run_child`'s signature, measured in this process (tests; no separate peak memory)."""
    return measure_method(**params)
