"""Where the memory of a guided run goes: bytes saved for backward per part, peaks per stage.

`SavedTensorLedger` is a `torch.autograd.graph.saved_tensors_hooks` pair that counts the bytes
autograd keeps for a backward while they are alive (each storage once, however many times it is
saved; the frozen weights not at all), attributed to the part of the network that saved them:

* motion UNet: `motion_modules` (temporal transformers), `attentions` (spatial transformers),
  `resnets`, `downsamplers`/`upsamplers`, `unet_other` (conv_in, time embedding, output head);
* `controlnet`; `vae_decoder` (the loss's decode); `clip` (the loss's CLIP tower); `other`.

With checkpointing a block saves only its inputs, which are then what its part counts. The
recomputation inside a checkpointed backward is not seen (it runs under torch's own hooks).
`largest_block` is the most one call of one block saved: measured without checkpointing, it is
the transient a checkpointed backward adds on top while it re-runs that block.

`MemoryAccount` runs a ledger over a whole job and marks stages from the networks' own calls:
`depth`, `unet_cn_forward` (predictions without a graph), `unet_cn_vjp` (building and
differentiating a network graph), `loss_backward` (decode + CLIP + Gram with a graph and its
backward), `decode` (the final decode). Per stage it keeps the peak of live saved bytes, and on
CUDA the allocator's peak (which also holds weights, working memory and transients).
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import ExitStack, contextmanager
from typing import Any, Iterable, Iterator

import torch

from ..models.checkpointing import checkpoint_targets

MB = 2**20


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


class _Held:
    """What the ledger hands autograd for one saved tensor; releasing it releases the count."""

    __slots__ = ("ledger", "key", "tensor", "__weakref__")

    def __init__(self, ledger: "SavedTensorLedger", key: int, tensor: torch.Tensor):
        self.ledger, self.key, self.tensor = ledger, key, tensor

    def __del__(self) -> None:
        self.ledger._release(self.key)


class SavedTensorLedger:
    """Counts live saved-for-backward bytes by part and stage (see the module docstring).

    `weights`: tensors never counted (the frozen parameters and buffers). Use as a context
    manager (installs the hooks) together with `tag(net, part)` / `tag_blocks(net)` for parts.
    """

    def __init__(self, weights: Iterable[torch.Tensor] = ()):
        self._weights = {_storage_key(w) for w in weights}
        self._lock = threading.Lock()
        self._storages: dict[int, list] = {}  # key -> [references, bytes, part]
        self._labels: list[tuple[str, str]] = [("other", "")]
        self._block_bytes: Counter = Counter()
        self._handles: list[Any] = []
        self._stack = ExitStack()
        self.live = 0
        self.live_parts: Counter = Counter()
        self.peak = 0
        self.peak_parts: dict[str, int] = {}
        self.stage = "other"
        self.stage_peaks: dict[str, int] = {}
        self.largest_block: dict[str, int] = {}  # part -> most bytes one call of one block saved

    # ------------------------------------------------------------------ hooks

    def pack(self, t: torch.Tensor) -> Any:
        key = _storage_key(t)
        if key in self._weights:
            return t
        part, block = self._labels[-1]
        with self._lock:
            entry = self._storages.get(key)
            if entry is None:
                size = t.untyped_storage().nbytes()
                entry = self._storages[key] = [0, size, part]
                self.live += size
                self.live_parts[part] += size
                if block:
                    self._block_bytes[block] += size
                if self.live > self.peak:
                    self.peak, self.peak_parts = self.live, dict(self.live_parts)
                if self.live > self.stage_peaks.get(self.stage, 0):
                    self.stage_peaks[self.stage] = self.live
            entry[0] += 1
        # detached: a saved output holding its own grad_fn would make a cycle autograd never frees
        return _Held(self, key, t.detach())

    @staticmethod
    def unpack(held: Any) -> torch.Tensor:
        return held.tensor if isinstance(held, _Held) else held

    def _release(self, key: int) -> None:
        with self._lock:
            entry = self._storages.get(key)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] == 0:
                del self._storages[key]
                self.live -= entry[1]
                self.live_parts[entry[2]] -= entry[1]

    def enter_stage(self, name: str) -> None:
        """Count what is alive from now on toward stage `name` (its peak starts at what is alive now)."""
        self.stage = name
        self.stage_peaks[name] = max(self.stage_peaks.get(name, 0), self.live)

    # ------------------------------------------------------------------ parts

    def _push(self, label: tuple[str, str]):
        def pre(module, args):
            self._labels.append(label)
            if label[1]:
                self._block_bytes[label[1]] = 0

        def post(module, args, out):
            self._labels.pop()
            if label[1]:
                self.largest_block[label[0]] = max(self.largest_block.get(label[0], 0), self._block_bytes[label[1]])

        return pre, post

    def tag(self, net: torch.nn.Module | None, part: str) -> None:
        """Attribute what `net` saves (outside its tagged blocks) to `part`."""
        if net is not None:
            pre, post = self._push((part, ""))
            self._handles += [net.register_forward_pre_hook(pre), net.register_forward_hook(post)]

    def tag_blocks(self, net: torch.nn.Module | None, prefix: str = "") -> None:
        """Attribute what each checkpointable block of `net` saves to its part (`prefix` + part name)."""
        if net is None:
            return
        for name, part, module in checkpoint_targets(net):
            pre, post = self._push((prefix + part, f"{prefix}{name}"))
            self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def __enter__(self) -> "SavedTensorLedger":
        self._stack.enter_context(torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def mb(self, value: int) -> float:
        return round(value / MB, 1)


def clip_modules(clip_vision: torch.nn.Module | None) -> list[torch.nn.Module]:
    """The CLIP vision modules the style loss calls one by one (it runs the tower block by block)."""
    if clip_vision is None:
        return []
    vision = getattr(clip_vision, "vision_model", clip_vision)
    return [vision.embeddings, vision.pre_layrnorm, *vision.encoder.layers]


def network_weights(*nets: torch.nn.Module | None) -> list[torch.Tensor]:
    """The parameters and buffers of `nets` (what a ledger must not count as activations)."""
    return [t for net in nets if net is not None for t in (*net.parameters(), *net.buffers())]


class MemoryAccount:
    """A ledger over a job's networks plus per-stage CUDA allocator peaks; `as_dict()` for the report."""

    STAGES = ("depth", "unet_cn_forward", "unet_cn_vjp", "loss_backward", "decode")

    def __init__(self, components: Any):
        c = components
        self.device = c.device
        decoder = getattr(c.vae, "decoder", None)
        self.ledger = SavedTensorLedger(network_weights(c.unet, c.controlnet, c.vae, c.clip_vision, c.text_encoder))
        self._nets = (c.unet, c.controlnet, decoder, c.clip_vision)
        self._cuda_peaks: dict[str, float] = {}
        self._handles: list[Any] = []

    def enter(self, stage: str) -> None:
        """Close the current stage (its CUDA peak) and start `stage`."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / MB
            old = self.ledger.stage
            self._cuda_peaks[old] = max(self._cuda_peaks.get(old, 0.0), peak)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.ledger.enter_stage(stage)

    def _network_stage(self, graph_stage: str, plain_stage: str):
        def pre(module, args, kwargs):
            values = (*args, *kwargs.values())
            graph = torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)
            self.enter(graph_stage if graph else plain_stage)
        return pre

    def _mark_vjp(self, module, args, out):
        sample = getattr(out, "sample", out[0] if isinstance(out, tuple) else out)
        if isinstance(sample, torch.Tensor) and sample.requires_grad:
            sample.register_hook(lambda grad: self.enter("unet_cn_vjp"))  # the backward reached the output

    @contextmanager
    def recording(self) -> Iterator["MemoryAccount"]:
        """Install the ledger and the stage marks on the networks for the block; remove them after."""
        unet, controlnet, decoder, clip = self._nets
        led = self.ledger
        led.tag(unet, "unet_other")
        led.tag_blocks(unet)
        led.tag(controlnet, "controlnet")
        led.tag(decoder, "vae_decoder")
        for module in clip_modules(clip):
            led.tag(module, "clip")
        for net in (controlnet, unet):
            self._handles.append(net.register_forward_pre_hook(self._network_stage("unet_cn_vjp", "unet_cn_forward"),
                                                               with_kwargs=True))
        self._handles.append(unet.register_forward_hook(self._mark_vjp))
        if decoder is not None:
            self._handles.append(decoder.register_forward_pre_hook(self._network_stage("loss_backward", "decode"),
                                                                   with_kwargs=True))
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            with led:
                yield self
        finally:
            self.enter("other")
            for handle in self._handles:
                handle.remove()
            self._handles.clear()

    def as_dict(self) -> dict[str, Any]:
        """{"stages": {stage: {"saved_peak_mb", "cuda_peak_mb"?}}, "saved_peak_mb", "saved_parts_at_peak_mb",
        "largest_block_mb", "note"}."""
        led = self.ledger
        stages = {}
        for name in self.STAGES:
            row: dict[str, float] = {}
            if name in led.stage_peaks:
                row["saved_peak_mb"] = led.mb(led.stage_peaks[name])
            if name in self._cuda_peaks:
                row["cuda_peak_mb"] = round(self._cuda_peaks[name], 1)
            if row:
                stages[name] = row
        return {"stages": stages, "saved_peak_mb": led.mb(led.peak),
                "saved_parts_at_peak_mb": {k: led.mb(v) for k, v in sorted(led.peak_parts.items()) if v},
                "largest_block_mb": {k: led.mb(v) for k, v in sorted(led.largest_block.items()) if v},
                "note": "saved_*: bytes autograd keeps for backward (activations, not weights); with checkpointing "
                        "a block keeps its inputs. cuda_peak_mb: the allocator's peak within the stage."}
