"""sagvideo: restyle videos to match a reference image with Symplectic Adjoint Guidance.

High-level API (paths in; results or files out):

    import sagvideo
    config = sagvideo.load_config("video", {"video.frames": "all"})
    result = sagvideo.stylize_video("in.mp4", "style.png", config=config)   # a prompt is optional
    report = sagvideo.stylize_to_files("in.mp4", "style.png", "a dancer, oil painting", "out.mp4", config=config)

- `stylize_video(video, style, prompt=None, config=...)`: frames (F, H, W, 3) uint8 at the source size + report;
  the style image enters as an image prompt (IP-Adapter, `ip_adapter.*`) and through the guidance.
- `stylize_to_files(video, style, prompt, output, config=...)`: writes the mp4, report, contact sheet
  (over several processes when `distributed.*` asks, see `sagvideo.distributed`).
- `stylize_image(prompt, style, config=...)`: the one-frame case.
- `load_config(files, overrides)`: defaults <- YAML configs <- overrides, validated.
- `read_video_clip(video, config)`, `load_style_image(path)`: a clip's frames at model size and a
  style image as a tensor, the inputs of `StylizePipeline`.
- `StylizePipeline`: the same job on arrays, stage by stage (check_inputs, prepare_depth,
  prepare_image_prompt, prepare_latents, sample, decode), for library users who bring their own frames.
- `sag_gradient`, `sample`, `SAGParams`, `GramStyleLoss`: the model-agnostic guidance core.

Importing the package is light: torch, diffusers and the rest load on first use of a name.
"""

from .lazy import lazy_getattr
from .version import package_version

__version__ = package_version()

_LAZY = {
    "stylize_video": "sagvideo.api",
    "stylize_image": "sagvideo.api",
    "stylize_to_files": "sagvideo.distributed",
    "stylize_image_to_file": "sagvideo.api",
    "read_video_clip": "sagvideo.api",
    "load_style_image": "sagvideo.images",
    "StylizePipeline": "sagvideo.pipeline",
    "StylizeResult": "sagvideo.results",
    "Runtime": "sagvideo.pipeline.runtime",
    "load_config": "sagvideo.config",
    "Config": "sagvideo.config",
    "sag_gradient": "sagvideo.guidance",
    "clean_estimate": "sagvideo.guidance",
    "sample": "sagvideo.guidance",
    "SAGParams": "sagvideo.guidance",
    "GramStyleLoss": "sagvideo.guidance",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
