"""The stylization job on arrays: networks in, frames and a report out. No file is read or written here.

The stages, in the order a run takes them (each its own module):

    runtime.Runtime            the networks, loaded on first use and shared across jobs (levers: memory levers)
    checks                     settings against the clip, before any model loads (torch-free)
    stylize.StylizePipeline    check_inputs -> prepare_depth (progress) -> prepare_image_prompt (image_prompt)
                               -> prepare_latents (noise) -> sample (denoiser, cfg_split, guidance/)
                               -> decode -> measure; memory_account counts what the gradient keeps
    report                     the report skeleton, stage timings and peak memory

`from sagvideo.pipeline import StylizePipeline` imports the stages on first use of the name, so
`sagvideo.pipeline.checks` stays light for the command line's early checks.
"""

from ..lazy import lazy_getattr

_LAZY = {"StylizePipeline": "sagvideo.pipeline.stylize", "Runtime": "sagvideo.pipeline.runtime"}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)
