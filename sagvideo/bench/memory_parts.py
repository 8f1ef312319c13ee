"""`sagvideo bench memory`: bytes saved for backward per part, every gradient memory lever on and off.

For each preset x frames x size, one child process builds the networks and takes, under a
`SavedTensorLedger`, what a guided step's two graphs hold:

* the UNet + ControlNet VJP: one noise prediction with a graph w.r.t. the latents (CFG batch 2,
  or 1 for a split-CFG branch), with no checkpointing, diffusers' `enable_gradient_checkpointing`,
  and this project's checkpointing of every block (`models.checkpointing`);
* the loss: one frame's decode + CLIP + Gram with a graph (decode chunk 1), the decoder
  checkpointed or not.

`--device meta` (the default for sd15) builds the real-size networks on PyTorch's meta device:
shapes only, no memory and no arithmetic, so 16 frames at 512x512 cost nothing to count.
Attention runs there through the meta kernel of PyTorch's CPU flash attention, so what autograd
saves is exactly what a CPU run saves (`tests/test_checkpointing.py` checks equality on the tiny
preset). `--device cpu|cuda` runs the forward and the backward for real; on CUDA the row also has
the allocator's peak of the VJP.

The extrapolation row (`--target`) estimates a GPU's peak for a whole guided step in float16 from
the same counts, measured at the target size: see `estimate_peak`.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, Iterator

from .children import run_child

MB = 2**20
UNET_LEVERS = ("none", "diffusers", "blocks", "blocks+split")
LOSS_LEVERS = ("none", "decoder")
CONTEXT_MB = 512  # the CUDA context and allocator reserve (assumption, README)


@contextlib.contextmanager
def meta_as_cpu() -> Iterator[None]:
    """On meta tensors: unmasked `scaled_dot_product_attention` through PyTorch's CPU flash kernel,
    and `torch.autocast("meta", ...)` (which has no meta support) as a no-op."""
    import torch
    import torch.nn.functional as F

    original, autocast = F.scaled_dot_product_attention, torch.autocast

    def no_meta_autocast(device_type, *args, **kwargs):
        return contextlib.nullcontext() if device_type == "meta" else autocast(device_type, *args, **kwargs)

    def attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        if q.device.type != "meta" or attn_mask is not None or kwargs:
            return original(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kwargs)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, scale=scale)[0]

    F.scaled_dot_product_attention, torch.autocast = attention, no_meta_autocast
    try:
        yield
    finally:
        F.scaled_dot_product_attention, torch.autocast = original, autocast


def _components(preset: str, device: str, dtype: str):
    import torch

    from ..models.components import _build_random, _seeded_build, resolve_device_dtype

    if device == "meta":
        dev, dt = torch.device("meta"), getattr(torch, dtype if dtype != "auto" else "float32")
    else:
        dev, dt = resolve_device_dtype(device, dtype)
    ids = {"base": preset, "motion_adapter": preset, "controlnet": preset, "clip_vision": preset}
    return _seeded_build(0, dev, lambda: _build_random(preset, True, ids, dev, dt))


def _ledger(c):
    from ..pipeline.memory_account import SavedTensorLedger, clip_modules, network_weights

    led = SavedTensorLedger(network_weights(c.unet, c.controlnet, c.vae, c.clip_vision))
    led.tag(c.unet, "unet_other")
    led.tag_blocks(c.unet)
    led.tag(c.controlnet, "controlnet")
    led.tag(c.vae.decoder, "vae_decoder")
    led.tag_blocks(c.vae.decoder, "vae_decoder.")
    for module in clip_modules(c.clip_vision):
        led.tag(module, "clip")
    return led


def _unet_levers(c, lever: str):
    from ..models.checkpointing import checkpointed

    stack = contextlib.ExitStack()
    if lever == "diffusers":
        for net in (c.unet, c.controlnet):
            net.enable_gradient_checkpointing()
            stack.callback(net.disable_gradient_checkpointing)
    elif lever.startswith("blocks"):
        stack.enter_context(checkpointed([c.unet, c.controlnet]))
    return stack


def _vjp_row(c, lever: str, frames: int, size: tuple[int, int], backward: bool) -> dict[str, Any]:
    """Saved bytes of one UNet + ControlNet prediction with a graph (and its VJP when `backward`)."""
    import torch

    from ..pipeline.denoiser import ControlCache, DepthControlledEps
    from .memory import PeakMemory

    gen = torch.Generator().manual_seed(0)
    w, h = size
    latents = torch.randn(1, 4, frames, h // 8, w // 8, generator=gen).to(c.device, c.dtype)
    width = c.text_encoder.config.hidden_size
    text = torch.randn(2, c.tokenizer.model_max_length, width, generator=gen).to(c.device, c.dtype)
    control = ControlCache(c, torch.rand(frames, 3, h, w, generator=gen).to(c.device))
    eps = DepthControlledEps(c, text, control)
    if lever == "blocks+split":
        eps = eps.conditional_only()  # one branch: what each of the split VJPs holds
    led = _ledger(c)
    peak = None
    with _unet_levers(c, lever), led, PeakMemory(c.device) if c.device.type == "cuda" else contextlib.nullcontext() as mem:
        leaf = latents.requires_grad_(True)
        out = eps(leaf, 500)
        parts, held = dict(led.live_parts), led.live
        if backward:
            torch.autograd.grad(out, leaf, torch.ones_like(out))
        del out
    if c.device.type == "cuda":
        peak = round(mem.peak_mb, 1)
    motion = parts.get("motion_modules", 0)
    unet = sum(v for k, v in parts.items() if k not in ("controlnet",) and not k.startswith(("vae", "clip")))
    return {"part": "unet+cn vjp", "lever": lever, "saved_mb": round(held / MB, 1), "unet_mb": round(unet / MB, 1),
            "motion_mb": round(motion / MB, 1), "attention_mb": round(parts.get("attentions", 0) / MB, 1),
            "resnets_mb": round(parts.get("resnets", 0) / MB, 1),
            "controlnet_mb": round(parts.get("controlnet", 0) / MB, 1),
            "largest_block_mb": round(max(led.largest_block.values(), default=0) / MB, 1), "cuda_peak_mb": peak}


def _loss_row(c, lever: str, size: tuple[int, int], backward: bool) -> dict[str, Any]:
    """Saved bytes of one frame's decode + CLIP + Gram loss with a graph (decode chunk 1)."""
    import torch

    from ..guidance import GramStyleLoss
    from ..models.checkpointing import checkpointed
    from .memory import PeakMemory

    gen = torch.Generator().manual_seed(0)
    w, h = size
    style = torch.rand(3, 224, 224, generator=gen).to(c.device)
    loss = GramStyleLoss(c.clip_vision, style, layer=3)
    z = torch.randn(1, 4, h // 8, w // 8, generator=gen).to(c.device)
    led = _ledger(c)
    with checkpointed([c.vae.decoder], lever == "decoder"), led, \
            PeakMemory(c.device) if c.device.type == "cuda" else contextlib.nullcontext() as mem:
        leaf = z.requires_grad_(True)
        value = loss.per_frame((c.vae.decode(leaf.to(c.dtype) / c.latent_scale).sample.float() + 1) / 2).sum()
        parts, held = dict(led.live_parts), led.live
        if backward:
            torch.autograd.grad(value, leaf)
        del value
    blocks = {k: v for k, v in led.largest_block.items() if k.startswith("vae_decoder.")}
    return {"part": "loss, one frame", "lever": lever, "saved_mb": round(held / MB, 1),
            "decoder_mb": round(sum(v for k, v in parts.items() if k.startswith("vae_decoder")) / MB, 1),
            "clip_mb": round(parts.get("clip", 0) / MB, 1),
            "largest_block_mb": round(max(blocks.values(), default=0) / MB, 1),
            "cuda_peak_mb": round(mem.peak_mb, 1) if c.device.type == "cuda" else None}


def weights_mb(c, dtype_bytes: int) -> float:
    """The networks' weights at `dtype_bytes` per parameter (CLIP vision stays float32)."""
    total = 0
    for name, net in c.modules().items():
        if name == "unet2d" and c.unet_motion is not None:
            continue  # its weights are inside the motion UNet
        numel = sum(p.numel() for p in net.parameters())
        total += numel * (4 if name == "clip_vision" else dtype_bytes)
    return total / MB


def _fitting(c, part: str, lever: str, measure) -> dict[str, Any]:
    """`measure()`'s row, or on a GPU that runs out of memory a row that says so (the rest still run)."""
    import torch

    try:
        return measure()
    except torch.OutOfMemoryError:
        pass
    torch.cuda.empty_cache()  # outside the handler: the failed row's tensors are released by now
    return {"part": part, "lever": lever, "saved_mb": None, "error": f"out of memory on {c.device}"}


def measure_memory(preset: str, frames: int, size: list[int], device: str, dtype: str) -> dict[str, Any]:
    """All lever rows for one preset x frames x size (W, H); see the module docstring."""
    c = _components(preset, device, dtype)
    backward = c.device.type != "meta"
    rows = []
    with meta_as_cpu():
        rows += [_fitting(c, "unet+cn vjp", lever, lambda: _vjp_row(c, lever, frames, tuple(size), backward))
                 for lever in UNET_LEVERS]
        rows += [_fitting(c, "loss, one frame", lever, lambda: _loss_row(c, lever, tuple(size), backward))
                 for lever in LOSS_LEVERS]
    for row in rows:
        row.update(preset=preset, frames=frames, size=f"{size[0]}x{size[1]}", device=str(c.device),
                   dtype=str(c.dtype).replace("torch.", ""))
    return {"rows": rows, "weights_mb": round(weights_mb(c, c.dtype.itemsize), 1)}


def estimate_peak(measured: dict[str, Any], *, split: bool, checkpointing: bool, decoder: bool,
                  keeps_last_graph: bool) -> dict[str, float]:
    """A GPU's peak for one guided step, in MB, from one `measure_memory` result:

    * VJP: weights + context + what the VJP's graph holds + (checkpointed) the recomputation of
      the largest block (what it saves without checkpointing, halved for one CFG branch);
    * loss: weights + context + the loss graph of one frame + (checkpointed decoder) the
      decoder's largest block without checkpointing + the UNet graph the forward kept for the first VJP (joint CFG with n > 1
      keeps the last evaluation's graph through the loss; a split VJP keeps none).

    Not counted: kernel workspaces and gradient buffers in flight (one activation-sized tensor
    or two), the latents and the depth control (a few MB).
    """
    rows = {(r["part"], r["lever"]): r for r in measured["rows"]}
    unet_lever = ("blocks+split" if split else "blocks") if checkpointing else "none"
    vjp = rows[("unet+cn vjp", unet_lever)]
    loss = rows[("loss, one frame", "decoder" if decoder else "none")]
    base = measured["weights_mb"] + CONTEXT_MB
    block = rows[("unet+cn vjp", "none")]["largest_block_mb"] * (0.5 if split else 1.0)
    vjp_peak = base + vjp["saved_mb"] + (block if checkpointing else 0)
    kept = vjp["saved_mb"] if keeps_last_graph and not split else 0.0
    decoder_block = rows[("loss, one frame", "none")]["largest_block_mb"]
    loss_peak = base + loss["saved_mb"] + (decoder_block if decoder else 0) + kept
    return {"vjp_peak_mb": round(vjp_peak), "loss_peak_mb": round(loss_peak),
            "peak_mb": round(max(vjp_peak, loss_peak)), "weights_mb": round(measured["weights_mb"])}


def _size(short: int) -> list[int]:
    from ..video.io import model_size_for

    return list(model_size_for(16, 9, short))  # a 16:9 clip, as the sample


def bench_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every lever row for each preset x frames x size, then the same at 512x512x16 in float16 and
    the GPU peaks estimated from it (`estimate_peak`)."""
    presets = args.presets or ["sd15"]
    device = args.device if args.device != "auto" else "meta"
    rows: list[dict[str, Any]] = []
    for preset in presets:
        for frames in args.frames:
            for short in args.size_px:
                rows += run_child("memory", {"preset": preset, "frames": frames, "size": _size(short),
                                             "device": device, "dtype": args.dtype})["rows"]
        # counted on meta (16 frames at 512 px do not fit a CPU run; the counts are the same bytes),
        # which the estimate uses; a GPU also measures the rows that fit it
        target = run_child("memory", {"preset": preset, "frames": 16, "size": [512, 512], "device": "meta",
                                      "dtype": "float16"})
        rows += target["rows"]
        if device.startswith("cuda"):
            rows += run_child("memory", {"preset": preset, "frames": 16, "size": [512, 512], "device": device,
                                         "dtype": "float16"})["rows"]
        for name, levers in EXTRAPOLATED.items():
            rows.append({"preset": preset, "frames": 16, "size": "512x512", "dtype": "float16",
                         "part": "estimated GPU peak", "lever": name, **estimate_peak(target, **levers)})
    return rows


# the extrapolated configurations: every lever off, then on one by one (n > 1: the last graph is kept)
EXTRAPOLATED = {
    "none": {"split": False, "checkpointing": False, "decoder": False, "keeps_last_graph": True},
    "blocks": {"split": False, "checkpointing": True, "decoder": False, "keeps_last_graph": True},
    "blocks+decoder": {"split": False, "checkpointing": True, "decoder": True, "keeps_last_graph": True},
    "blocks+decoder+split": {"split": True, "checkpointing": True, "decoder": True, "keeps_last_graph": False},
}
