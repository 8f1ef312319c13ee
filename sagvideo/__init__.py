"""sagvideo: restyle videos to match a reference image with Symplectic Adjoint Guidance.

The guidance core (`sagvideo.guidance`) is importable without diffusers; the pipeline entry
points are imported lazily so `import sagvideo` stays fast.
"""

from .lazy import lazy_getattr
from .guidance import GramStyleLoss, SAGParams, clean_estimate, sag_gradient, sample

__version__ = "0.1.0"

_LAZY = {
    "stylize_video": "sagvideo.pipeline",
    "stylize_image": "sagvideo.pipeline",
    "stylize_to_files": "sagvideo.outputs",
    "Runtime": "sagvideo.pipeline",
    "load_config": "sagvideo.config",
    "Config": "sagvideo.config",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["GramStyleLoss", "SAGParams", "clean_estimate", "sag_gradient", "sample", *_LAZY]
