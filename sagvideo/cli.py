"""Command line: `sagvideo stylize | image | depth | batch | bench | ui`.

Flags override values of the `--config` files, which override the defaults. Bad input exits
with code 2 and a message that names the problem and the fix; nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .commandline import add_config_flags, config_from_flags, console_entry, run_command
from .console import configure_output
from .defaults import GRADIENT_METHODS, IP_ADAPTER_MODES, SCHEMES
from .method_registry import PIPELINE_METHODS
from .version import package_version

# flag name -> config key; None values are "not given" and leave the config alone
FLAG_KEYS = {
    "frames": "video.frames", "stride": "video.stride", "start": "video.start", "size": "video.size",
    "start_time": "video.start_time", "duration": "video.duration", "window": "video.window",
    "overlap": "video.overlap", "preview": "output.preview",
    "steps": "sampling.steps", "cfg_scale": "sampling.cfg_scale", "seed": "sampling.seed",
    "negative_prompt": "sampling.negative_prompt", "controlnet_scale": "sampling.controlnet_scale",
    "guidance": "guidance.method", "gradient": "guidance.gradient", "scheme": "guidance.scheme", "n": "guidance.n",
    "passes": "guidance.passes", "repeats": "guidance.repeats", "strength": "guidance.strength",
    "depth_model": "model.depth", "device": "model.device", "dtype": "model.dtype", "denoise": "sampling.denoise",
    "lora": "model.loras", "ip_adapter_scale": "ip_adapter.scale", "ip_adapter_mode": "ip_adapter.mode",
    "devices": "distributed.devices", "num_nodes": "distributed.num_nodes", "accelerator": "distributed.accelerator",
}


def config_from_args(args: argparse.Namespace, base: str | None = None):
    """Defaults <- `base` config (the command's own, e.g. "image") <- --config files <- --set pairs <- flags."""
    overrides = {}
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "no_guidance", False):
        overrides["guidance.enabled"] = False
    for flag in ("overwrite", "gif", "frames_dir"):
        if getattr(args, flag, False):
            overrides[f"output.{flag}"] = True
    return config_from_flags(args, overrides, base)


def _common(p: argparse.ArgumentParser, sampling: bool = True) -> None:
    add_config_flags(p)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", choices=["auto", "float16", "bfloat16", "float32"])
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose", action="store_true",
                   help="show every third-party log line and warning (filtered by default)")
    if not sampling:
        return
    p.add_argument("--steps", type=int, help="DDIM steps (default 25; image 100)")
    p.add_argument("--cfg-scale", dest="cfg_scale", type=float, help="classifier-free guidance scale (7.5)")
    p.add_argument("--negative-prompt", dest="negative_prompt")
    p.add_argument("--controlnet-scale", dest="controlnet_scale", type=float, help="depth conditioning weight (1.0)")
    p.add_argument("--seed", type=int, help="same seed + inputs = same output (default 0)")
    p.add_argument("--guidance", choices=PIPELINE_METHODS, help="guidance method (sag; see README: Guidance methods)")
    p.add_argument("--gradient", choices=GRADIENT_METHODS, help="how SAG takes its gradient (symplectic)")
    p.add_argument("--scheme", choices=SCHEMES)
    p.add_argument("--n", type=int, help="network evaluations in the clean estimate (4; Heun: solver steps)")
    p.add_argument("--passes", type=int, help="passes per guided step, re-noised between them (default: the method's)")
    p.add_argument("--repeats", type=int, help=argparse.SUPPRESS)  # the old name of --passes
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

    from .ui.launch import add_ui_arguments

    add_ui_arguments(sub.add_parser("ui", help="a web page (Gradio) for stylizing: pip install \"sagvideo[ui]\""))
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
    p.add_argument("--devices", type=int, metavar="N",
                   help="sample the clip with N processes per machine (one per GPU), its windows shared out (1)")
    p.add_argument("--num-nodes", dest="num_nodes", type=int, metavar="M", help="machines, with --devices (1)")
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], help="for --devices: auto (from --device), cpu, gpu")
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
    from .preflight import check_stylize

    config = config_from_args(args)
    files = check_stylize(args, config)  # before torch loads: a bad path answers at once
    from .distributed import stylize_to_files

    report = stylize_to_files(args.video, args.style, args.prompt, files, config=config,
                              depth_dir=args.depth, progress=not args.quiet)
    if report is not None:  # None: a rank other than 0 of a distributed run (rank 0 wrote the outputs)
        _print_done(report, files.main)
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from .preflight import check_image

    config = config_from_args(args, base="image")
    files = check_image(args, config)  # before torch loads
    from .api import stylize_image_to_file

    report = stylize_image_to_file(args.prompt, args.style, files, config=config, depth_from=args.depth_from,
                                   width=args.width, height=args.height, progress=not args.quiet)
    _print_done(report, args.output)
    return 0


def cmd_depth(args: argparse.Namespace) -> int:
    from .preflight import check_depth

    config = config_from_args(args)
    files = check_depth(args, config)  # before torch loads
    from .api import read_video_clip
    from .pipeline import StylizePipeline
    from .video.depth import depth_to_uint8

    with files.open():
        clip = read_video_clip(args.video, config, for_sampling=False)
        pipe = StylizePipeline.from_config(config)  # loads only the depth estimator
        depth = pipe.prepare_depth(clip.frames, cache_dir=files.layout.depth_cache, progress=not args.quiet)
        gray = depth_to_uint8(depth)
        files.write_depth_maps(gray)
    print(f"wrote {len(gray)} depth maps to {args.output} (depth_00000.png ...)")
    return 0


def _print_done(report: dict, output: Path) -> None:
    if "label" in report:
        print(f"note: {report['label']}", file=sys.stderr)
    losses = [r["loss"] for r in report.get("guided_steps", [])]
    trend = f"; style loss {losses[0]:.4g} -> {losses[-1]:.4g}" if losses else ""
    print(f"wrote {output} (report {Path(output).with_suffix('.json')}){trend}")




def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (2 bad input, 1 failure, 130/143 interrupted)."""
    args = build_parser().parse_args(argv)
    configure_output(verbose=getattr(args, "verbose", False))
    return run_command(args.handler, args)


def console_main(argv: list[str] | None = None) -> None:
    """The `sagvideo` command: `main()` under the signal policy (`commandline.console_entry`)."""
    console_entry(main, argv)


if __name__ == "__main__":
    console_main()
