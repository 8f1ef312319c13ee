"""`gfcg`: gradient-free classifier guidance (Shenoy et al., "Gradient-Free Classifier Guidance for
Diffusion Model Sampling", arXiv 2411.15393, 2024), for class-conditional models only.

At each guided step the classifier, in inference mode only, reads the clean estimate of the
classifier-free-guided prediction and picks a reference class (the most likely class other
than the target: the one the sample is being confused with) and a time-adaptive scale; the
update contrasts the target's prediction with the reference's, like CFG contrasts it with the
unconditional one:

    eps = eps_u + w (eps_c - eps_u)                          (CFG, w = cfg_scale)
    p = softmax(classify(x0_hat(eps)));  ref = argmax_{k != y} p_k
    w_t = scale * p_ref / (p_y + p_ref)                      (per sample)
    eps_hat = eps + w_t (eps_c - eps_ref);   x_{t-1} = DDIM(x_t, eps_hat)

No gradients anywhere. The paper's exact scale formula could not be read here (only its
abstract was available): the contrast with a classifier-chosen reference class and a scale
that grows with the classifier's confusion are from the abstract; the formula for w_t is
ours. Costs per guided step: the CFG pair (one 2B evaluation), the reference branch (one B
evaluation) and one classifier call. Shapes: x (B, ...); labels (B,).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...method_registry import GFCGSettings
from ..ddim import ddim_step, predict_x0
from ..loop import (
    GuidedStep, GuidedStepRecord, RecordCallback, SAGParams, SampleResult, StepCallback, check_inputs, run_loop,
)
from .classes import UNCONDITIONAL, ClassConditional


class ClassCFG:
    """The CFG noise predictor of a `ClassConditional` model: a `ReferencedEps` (x (B, ...), labels (B,))."""

    def __init__(self, model: ClassConditional, labels: Tensor, cfg_scale: float):
        self.model, self.labels, self.cfg_scale = model, labels, float(cfg_scale)

    def branches(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """(eps_c, eps_u) from one batched call of 2B samples."""
        labels = self.labels.to(x.device)
        both = torch.cat([labels, torch.full_like(labels, UNCONDITIONAL)])
        eps_c, eps_u = self.model.eps_for_class(torch.cat([x, x]), t, both).chunk(2)
        return eps_c, eps_u

    def eps_with_reference(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        eps_c, eps_u = self.branches(x, t)
        return eps_u + self.cfg_scale * (eps_c - eps_u), eps_c - eps_u

    def __call__(self, x: Tensor, t: int) -> Tensor:
        return self.eps_with_reference(x, t)[0]


def reference_classes(logits: Tensor, labels: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """(reference class (B,), w_t (B,), p_target (B,)) from classifier logits (B, K) and targets (B,)."""
    probs = logits.float().softmax(dim=1)
    p_target = probs.gather(1, labels[:, None])[:, 0]
    others = probs.scatter(1, labels[:, None], -1.0)  # the target can never be its own reference
    p_ref, ref = others.max(dim=1)
    return ref, scale * p_ref / (p_target + p_ref), p_target


def sample_gfcg(model: ClassConditional, x_T: Tensor, alphas_cumprod: Tensor, timesteps: list[int], *,
                labels: Tensor, cfg_scale: float, params: SAGParams | None = None,
                settings: GFCGSettings | None = None, on_step: StepCallback | None = None,
                on_record: RecordCallback | None = None) -> SampleResult:
    """GFCG on the steps `params` guides (every step when None); plain CFG elsewhere."""
    settings = check_inputs(x_T, alphas_cumprod, timesteps, settings, GFCGSettings, needs_loss=False)
    if not isinstance(model, ClassConditional):
        raise TypeError(f"gfcg needs a class-conditional model with eps_for_class(x, t, labels) and classify(x0); "
                        f"got {type(model).__name__}. It does not apply to text-conditioned models.")
    labels = torch.as_tensor(labels, dtype=torch.long).to(x_T.device)
    if labels.shape != (x_T.shape[0],):
        raise ValueError(f"labels must be (B,) = ({x_T.shape[0]},) target classes, got shape {tuple(labels.shape)}.")
    timesteps = list(timesteps)
    eps_fn = ClassCFG(model, labels, cfg_scale)
    guided = set(range(len(timesteps))) if params is None else set(params.guided_indices(len(timesteps)))

    def guided_step(i: int, t: int, x_t: Tensor, a_t: float, a_prev: float) -> GuidedStep:
        with torch.inference_mode():
            eps_c, eps_u = eps_fn.branches(x_t, t)
            eps = eps_u + eps_fn.cfg_scale * (eps_c - eps_u)
            x0_hat = predict_x0(x_t, eps, a_t)
            ref, w_t, p_target = reference_classes(model.classify(x0_hat), labels, settings.scale)
            eps_ref = model.eps_for_class(x_t, t, ref)
            w = w_t.to(eps.dtype).view(-1, *([1] * (x_t.dim() - 1)))
            eps_hat = eps + w * (eps_c - eps_ref)
            x_prev = ddim_step(x_t, eps_hat, a_t, a_prev).clone()
            x0_guided = predict_x0(x_t, eps_hat, a_t).clone()
        loss = float(-p_target.clamp_min(1e-12).log().mean())
        record = GuidedStepRecord(i, t, 0, 1, loss, float(w_t.mean()),
                                  {"eps_evals": 2, "eps_evals_graph": 0, "vjps": 0, "classifier_calls": 1})
        if on_record is not None:
            on_record(record)
        return GuidedStep(x_prev, [record], x0_guided)

    return run_loop(eps_fn, x_T, alphas_cumprod, timesteps, guided, guided_step, on_step)
