"""Model-agnostic Symplectic Adjoint Guidance: eps functions and tensors, no diffusers."""

from .adjoint import METHODS, SCHEMES, GradientResult, clean_estimate, gradient, loss_and_lambda, sag_gradient
from .ddim import EstimateGrid, ddim_step, ddim_timesteps, estimate_grid, predict_x0, renoise
from .evals import CheckedEps, FiniteGuard, GradientCost
from .losses import GramStyleLoss, LatentStyleLoss, gram
from .protocols import EpsWithVJP, Evaluation, LossWithGradient, ReferencedEps
from .loop import (
    GuidedStep, GuidedStepRecord, SAGParams, SampleResult, StepCallback, ddim_sample, rms, run_loop, step_size,
    travel,
)
from .schedulers import SCHEDULERS, Sampler
from .windows import ContextWindows, WindowedEps, blend_weights, context_windows
from .methods.sag import guided_step, sample  # SAG's sampler; with no loss, plain DDIM

__all__ = [
    "METHODS", "SCHEMES", "CheckedEps", "ContextWindows", "EpsWithVJP", "EstimateGrid", "Evaluation",
    "FiniteGuard", "GradientCost", "GradientResult", "GramStyleLoss", "GuidedStep", "GuidedStepRecord",
    "LatentStyleLoss", "LossWithGradient", "ReferencedEps", "SAGParams", "SCHEDULERS", "Sampler", "SampleResult", "StepCallback", "WindowedEps",
    "blend_weights", "clean_estimate", "context_windows", "ddim_sample", "ddim_step", "ddim_timesteps", "estimate_grid",
    "gradient", "gram", "guided_step", "loss_and_lambda", "predict_x0", "renoise", "rms", "run_loop", "sag_gradient",
    "sample", "step_size", "travel",
]
