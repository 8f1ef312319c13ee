"""Model-agnostic Symplectic Adjoint Guidance: eps functions and tensors, no diffusers."""

from .adjoint import METHODS, SCHEMES, GradientResult, clean_estimate, gradient, loss_and_lambda, sag_gradient
from .ddim import EstimateGrid, ddim_step, ddim_timesteps, estimate_grid, predict_x0, renoise
from .evals import CheckedEps, FiniteGuard, GradientCost
from .losses import GramStyleLoss, LatentStyleLoss, gram
from .protocols import EpsWithVJP, Evaluation, LossWithGradient, ReferencedEps
from .sag import GuidedStep, GuidedStepRecord, SAGParams, SampleResult, guided_step, rms, sample, step_size
from .windows import ContextWindows, WindowedEps, blend_weights, context_windows

__all__ = [
    "METHODS", "SCHEMES", "CheckedEps", "ContextWindows", "EpsWithVJP", "EstimateGrid", "Evaluation",
    "FiniteGuard", "GradientCost", "GradientResult", "GramStyleLoss", "GuidedStep", "GuidedStepRecord",
    "LatentStyleLoss", "LossWithGradient", "ReferencedEps", "SAGParams", "SampleResult", "WindowedEps",
    "blend_weights", "clean_estimate", "context_windows", "ddim_step", "ddim_timesteps", "estimate_grid",
    "gradient", "gram", "guided_step", "loss_and_lambda", "predict_x0", "renoise", "rms", "sag_gradient",
    "sample", "step_size",
]
