"""The stylization job on arrays, as stages a reader can follow and a caller can run one by one.

    pipe = StylizePipeline.from_config(config)
    inputs = pipe.check_inputs(frames, style, prompt)      # uint8 (F, H, W, 3) at model size
    depth = pipe.prepare_depth(inputs.frames)              # (F, H, W) in [0, 1], clip-normalised
    image_prompt = pipe.prepare_image_prompt(inputs.style)  # IP-Adapter image embedding (None at scale 0)
    latents = pipe.prepare_latents(inputs.num_frames, inputs.size, seed=0)   # (1, 4, F, H/8, W/8)
    sampled = pipe.sample(latents, depth, inputs.style, prompt, seed=0,      # SAG on the guided steps
                          image_prompt=image_prompt)
    frames = pipe.decode(sampled.latents)                  # uint8 (F, H, W, 3)

or all of it with `pipe(frames, style, prompt)`. Files stay outside: `api.py` reads the inputs, and
`outputs.JobFiles` writes the files. An image is the same call with F = 1 (no motion module). Clips longer than
`video.window` frames are sampled through overlapping context windows (`guidance.windows`).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .checks import check_frame_settings
from ..config import Config
from ..defaults import MOTION_FRAME_LIMIT
from ..errors import ConfigError, InputError
from .denoiser import ControlCache, DepthControlledEps, decode_frames, decode_latents, encode_frames
from ..guidance import (
    ContextWindows, GramStyleLoss, LatentStyleLoss, SAGParams, WindowedEps, context_windows,
    sample,
)
from .cfg_split import SplitCFGEps, wants_split
from ..guidance.ddim import estimate_grid
from ..guidance.schedulers import Sampler
from .image_prompt import ImagePrompt, off_report
from .levers import applied_levers
from .memory_account import MemoryAccount
from ..method_registry import METHODS
from ..results import StepCallback, StylizeResult
from ..models.components import Components, alphas_cumprod_from_config
from ..models.loss_decoder import tiny_decode
from ..models.saved_bytes import decoder_bytes, unet_vjp_bytes, wants_checkpointing
from .noise import initial_noise
from .progress import ProgressDepth, SamplingProgress
from .report import Stopwatch, base_report, peak_memory_mb
from .runtime import Runtime
from ..schedule_settings import cfg_off, describe_sampler
from ..video.depth import clip_depth, depth_to_control_image


@dataclass
class StylizeInputs:
    """Checked inputs: frames (F, H, W, 3) uint8 at model size (None: an image without a depth
    photo), size (W, H), style (3, h, w) float32 in [0, 1], optional depth (F, H, W) in [0, 1]."""

    frames: np.ndarray | None
    size: tuple[int, int]
    num_frames: int
    style: torch.Tensor
    prompt: str | None
    depth: np.ndarray | None = None


@dataclass
class Sampled:
    """Clean latents (1, C, F, h, w), one record per guided pass, the windows, where it stopped."""

    latents: torch.Tensor
    records: list[dict[str, Any]]
    windows: ContextWindows
    timesteps: list[int]
    stopped_at: int | None = None
    evaluations: dict[str, int] = field(default_factory=dict)
    levers: dict[str, Any] = field(default_factory=dict)  # the gradient's memory levers as they ran


def sag_params(config: Config) -> SAGParams:
    """The guidance core's parameters; `guidance.strength` is relative to the CFG scale (authors' code)."""
    g = config.guidance
    return SAGParams(strength=g.strength * config.sampling.cfg_scale, start=g.start, end=g.end, n=g.n,
                     adaptive_n=g.adaptive_n, passes=g.passes, gradient=g.gradient, scheme=g.scheme)


def prompt_text(prompt: str | None) -> str:
    """The text the conditional branch reads: the prompt, or "" when there is none (None or blank)."""
    return prompt.strip() if prompt is not None else ""


def describe_prompt(prompt: str | None, negative_prompt: str) -> dict[str, Any]:
    """The report's `prompt` entry: the text used, or that there was none and what CFG then compares."""
    text = prompt_text(prompt)
    if text:
        return {"text": text, "negative": negative_prompt}
    return {"text": None, "negative": negative_prompt,
            "note": "no prompt: the text condition is empty and classifier-free guidance compares it against "
                    "the negative prompt" + (" (also empty)" if not negative_prompt else "")}


COND_ONLY_NOTE = ("guidance.cond_only: the gradient is taken through the conditional prediction alone, so the "
                  "clean estimate the style loss sees follows the conditional ODE, not the CFG one")


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> uint8 (H, W, 3)."""
    return (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


class StylizePipeline:
    """Stylize F frames toward a style image: depth -> latents -> guided sampling -> frames.

    Built from a `Runtime` (networks, loaded on first use and shareable across jobs) and the
    job's `Config`.
    """

    def __init__(self, runtime: Runtime, config: Config):
        self.runtime = runtime
        self.config = config
        self._checked: tuple[str | None, int] | None = None  # (prompt, frames) that passed check_models

    @classmethod
    def from_config(cls, config: Config, *, video: bool = True, device: str | torch.device | None = None
                    ) -> "StylizePipeline":
        return cls(Runtime.from_config(config, video=video, device=device), config)

    @property
    def components(self) -> Components:
        return self.runtime.components

    # ------------------------------------------------------------------ stages

    def check_inputs(self, frames: np.ndarray | None, style: torch.Tensor, prompt: str | None, *,
                     depth: np.ndarray | None = None, size: tuple[int, int] | None = None) -> StylizeInputs:
        """Validate arrays and settings before any model work. `size` (W, H) is needed without frames;
        `prompt` None (or blank) means no text prompt."""
        if prompt is not None and not isinstance(prompt, str):
            raise InputError(f"prompt must be text or None (no prompt), got {type(prompt).__name__}.")
        if frames is not None:
            frames = np.asarray(frames)
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
                raise InputError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}.")
            size = (frames.shape[2], frames.shape[1])
        if size is None or any(s % 8 or s < 8 for s in size):
            raise InputError(f"the model size must be given and both sides multiples of 8, got {size}. "
                             f"To fix: resize the frames (e.g. with video.io.model_size_for).")
        num = len(frames) if frames is not None else 1
        if not isinstance(style, torch.Tensor) or style.dim() != 3 or style.shape[0] != 3:
            raise InputError(f"style must be a float tensor (3, H, W) in [0, 1], got "
                             f"{tuple(style.shape) if isinstance(style, torch.Tensor) else type(style).__name__}.")
        if depth is not None and np.asarray(depth).shape != (num, size[1], size[0]):
            raise InputError(f"depth must be (F, H, W) = {(num, size[1], size[0])}, got {np.asarray(depth).shape}.")
        check_frame_settings(self.config, num)
        self._check_something_to_guide_by(prompt)
        return StylizeInputs(frames, size, num, style, prompt, depth)

    def _check_something_to_guide_by(self, prompt: str | None) -> None:
        """Without a prompt, a negative prompt and an image prompt, eps_c = eps_u: CFG compares nothing,
        and the guidance step, relative to RMS(eps_c - eps_u), would be 0: refuse instead of silently not guiding."""
        c = self.config
        guiding = c.guidance.enabled and c.guidance.strength > 0 and not cfg_off(c.sampling.cfg_scale)
        if guiding and not prompt_text(prompt) and not c.sampling.negative_prompt and c.ip_adapter.scale == 0:
            raise InputError("there is no prompt, no negative prompt and no image prompt (ip_adapter.scale 0), so "
                             "the conditional and unconditional predictions are the same and the style guidance, "
                             "whose step is relative to their difference, would do nothing. To fix: give --prompt, "
                             "or keep the image prompt on (--ip-adapter-scale 1), or use --no-guidance.")

    def prepare_depth(self, frames: np.ndarray, *, cache_dir: Any = None, progress: bool = False) -> np.ndarray:
        """uint8 (F, H, W, 3) -> depth (F, H, W) in [0, 1], normalised over the whole clip, cached in `cache_dir`."""
        estimator = self.runtime.depth_estimator()
        estimator = ProgressDepth(estimator) if progress else estimator
        return clip_depth(frames, estimator, cache_dir, key_extra=str((frames.shape[2], frames.shape[1])))

    def schedule(self) -> tuple[torch.Tensor, list[int]]:
        """(alphas_cumprod (T,) float64 on the device, the timesteps that run), from `sampling.*`.

        With `sampling.denoise` S < 1 the first steps are skipped: the last floor(S * steps) run.
        """
        c, s = self.components, self.config.sampling
        alphas = alphas_cumprod_from_config({"num_train_timesteps": len(c.alphas_cumprod), "beta_schedule": s.beta_schedule,
                                             "beta_start": s.beta_start, "beta_end": s.beta_end}).to(c.device)
        timesteps = Sampler(s.scheduler).timesteps(len(alphas), s.steps, spacing=s.timestep_spacing)
        return alphas, timesteps[s.steps - max(1, int(s.denoise * s.steps + 1e-9)):]

    def prepare_latents(self, num_frames: int, size: tuple[int, int], seed: int,
                        frames: np.ndarray | None = None) -> torch.Tensor:
        """Starting latents (1, C, F, H/8, W/8) for `size` = (W, H), from `seed` (see `noise.py`).

        With `sampling.denoise` < 1: the source `frames` (F, H, W, 3) encoded and noised to the
        first timestep that runs, as video-to-video pipelines start.
        """
        c, v = self.components, self.config.video
        factor = c.vae_scale_factor
        shape = (1, c.unet2d.config.in_channels, num_frames, size[1] // factor, size[0] // factor)
        noise = initial_noise(shape, seed, c.device, scheme=v.noise, window=v.window, overlap=v.overlap)
        if self.config.sampling.denoise >= 1:
            return noise
        if frames is None:
            raise InputError("sampling.denoise below 1 starts from the source, but there is none. To fix: give a "
                             "video (or --depth-from a photo for an image), or use --denoise 1.")
        alphas, timesteps = self.schedule()
        a = float(alphas[timesteps[0]])
        source = encode_frames(c, frames, self.config.guidance.decode_chunk).to(noise.dtype)
        return a ** 0.5 * source + (1 - a) ** 0.5 * noise

    def windows(self, num_frames: int) -> ContextWindows:
        """The motion windows of a clip of `num_frames` frames (one window: joint sampling)."""
        v = self.config.video
        return context_windows(num_frames, v.window if num_frames > 1 else 0, v.overlap)

    def prepare_image_prompt(self, style: torch.Tensor) -> ImagePrompt | None:
        """The style image (3, H, W) through the IP-Adapter's image encoder, once per job; None at scale 0."""
        ip = self.config.ip_adapter
        if ip.scale == 0:
            return None
        return ImagePrompt.from_style(self.runtime.image_prompt_models(), style, scale=ip.scale, mode=ip.mode)

    def sample(self, latents: torch.Tensor, depth: np.ndarray | None, style: torch.Tensor, prompt: str | None, *,
               seed: int, on_step: StepCallback | None = None, progress: bool = False,
               image_prompt: ImagePrompt | None = None) -> Sampled:
        """Guided DDIM from `latents` (1, C, F, h, w) to clean latents, conditioned on `depth` (F, H, W).

        `image_prompt` from `prepare_image_prompt` (made here when not given and ip_adapter.scale > 0)."""
        c, s, g = self.components, self.config.sampling, self.config.guidance
        image_prompt = image_prompt or self.prepare_image_prompt(style)
        self.check_models(prompt, latents.shape[2])
        alphas, timesteps = self.schedule()
        windows = self.windows(latents.shape[2])
        params, method = sag_params(self.config), METHODS[g.method]
        guiding = g.enabled and method.guides(params.strength)  # e.g. strength 0: gradients scaled to nothing
        loss_fn = self.style_loss(style) if guiding else None
        steps = len(timesteps)
        # n as it runs: a schedule with fewer steps left than n caps the estimate's grid
        guided = {i: estimate_grid(timesteps[i], n, alphas).n
                  for i, n in params.guided_ns(steps).items()} if loss_fn else {}
        shares_first = len(windows) == 1 and not g.cond_only  # the prediction at x_t starts the estimate
        plan = method.step_plan(steps, guided, params.passes, getattr(self.config, g.method, None), shares_first)
        bar = SamplingProgress([units * len(windows) for units in plan], steps, len(windows), enabled=progress)
        text = c.encode_prompt([s.negative_prompt, prompt_text(prompt)])
        control = ControlCache(c, depth_to_control_image(depth)) if depth is not None else None
        branches = (1,) if cfg_off(s.cfg_scale) else (0, 1)  # CFG off: the conditional branch alone
        eps = DepthControlledEps(c, text, control, cfg_scale=s.cfg_scale, controlnet_scale=s.controlnet_scale,
                                 on_call=bar.on_call, branches=branches,
                                 image_embeds=image_prompt.embeds if image_prompt else None)
        span = windows.spans[0][1] - windows.spans[0][0]
        split = (loss_fn is not None and not g.cond_only and len(branches) == 2
                 and wants_split(g.cfg_split, c.device, span, *latents.shape[-2:], c.dtype))
        eps_fn = self._windowed(eps, windows, split)
        grad_fn = self._windowed(eps.conditional_only(), windows) if g.cond_only else None
        records: list[dict[str, Any]] = []

        def record(r) -> None:
            records.append(dict(vars(r), **self._window_losses(loss_fn, windows)))

        def step(i, t, x, x0_hat, loss):
            bar.on_step(i, loss)
            return None if on_step is None else on_step(i, t, x, x0_hat, loss)

        generator = torch.Generator().manual_seed((seed + 1) % 2**64)  # time-travel noise; seed itself draws x_T
        adapter = image_prompt.attached(c) if image_prompt else contextlib.nullcontext()
        # `auto` checkpoints what would save more than a threshold (models/saved_bytes.py)
        cells, group = latents.shape[-2:], span * min(self.config.video.window_batch, len(windows.spans))
        unet_bytes = unet_vjp_bytes(c.unet.config, 1 if split or g.cond_only else len(branches), group, *cells, c.dtype)
        levers = {"gradient_checkpointing": guiding and wants_checkpointing(g.gradient_checkpointing, unet_bytes),
                  "decoder_checkpointing": guiding and wants_checkpointing(
                      g.decoder_checkpointing, decoder_bytes(c.vae.config, g.decode_chunk, *cells, c.dtype)),
                  "cfg_split": split}
        with bar, applied_levers(c, gradient_checkpointing=levers["gradient_checkpointing"],
                                 decoder_checkpointing=levers["decoder_checkpointing"]), adapter:
            result = self._sampler(loss_fn)(eps_fn, latents, alphas, timesteps, loss_fn=loss_fn, params=params,
                                            generator=generator, grad_eps_fn=grad_fn, on_step=step, on_record=record)
        return Sampled(result.x0, records, windows, timesteps, result.stopped_at, bar.counts(), levers)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Clean latents (1, C, F, h, w) -> uint8 frames (F, H, W, 3) at model size."""
        return decode_latents(self.components, latents, self.config.guidance.decode_chunk)

    def __call__(self, frames: np.ndarray | None, style: torch.Tensor, prompt: str | None = None, *,
                 depth: np.ndarray | None = None, size: tuple[int, int] | None = None, seed: int | None = None,
                 cache_dir: Any = None, on_step: StepCallback | None = None, progress: bool = False,
                 kind: str = "video") -> StylizeResult:
        """All stages. frames: uint8 (F, H, W, 3) at model size, or None with `size` (an image
        without depth). Returns frames at model size and the report."""
        seed = self.config.sampling.seed if seed is None else seed
        clock = Stopwatch()
        inputs = self.check_inputs(frames, style, prompt, depth=depth, size=size)
        with clock.stage("load_models"):
            components = self.components
        self.check_models(prompt, inputs.num_frames)  # before depth: a bad setting costs nothing
        with clock.stage("image_prompt"):  # loads and checks the adapter: a bad file also costs nothing
            image_prompt = self.prepare_image_prompt(inputs.style)
        account = MemoryAccount(components)
        with account.recording():
            with clock.stage("depth"):
                account.enter("depth")
                if inputs.depth is None and inputs.frames is not None:
                    inputs.depth = self.prepare_depth(inputs.frames, cache_dir=cache_dir, progress=progress)
            latents = self.prepare_latents(inputs.num_frames, inputs.size, seed, inputs.frames)
            with clock.stage("sampling"):
                sampled = self.sample(latents, inputs.depth, inputs.style, prompt, seed=seed, on_step=on_step,
                                      progress=progress, image_prompt=image_prompt)
            with clock.stage("decode"):
                out = self.decode(sampled.latents)
        with clock.stage("metrics"):
            metrics = self.measure(out, inputs.frames, inputs.depth, inputs.style) if self.config.output.metrics else None
        report = base_report(self.config, components, seed, kind)
        guided_indices = sorted({r["index"] for r in sampled.records if "index" in r})
        report.update(sampler=describe_sampler(self.config, sampled.timesteps, guided_indices),
                      guided_steps=sampled.records, windows=self._describe(sampled.windows),
                      timesteps=sampled.timesteps, evaluations=sampled.evaluations, stopped_at=sampled.stopped_at,
                      seconds=clock.seconds, peak_memory=peak_memory_mb(components.device),
                      prompt=describe_prompt(prompt, self.config.sampling.negative_prompt),
                      ip_adapter=image_prompt.report if image_prompt else off_report(self.config),
                      memory=dict(account.as_dict(), levers=sampled.levers))
        if self.config.sampling.denoise < 1:
            report["denoise"] = {"fraction": self.config.sampling.denoise, "steps_run": len(sampled.timesteps),
                                 "steps_skipped": self.config.sampling.steps - len(sampled.timesteps)}
        if self.config.guidance.cond_only and sampled.records:
            report["guidance_note"] = COND_ONLY_NOTE
        if self.config.model.loss_decoder and sampled.records:
            report["loss_decoder"] = self.runtime.loss_decoder(self.config.model.loss_decoder)[1]
        if metrics is not None:
            report["metrics"] = metrics
        return StylizeResult(out, report, out, inputs.depth, _to_uint8(inputs.style))

    def measure(self, frames: np.ndarray, source: np.ndarray | None, depth: np.ndarray | None,
                style: torch.Tensor) -> dict[str, Any]:
        """Quality metrics of output frames (F, H, W, 3) against the source frames and depth (see `metrics`).

        Without source frames (an image from pure noise) the output stands in for the source:
        the temporal metrics are then undefined for F = 1 anyway.
        """
        from ..metrics import compute_metrics

        c = self.components
        return compute_metrics(
            frames, source if source is not None else frames,
            per_frame_loss=GramStyleLoss(c.clip_vision, style, layer=self.config.guidance.layer).per_frame,
            clip_model=c.clip_vision,
            depth_estimator=self.runtime.depth_estimator() if depth is not None else None,
            input_depth=depth,
        )

    # ------------------------------------------------------------------ helpers

    def style_loss(self, style: torch.Tensor) -> LatentStyleLoss:
        """E(x0_hat): decode frames in chunks of `guidance.decode_chunk`, Gram loss on CLIP features."""
        c, g = self.components, self.config.guidance
        frame_loss = GramStyleLoss(c.clip_vision, style, layer=g.layer)
        if self.config.model.loss_decoder:  # an approximation: a small decoder's frames (models/loss_decoder.py)
            decoder, _ = self.runtime.loss_decoder(self.config.model.loss_decoder)
            return LatentStyleLoss(lambda z: tiny_decode(decoder, z).float(), frame_loss, chunk=g.decode_chunk)
        return LatentStyleLoss(lambda z: decode_frames(c, z).float(), frame_loss, chunk=g.decode_chunk)

    def _sampler(self, loss_fn: LatentStyleLoss | None) -> Callable[..., Any]:
        """`guidance.method`'s sampler with its settings (the config section of the same name, when it
        has one); the plain sampler when nothing is guided. `sampling.scheduler`'s steps are passed
        where they are not DDIM's (LCM: SAG only, `schedule_settings.check_scheduler`)."""
        name = self.config.guidance.method
        sampler = Sampler(self.config.sampling.scheduler)
        own = {} if sampler.steps_like_ddim else {"sampler": sampler}
        if loss_fn is None:
            return functools.partial(sample, **own)
        return functools.partial(METHODS[name].sampler, settings=getattr(self.config, name, None), **own)

    def _windowed(self, eps: DepthControlledEps, windows: ContextWindows, split: bool = False):
        """The eps function of a clip: the joint prediction for one window, else blended windows;
        with `split`, VJPs one CFG branch at a time (`cfg_split`)."""
        splitter = SplitCFGEps(eps) if split else None
        if len(windows) == 1:
            return splitter or eps
        return WindowedEps(eps.predict, windows, batch=self.config.video.window_batch,
                           window_vjp=splitter.window_vjp if splitter else None)

    @staticmethod
    def _window_losses(loss_fn: LatentStyleLoss | None, windows: ContextWindows) -> dict[str, Any]:
        """Per-window mean of the latest frame losses, for the report (several windows only)."""
        if loss_fn is None or loss_fn.frame_losses is None or len(windows) == 1:
            return {}
        losses = loss_fn.frame_losses
        return {"window_losses": [round(float(losses[a:b].mean()), 6) for a, b in windows.spans]}

    def _describe(self, windows: ContextWindows) -> dict[str, Any]:
        v = self.config.video
        return {"count": len(windows), "size": windows.spans[0][1] - windows.spans[0][0], "overlap": v.overlap,
                "batch": v.window_batch, "noise": v.noise, "spans": [list(span) for span in windows.spans]}

    def check_models(self, prompt: str | None, num_frames: int) -> None:
        """Settings that depend on the loaded models: the CLIP block, the motion limit, the prompt length.

        `__call__` runs it before depth; `sample` runs it too (once per prompt and length)."""
        if self._checked == (prompt, num_frames):
            return
        c, g = self.components, self.config.guidance
        layers = c.clip_vision.config.num_hidden_layers
        if g.enabled and not 1 <= g.layer <= layers:
            raise ConfigError(f"config key 'guidance.layer' is {g.layer}, but the CLIP vision model has {layers} "
                              f"blocks. To fix: use a value from 1 to {layers} (default 3).")
        if c.unet_motion is not None and num_frames > 1:
            limit = c.unet_motion.config.get("motion_max_seq_length", MOTION_FRAME_LIMIT)
            window = self.windows(num_frames)
            if window.spans[0][1] - window.spans[0][0] > limit:
                raise ConfigError(f"config key 'video.window' asks for more frames at once than the motion module "
                                  f"holds ({limit}). To fix: use video.window={min(16, limit)}.")
        tokens = len(c.tokenizer(prompt_text(prompt), verbose=False).input_ids)
        if tokens > c.tokenizer.model_max_length and c.preset != "tiny":  # tiny: byte tokens
            warnings.warn(f"the prompt is {tokens} tokens long; the text encoder reads only the first "
                          f"{c.tokenizer.model_max_length}. Shorten it to keep every word.", stacklevel=2)
        if g.enabled and self.config.model.loss_decoder:
            self.runtime.loss_decoder(self.config.model.loss_decoder)  # loaded and checked against the VAE before any work
        self._checked = (prompt, num_frames)
