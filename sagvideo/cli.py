"""Command line: `sagvideo stylize | image | depth | batch | bench`.

Flags override values of the `--config` files, which override the defaults. Bad input exits
with code 2 and a message that names the problem and the fix; nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from .defaults import GRADIENT_METHODS, GUIDANCE_METHODS, IP_ADAPTER_MODES, SCHEMES
from .errors import SagVideoError
from .version import package_version

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)

# flag name -> config key; None values are "not given" and leave the config alone
FLAG_KEYS = {
    "frames": "video.frames", "stride": "video.stride", "start": "video.start", "size": "video.size",
    "start_time": "video.start_time", "duration": "video.duration", "window": "video.window",
    "overlap": "video.overlap", "preview": "output.preview",
    "steps": "sampling.steps", "cfg_scale": "sampling.cfg_scale", "seed": "sampling.seed",
    "negative_prompt": "sampling.negative_prompt", "controlnet_scale": "sampling.controlnet_scale",
    "guidance": "guidance.method", "gradient": "guidance.gradient", "scheme": "guidance.scheme", "n": "guidance.n",
    "repeats": "guidance.repeats", "strength": "guidance.strength",
    "depth_model": "model.depth", "device": "model.device", "dtype": "model.dtype", "denoise": "sampling.denoise",
    "lora": "model.loras", "ip_adapter_scale": "ip_adapter.scale", "ip_adapter_mode": "ip_adapter.mode",
}


def config_from_args(args: argparse.Namespace, default: str | None = None):
    """Defaults <- --config files <- --set pairs <- explicit flags."""
    from .config import load_config, parse_set_items

    overrides = parse_set_items(getattr(args, "set", None))
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "no_guidance", False):
        overrides["guidance.enabled"] = False
    for flag in ("overwrite", "gif", "frames_dir"):
        if getattr(args, flag, False):
            overrides[f"output.{flag}"] = True
    files = args.config or ([default] if default else [])
    return load_config(files, overrides)


def _common(p: argparse.ArgumentParser, sampling: bool = True) -> None:
    p.add_argument("--config", action="append", metavar="NAME|FILE",
                   help="YAML config or a name in configs/ (video, image, tiny, 12gb, 8gb); repeatable")
    p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set guidance.n=8 video.size=768")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", choices=["auto", "float16", "bfloat16", "float32"])
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if not sampling:
        return
    p.add_argument("--steps", type=int, help="DDIM steps (default 25; image 100)")
    p.add_argument("--cfg-scale", dest="cfg_scale", type=float, help="classifier-free guidance scale (7.5)")
    p.add_argument("--negative-prompt", dest="negative_prompt")
    p.add_argument("--controlnet-scale", dest="controlnet_scale", type=float, help="depth conditioning weight (1.0)")
    p.add_argument("--seed", type=int, help="same seed + inputs = same output (default 0)")
    p.add_argument("--guidance", choices=GUIDANCE_METHODS, help="guidance method (sag; see README: Guidance methods)")
    p.add_argument("--gradient", choices=GRADIENT_METHODS, help="how SAG takes its gradient (symplectic)")
    p.add_argument("--scheme", choices=SCHEMES)
    p.add_argument("--n", type=int, help="network evaluations in the clean estimate (4; Heun: solver steps)")
    p.add_argument("--repeats", type=int, help="time-travel passes per guided step (2)")
    p.add_argument("--strength", type=float, help="style guidance strength, relative to --cfg-scale (0.2)")
    p.add_argument("--denoise", type=float, metavar="S",
                   help="start from the source noised to fraction S of the schedule (0 < S <= 1; default 1: pure noise)")
    p.add_argument("--lora", action="append", metavar="PATH[:SCALE]",
                   help="a LoRA (image or motion) to apply, with its scale (default 1.0); repeatable")
    p.add_argument("--no-guidance", dest="no_guidance", action="store_true", help="sample without style guidance")
    p.add_argument("--ip-adapter-scale", dest="ip_adapter_scale", type=float, metavar="S",
                   help="weight of the style image as an image prompt (IP-Adapter), 0 to 2 (1; 0 = off)")
    p.add_argument("--ip-adapter-mode", dest="ip_adapter_mode", choices=IP_ADAPTER_MODES,
                   help="where the image prompt enters: style blocks only (style, default), style+layout, or all")
    p.add_argument("--depth-model", dest="depth_model", help="midas (default), tiny, or a transformers depth model id")


def _frames(text: str) -> int | str:
    """--frames N or --frames all."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of frames or 'all', got {text!r}") from None


def _clip_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=_frames, help="frames to stylize, or 'all' for the whole span (default 16)")
    p.add_argument("--stride", type=int, help="take every N-th frame (default 1)")
    p.add_argument("--start", type=int, help="first frame index (default 0)")
    p.add_argument("--start-time", dest="start_time", type=float, metavar="SECONDS", help="first frame by time")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="how much of the video, instead of --frames")
    p.add_argument("--size", type=int, help="short side in pixels, rounded to a multiple of 8 (default 512)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagvideo", description="Restyle a video to match a reference image (Symplectic Adjoint Guidance).",
        epilog="Example: sagvideo stylize in.mp4 --style painting.jpg -o out.mp4 (add --prompt '...' to help)\n"
               "Offline smoke run: add --config tiny (random weights; checks the plumbing only).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sagvideo {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_stylize(sub)
    _add_image(sub)
    _add_depth(sub)

    from .batch.run import add_batch_arguments, main_batch

    p = sub.add_parser("batch", help="many jobs over all GPUs / nodes with PyTorch Lightning")
    add_batch_arguments(p)
    p.set_defaults(handler=main_batch)

    from .bench.cli import add_bench_arguments

    p = sub.add_parser("bench", help="benchmarks: guidance gradients, pipeline, decode chunks, methods")
    add_bench_arguments(p)
    return parser


def _add_stylize(sub) -> None:
    p = sub.add_parser(
        "stylize", help="stylize a video clip",
        description="Stylize a clip of a video toward a style image, keeping its motion (depth-conditioned\n"
                    "AnimateDiff + Symplectic Adjoint Guidance). Writes OUT.mp4 (source fps and size, audio\n"
                    "kept), OUT.json (report with quality metrics), OUT.contact.png (input / depth / output /\n"
                    "style at a glance) and OUT.plot.png (loss per guided pass, metrics per frame).",
        epilog="Example: sagvideo stylize in.mp4 --style painting.jpg --prompt 'a dancer, oil painting' "
               "--frames all -o out.mp4\nOffline smoke run with random weights: add --config tiny.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", type=Path, help="input video (any format ffmpeg reads)")
    p.add_argument("--style", type=Path, required=True, help="style reference image")
    p.add_argument("--prompt", help="text describing the scene (optional: the style image alone carries the look; "
                                    "a prompt helps)")
    p.add_argument("-o", "--output", type=Path, help="output .mp4 (default: <video>_sag.mp4 beside the input)")
    p.add_argument("--depth", type=Path, metavar="DIR", help="precomputed depth maps (one image per frame)")
    p.add_argument("--gif", action="store_true", help="also write a GIF (long side at most 512 px)")
    p.add_argument("--frames-dir", dest="frames_dir", action="store_true", help="also write PNG frames")
    p.add_argument("--window", type=int, help="frames the motion module sees at once (16; 0 = all jointly)")
    p.add_argument("--overlap", type=int, help="frames shared by neighbouring windows (4)")
    p.add_argument("--preview", type=int, nargs="?", const=5, metavar="K",
                   help="every K steps (5), write OUT.preview.png: the current clean estimate of a few frames")
    _clip_flags(p)
    _common(p)
    p.set_defaults(handler=cmd_stylize)


def _add_image(sub) -> None:
    p = sub.add_parser("image", help="stylize a single image (the one-frame case)",
                       description="Generate one image toward a style image with the same guided sampler "
                                   "(F = 1, no motion module); --depth-from conditions it on a photo's depth.")
    p.add_argument("--style", type=Path, required=True, help="style reference image")
    p.add_argument("--prompt", help="text describing the image (optional; a prompt helps)")
    p.add_argument("--depth-from", dest="depth_from", type=Path, help="photo whose depth conditions the image")
    p.add_argument("-o", "--output", type=Path, default=Path("sag_image.png"))
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--size", type=int, help="short side when --width/--height are not given (512)")
    _common(p)
    p.set_defaults(handler=cmd_image)


def _add_depth(sub) -> None:
    p = sub.add_parser("depth", help="write the clip's depth maps (PNG per frame) and stop",
                       description="Estimate one depth map per selected frame, normalised over the whole clip, "
                                   "and write them as OUT/depth_00000.png ... (white = near); reusable with "
                                   "`stylize --depth OUT`. Maps are cached in .sagvideo-depth/ beside OUT.")
    p.add_argument("video", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for depth_00000.png, depth_00001.png ...")
    p.add_argument("--depth-model", dest="depth_model")
    _clip_flags(p)
    _common(p, sampling=False)
    p.set_defaults(handler=cmd_depth)


def cmd_stylize(args: argparse.Namespace) -> int:
    from .api import stylize_to_files

    config = config_from_args(args)
    output = args.output or args.video.with_name(f"{args.video.stem}_sag.mp4")
    report = stylize_to_files(args.video, args.style, args.prompt, output, config=config,
                              depth_dir=args.depth, progress=not args.quiet)
    _print_done(report, output)
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from .api import stylize_image_to_file

    config = config_from_args(args, default="image")
    report = stylize_image_to_file(args.prompt, args.style, args.output, config=config, depth_from=args.depth_from,
                                   width=args.width, height=args.height, progress=not args.quiet)
    _print_done(report, args.output)
    return 0


def cmd_depth(args: argparse.Namespace) -> int:
    import numpy as np

    from .api import read_video_clip
    from .files import check_output_path
    from .guards import check_not_inputs, input_files
    from .layout import OutputLayout
    from .pipeline import StylizePipeline
    from .video.depth import depth_to_uint8
    from .video.write import write_frames_dir

    config = config_from_args(args)
    check_output_path(args.output, config.output.overwrite, folder_output=True)  # before any work
    check_not_inputs([args.output], input_files(args.video))
    clip = read_video_clip(args.video, config, for_sampling=False)
    pipe = StylizePipeline.from_config(config)  # loads only the depth estimator
    depth = pipe.prepare_depth(clip.frames, cache_dir=OutputLayout.of(args.output).depth_cache,
                               progress=not args.quiet)
    gray = depth_to_uint8(depth)
    write_frames_dir(np.repeat(gray[..., None], 3, -1), args.output, overwrite=config.output.overwrite, prefix="depth")
    print(f"wrote {len(gray)} depth maps to {args.output} (depth_00000.png ...)")
    return 0


def _print_done(report: dict, output: Path) -> None:
    if "label" in report:
        print(f"note: {report['label']}", file=sys.stderr)
    losses = [r["loss"] for r in report.get("guided_steps", [])]
    trend = f"; style loss {losses[0]:.4g} -> {losses[-1]:.4g}" if losses else ""
    print(f"wrote {output} (report {Path(output).with_suffix('.json')}){trend}")


def torch_out_of_memory() -> type[BaseException]:
    """torch.OutOfMemoryError, imported only once a command runs (keeps --help fast)."""
    import torch

    return torch.OutOfMemoryError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        return int(handler(args) or 0)
    except SagVideoError as exc:
        print(f"sagvideo: error: {exc}", file=sys.stderr)
        return 2
    except torch_out_of_memory() as exc:
        print(f"sagvideo: error: out of GPU memory ({str(exc).splitlines()[0]}). To fix: add --config 12gb (or 8gb), "
              f"use fewer --frames or a smaller --size, or --set guidance.n=2.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sagvideo: interrupted; no partial output was kept.", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(f"sagvideo: error: cannot write '{exc.filename or 'an output'}': {exc.strerror} (the disk or a quota "
              f"is full, or a file size limit was hit). Nothing partial was kept. To fix: free space, or write to "
              f"another disk (-o).", file=sys.stderr)
        return 1


def console_main() -> None:
    """The `sagvideo` command: `main()`, then exit with its code.

    After an interrupt that `main` handled (code 130, everything cleaned up), exit at once:
    CPython may otherwise end the process by re-raising SIGINT at shutdown when a C extension
    saw the KeyboardInterrupt on its way out, which would turn our exit code 130 into a signal.
    """
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    console_main()
