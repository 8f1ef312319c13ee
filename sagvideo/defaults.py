"""Facts every layer shares, in one place and without torch: names, default models, the guided-step rule.

Config validation, the guidance core, the command line, the model presets and the batch
planner all import these; none keeps a copy.
"""

from __future__ import annotations

import math

# How the guidance gradient is taken through the n-step clean estimate (guidance/adjoint.py).
GRADIENT_METHODS = ("symplectic", "direct", "adjoint")
# The ODE solver of the clean estimate (guidance/euler.py, guidance/heun.py).
SCHEMES = ("euler", "heun")
# The sampler a run steps with (guidance/schedulers.py): DDIM, Euler (AnimateDiff-Lightning), LCM (AnimateLCM).
SCHEDULERS = ("ddim", "euler", "lcm")

# Hub ids of the default networks (users may give local folders instead).
DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
DEFAULT_CONTROLNET = "lllyasviel/control_v11f1p_sd15_depth"
DEFAULT_CLIP_VISION = "openai/clip-vit-base-patch32"
# IP-Adapter (image prompt) for SD 1.5 and the CLIP ViT-H/14 image encoder it was trained with,
# both in h94/IP-Adapter: the weight file and the encoder's subfolder inside that repo.
DEFAULT_IP_ADAPTER = "h94/IP-Adapter"
IP_ADAPTER_WEIGHT = "models/ip-adapter_sd15.safetensors"
DEFAULT_IMAGE_ENCODER = "h94/IP-Adapter"
IMAGE_ENCODER_SUBFOLDER = "models/image_encoder"
# Where the image prompt enters the UNet (models/ip_adapter.py maps each to attention blocks).
IP_ADAPTER_MODES = ("style", "style+layout", "all")
IP_ADAPTER_MAX_SCALE = 2.0

# Noise schedules (diffusers scheduler settings). The motion adapters were trained with the
# AnimateDiff recipe (SD 1.5 images use SD 1.5's own: configs/image.yaml).
ANIMATEDIFF_SCHEDULE = {"beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012,
                        "timestep_spacing": "linspace"}

# Frames the AnimateDiff v1.5 motion modules' position table holds (`motion_max_seq_length`).
MOTION_FRAME_LIMIT = 32


def guided_indices(start: float, end: float, num_steps: int) -> range:
    """Sampling step indices i (0 = noisiest) with `start <= i / num_steps < end`.

    Fractions make one setting transfer across step counts (the authors' image default,
    100 steps with start 0.3 and end 0.7, guides indices 30..69).
    """
    return range(math.ceil(start * num_steps - 1e-9), math.ceil(end * num_steps - 1e-9))


def guided_ns(start: float, end: float, num_steps: int, n: int, adaptive: bool) -> dict[int, int]:
    """Step index -> n of the guided steps: n everywhere, or with `adaptive` linear from n (first) down to 1 (last)."""
    steps = guided_indices(start, end, num_steps)
    if not adaptive or len(steps) < 2:
        return {i: n for i in steps}
    return {i: max(1, round(1 + (n - 1) * (steps[-1] - i) / (steps[-1] - steps[0]))) for i in steps}

# Checkpoint files a model key may name (safetensors; the rest are pickles, loaded weights-only).
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
CHECKPOINT_SUFFIXES = SAFE_SUFFIXES + PICKLE_SUFFIXES

# File names a job's outputs may take (outputs/names.py derives the rest from the main output).
DEPTH_CACHE_DIR = ".sagvideo-depth"  # estimated depth maps, cached beside the output
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v")  # containers the video writer makes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what `sagvideo image` writes
