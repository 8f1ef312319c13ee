"""`sagvideo bench video-proxy`: the video claims on a video model trained here.

The model (`proxy.video_model`, trained by `python -m sagvideo.proxy.video_train`) generates
16x16 clips of a digit given per-frame control maps (a held-out digit's clip, blurred, as the
real pipeline is given depth maps), so each sample's intended motion is known exactly (a
circular shift per frame). Clips of `FRAMES` frames are longer than the model's
8-frame window and go through the pipeline's own pieces: `guidance.WindowedEps` (overlapping
windows, blended), `guidance.LatentStyleLoss` (the frame-averaged loss, chunk by chunk) around
the proxy's random-feature Gram loss per frame, and each method's sampler from the registry.

Per method, at matched compute (passes raised to SAG n = 4's evaluations + VJPs, as in
`bench methods`) and at the strength of a small sweep with the lowest style loss among points
whose motion error stays within `MOTION_SLACK` x the unguided one:

* style loss: per clip, mean over frames of the Gram distance to the stripe texture;
* warp error against the known motion: mean over pairs of |x_{t+1} - shift_v(x_t)| (absolute,
  pixels in [0, 1]) and its squared form (Lai et al. 2018);
* flicker: mean |x_{t+1} - x_t| over that of the unguided clip from the same seed;
* the model's own check: the warp error against the opposite velocity (`warp_error_reversed`)
  and the plain frame change (`change`), both far above `warp_error` when the clip moves as asked;
* per-window loss: the style loss over each window's frames, and the gap between windows.

With `--plot`, the PNG shows style loss against warp error: each method's sweep and its Pareto
front, the controls as rings.

The noise predictor has no classifier-free guidance, so SAG's step size is normalised by RMS(eps)
(`guidance.loop.step_size` for a plain eps), not by RMS(eps_c - eps_u) as in the pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any, Callable

FRAMES = 12
WINDOW, OVERLAP = 8, 4
STEPS = 10
SEEDS = 16
STRENGTHS = (0.05, 0.1, 0.2, 0.4, 0.8)  # x RMS(eps) / RMS(g): no CFG difference to normalise by
MOTION_SLACK = 1.5
METHODS_COMPARED = ("sag", "freedom", "ug", "mpgd")


class FramesGram:
    """`per_frame` for `LatentStyleLoss`: frames (N, 1, 16, 16) in [0, 1] -> Gram distance (N,)."""

    def __init__(self):
        from ..proxy import RandomGramLoss

        self.gram = RandomGramLoss()

    def per_frame(self, images):
        return self.gram.per_image(images * 2.0 - 1.0)


def bench_clips(seeds: int, frames: int):
    """The bench's clips: seed s moves a held-out digit at the (s mod 8)-th nonzero velocity (every clip
    moves, so the frame change that flicker is measured against is never near zero).

    Returns (clips (B, 1, F, 16, 16) in [-1, 1], their controls (same shape), velocity labels (B,))."""
    import torch

    from ..proxy.video_data import VELOCITIES, digit_split, moving_digit_clips, structure_maps

    moving = [k for k, v in enumerate(VELOCITIES) if v != (0, 0)]
    labels = torch.tensor([moving[s % len(moving)] for s in range(seeds)])
    held_out = digit_split("test")
    clips = torch.cat([moving_digit_clips(1, frames, torch.Generator().manual_seed(10_000 + s), held_out,
                                          labels[s:s + 1])[0] for s in range(seeds)])
    return clips, structure_maps(clips), labels


def _sampler_inputs(model, seeds: int, frames: int):
    """(WindowedEps, x_T (B, 1, F, 16, 16), labels (B,)) for seeds 0..B-1 (`bench_clips`' controls)."""
    import torch

    from ..guidance import WindowedEps, context_windows

    _, control, labels = bench_clips(seeds, frames)
    x_T = torch.stack([torch.randn(1, frames, 16, 16, generator=torch.Generator().manual_seed(s))
                       for s in range(seeds)])

    def window_fn(x_windows, t, spans):  # windows are stacked along the batch, window by window
        eps = model(x_windows, t, torch.cat([control[:, :, a:z] for a, z in spans]).to(x_windows.dtype))
        return eps, eps

    return WindowedEps(window_fn, context_windows(frames, WINDOW, OVERLAP)), x_T, labels


class Counting:
    """Counts evaluations (with or without a graph) and VJPs of a WindowedEps, in whole-clip units."""

    def __init__(self, inner):
        self.inner, self.evals, self.vjps = inner, 0, 0

    def eps_with_reference(self, x, t):
        self.evals += 1
        return self.inner.eps_with_reference(x, t)

    def __call__(self, x, t):
        return self.eps_with_reference(x, t)[0]

    def vjp(self, x, t, cotangent):
        self.vjps += 1
        return self.inner.vjp(x, t, cotangent)


def clip_metrics(x0, labels, unguided=None) -> dict[str, list[float]]:
    """Per-clip metrics of samples x0 (B, 1, F, 16, 16) in about [-1, 1] asked for velocities `labels`."""
    import torch

    from ..guidance import context_windows
    from ..proxy.video_data import VELOCITIES

    x = ((x0.clamp(-1, 1) + 1) / 2)[:, 0]  # (B, F, 16, 16) in [0, 1]
    b, f = x.shape[:2]
    per_frame = FramesGram().per_frame(x.reshape(b * f, 1, 16, 16)).view(b, f)
    def warped(sign: int):  # x_t moved by sign x the asked velocity: (B, F - 1, 16, 16)
        return torch.stack([torch.roll(x[i, :-1], tuple(sign * v for v in VELOCITIES[int(labels[i])]), dims=(1, 2))
                            for i in range(b)])

    residual = x[:, 1:] - warped(1)
    change = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(1, 2, 3))
    out = {"style_loss": per_frame.mean(1), "warp_error": residual.abs().mean(dim=(1, 2, 3)),
           "warp_error_sq": residual.pow(2).mean(dim=(1, 2, 3)), "change": change,
           "warp_error_reversed": (x[:, 1:] - warped(-1)).abs().mean(dim=(1, 2, 3))}
    spans = context_windows(f, WINDOW, OVERLAP).spans
    windows = torch.stack([per_frame[:, a:z].mean(1) for a, z in spans], dim=1)  # (B, windows)
    out["window_gap"] = windows.max(1).values - windows.min(1).values
    for k, (a, z) in enumerate(spans):
        out[f"window_{k}_loss"] = windows[:, k]
    if unguided is not None:
        out["flicker"] = change / unguided["change"].clamp_min(1e-8)
    return out


def _row(name: str, setting: str, metrics: dict, counts, seconds: float) -> dict[str, Any]:
    row = {"method": name, "setting": setting, "evals": counts.evals, "vjps": counts.vjps,
           "seconds": round(seconds, 2)}
    for key, values in metrics.items():
        row[key] = round(float(values.mean()), 5)
        row[key + "_per_seed"] = [round(float(v), 6) for v in values]
    return row


def run_method(model, method: str, knobs: dict, seeds: int, frames: int, steps: int, unguided=None):
    """(per-clip metrics, counts, seconds) of one method with `knobs` (config keys) on seeds 0..B-1."""
    import torch

    from ..guidance import LatentStyleLoss, SAGParams, ddim_timesteps, sample
    from ..method_registry import METHODS
    from ..proxy import NUM_TRAIN_TIMESTEPS, proxy_alphas_cumprod

    eps, x_T, labels = _sampler_inputs(model, seeds, frames)
    counting = Counting(eps)
    timesteps, ac = ddim_timesteps(NUM_TRAIN_TIMESTEPS, steps), proxy_alphas_cumprod()
    start = time.perf_counter()
    if method == "none":
        x0 = sample(counting, x_T, ac, timesteps).x0
    else:
        shared = {k.split(".", 1)[1]: v for k, v in knobs.items() if k.startswith("guidance.")}
        own = {k.split(".", 1)[1]: v for k, v in knobs.items() if not k.startswith("guidance.")}
        params = dataclasses.replace(SAGParams(strength=0.0, start=0.3, end=0.7, n=4), **shared)
        loss = LatentStyleLoss(lambda frames_: frames_, FramesGram(), chunk=frames)
        x0 = METHODS[method].sampler(counting, x_T, ac, timesteps, loss_fn=loss, params=params,
                                     settings=METHODS[method].settings(**own),
                                     generator=torch.Generator().manual_seed(0)).x0
    with torch.no_grad():
        metrics = clip_metrics(x0, labels, unguided)
    return metrics, counting, time.perf_counter() - start


def _pair_best_points(best: dict[str, dict], unguided: dict, travel: dict, log: Callable[[str], None]) -> None:
    """Each best point's `paired` entry: its per-seed differences from the unguided row (style, warp
    error, window gap), from time travel and from SAG's best point (style, warp error, flicker)."""
    from .paired import format_paired, paired_stats

    for method, b in best.items():
        others = {"unguided": unguided, "time travel": travel, **({"sag best": best["sag"]} if method != "sag" else {})}
        b["paired"] = {}
        for name, other in others.items():
            for key in ("style_loss", "warp_error", "flicker" if name != "unguided" else "window_gap"):
                if key + "_per_seed" in other:
                    stats = paired_stats(b[key + "_per_seed"], other[key + "_per_seed"])
                    b["paired"][f"{key} vs {name}"] = stats
                    log("  " + format_paired(f"{method} ({b['setting']}) {key} vs {name}", stats))


def bench_video_proxy(args: argparse.Namespace, log: Callable[[str], None] = print) -> list[dict]:
    """Controls, each method's strength sweep at matched compute, best points, paired statistics."""
    import torch

    from ..errors import InputError
    from ..method_registry import METHODS
    from ..proxy.video_train import load_video_proxy
    from .methods import matched_knob

    seeds, steps = args.seeds, args.steps
    frames = FRAMES if getattr(args, "clip_frames", None) is None else args.clip_frames
    if seeds < 2 or steps < 2 or frames <= WINDOW:
        raise InputError(f"bench video-proxy needs --seeds >= 2, --steps >= 2 and --clip-frames above {WINDOW} "
                         f"(so a clip spans several windows), got {seeds}, {steps}, {frames}.")
    torch.set_num_threads(max(1, getattr(args, "threads", 2)))
    model, meta = load_video_proxy()
    base, counts, sec = run_method(model, "none", {}, seeds, frames, steps)
    run = lambda method, knobs: run_method(model, method, knobs, seeds, frames, steps, base)  # noqa: E731
    clips, _, labels = bench_clips(seeds, frames)
    with torch.no_grad():
        source = clip_metrics(clips, labels, base)
    rows = [_row("source", "the clips the controls come from (true motion)", source, Counting(None), 0.0),
            _row("none", "unguided", base, counts, sec)]
    travel, counts, sec = run("sag", {"guidance.strength": 0.0})
    rows.append(_row("sag", "time travel, strength 0", travel, counts, sec))
    for control in rows[1:]:
        control["role"] = "control"
    budget = counts.evals + counts.vjps
    floor = MOTION_SLACK * float(base["warp_error"].mean())
    best: dict[str, dict] = {}
    for method in METHODS_COMPARED:
        knobs = {"mpgd.scale": 1.0} if method == "mpgd" else {}
        if METHODS[method].match_knob:
            knobs[METHODS[method].match_knob] = matched_knob(method, budget, "style", steps)
        points = []
        for strength in STRENGTHS:
            metrics, counts, sec = run(method, {**knobs, "guidance.strength": strength})
            row = _row(method, f"strength={strength}, " + ", ".join(f"{k}={v}" for k, v in knobs.items()),
                       metrics, counts, sec)
            row["strength"], row["role"] = strength, "sweep"
            points.append(row)
        kept = [p for p in points if p["warp_error"] <= floor] or points[:1]
        best[method] = min(kept, key=lambda p: p["style_loss"])
        best[method]["best"] = True
        rows += points
    log(f"\nvideo proxy: paired differences over {seeds} seeds (best point minus the other row)")
    _pair_best_points(best, unguided=rows[1], travel=rows[2], log=log)
    if getattr(args, "plot", None):
        from pathlib import Path

        from .pareto_plot import plot_video_front

        plot_video_front(Path(args.plot), rows)
        log(f"wrote {args.plot}")
    rows.append({"method": "model", "setting": "record", **{k: meta[k] for k in ("train_seconds", "num_parameters",
                                                                                  "final_train_loss")}})
    return rows
