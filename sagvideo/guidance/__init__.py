"""Model-agnostic Symplectic Adjoint Guidance: eps functions and tensors, no diffusers."""

from .adjoint import METHODS, SCHEMES, clean_estimate, loss_and_lambda, sag_gradient
from .ddim import EstimateGrid, ddim_step, ddim_timesteps, estimate_grid, predict_x0, renoise
from .evals import GradientCost
from .losses import GramStyleLoss, LatentStyleLoss, gram
from .sag import SAGParams, GuidedStepRecord, SampleResult, guided_step, rms, sample, step_size

__all__ = [
    "METHODS", "SCHEMES", "EstimateGrid", "GradientCost", "GramStyleLoss", "GuidedStepRecord",
    "LatentStyleLoss", "SAGParams", "SampleResult", "clean_estimate", "ddim_step", "ddim_timesteps",
    "estimate_grid", "gram", "guided_step", "loss_and_lambda", "predict_x0", "renoise", "rms",
    "sag_gradient", "sample", "step_size",
]
