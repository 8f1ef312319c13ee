"""Checks a command makes before torch is imported: they answer in a fraction of a second.

Input files exist and are readable, output paths can be written (and are not inputs), output
suffixes fit, and the hub models of the run are available when the hub cannot be reached
(every missing one is listed at once, each with its download command). Config keys and ranges
are checked by `config.load_config`, also torch-free. Nothing here imports torch: the command
line runs these first, so a typo in a path answers at once instead of after the torch import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import InputError, ModelUnavailableError
from .defaults import (
    CHECKPOINT_SUFFIXES, DEFAULT_IMAGE_ENCODER, DEFAULT_IP_ADAPTER, IMAGE_ENCODER_SUBFOLDER, IP_ADAPTER_WEIGHT,
)
from .outputs.job import JobFiles

MIDAS_REPO, MIDAS_FILE = "lllyasviel/Annotators", "dpt_hybrid-midas-501f0c75.pt"  # controlnet-aux's default


def check_readable_file(path: str | os.PathLike, role: str, flag: str) -> Path:
    """`path` is an existing, readable file; InputError naming it, its `role` and `flag` otherwise."""
    path = Path(path).expanduser()
    where = "" if path.is_absolute() else f" (relative paths start at '{Path.cwd()}')"
    if not path.exists():
        raise InputError(f"{role} not found: '{path}'. To fix: check the path given to {flag}{where}.")
    if not path.is_file():
        raise InputError(f"{role} '{path}' is not a file. To fix: give {flag} the path of a file.")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {role} '{path}' (permissions). To fix: `chmod a+r '{path}'`, or copy it "
                         f"somewhere you can read it.")
    return path


def check_image_file(path: str | os.PathLike, role: str, flag: str) -> Path:
    """A readable file Pillow recognises as an image (only its header is read)."""
    from PIL import Image, UnidentifiedImageError

    path = check_readable_file(path, role, flag)
    try:
        with Image.open(path):
            pass
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"cannot read {role} '{path}': it is not an image Pillow can open ({exc}). To fix: give "
                         f"{flag} a PNG or JPEG file.") from exc
    return path


def _is_hub_id(name: str) -> bool:
    """"org/name" that is not a path on disk (paths and files are checked when the models load)."""
    return (bool(name) and name.count("/") == 1 and not name.startswith(("/", ".", "~"))
            and not name.lower().endswith(CHECKPOINT_SUFFIXES) and not Path(name).expanduser().exists())


def hub_models_needed(config: Any, *, video: bool, depth: bool, sampling: bool = True
                      ) -> dict[str, tuple[str, str | None]]:
    """Config key -> (hub id, single file to fetch or None) for every hub model the run loads:
    the sampling networks (with the motion adapter for a video), and the depth estimator."""
    m = config.model
    wanted: dict[str, tuple[str, str | None]] = {}
    if sampling and m.preset != "tiny":
        wanted.update({"model.base": (m.base, None), "model.controlnet": (m.controlnet, None),
                       "model.clip_vision": (m.clip_vision, None)})
        if Path(m.base).expanduser().is_file():  # a single checkpoint: the rest comes from this config source
            wanted["model.single_file_config"] = (m.single_file_config, None)
        if m.vae:
            wanted["model.vae"] = (m.vae, None)
        if video:
            wanted["model.motion_adapter"] = (m.motion_adapter, None)
        if m.loss_decoder and m.loss_decoder != "tiny" and config.guidance.enabled:
            wanted["model.loss_decoder"] = (m.loss_decoder, None)
        if config.ip_adapter.scale > 0:  # the image prompt: the adapter file and its encoder's folder
            wanted["model.ip_adapter"] = (m.ip_adapter, IP_ADAPTER_WEIGHT if m.ip_adapter == DEFAULT_IP_ADAPTER else None)
            wanted["model.image_encoder"] = (m.image_encoder, f"{IMAGE_ENCODER_SUBFOLDER}/*"
                                             if m.image_encoder == DEFAULT_IMAGE_ENCODER else None)
    if depth and m.depth != "tiny":
        wanted["model.depth"] = (MIDAS_REPO, MIDAS_FILE) if m.depth == "midas" else (m.depth, None)
    return {key: ref for key, ref in wanted.items() if _is_hub_id(ref[0])}


def _cached(repo_id: str, filename: str | None) -> bool:
    """Whether the Hugging Face cache holds a snapshot of `repo_id` (and `filename` in it, if given)."""
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    try:
        found = [s for s in snapshots.iterdir() if s.is_dir()]
    except OSError:
        return False
    if filename and filename.endswith("/*"):  # a folder of the repo
        return any((s / filename[:-2]).is_dir() for s in found)
    return any((s / filename).exists() for s in found) if filename else bool(found)


def download_command(repo_id: str, filename: str | None) -> str:
    """The `hf download` line that fetches `repo_id` (or one file, or one folder of it)."""
    if filename and filename.endswith("/*"):
        return f'hf download {repo_id} --include "{filename}"'
    return f"hf download {repo_id}" + (f" {filename}" if filename else "")


def check_models_available(config: Any, *, video: bool, depth: bool, sampling: bool = True) -> None:
    """When the hub cannot be reached, every hub model of the run must be cached: else one
    ModelUnavailableError lists them all, each with its `hf download` command."""
    from .models.hub import hub_offline, hub_reachable

    needed = hub_models_needed(config, video=video, depth=depth, sampling=sampling)
    if not needed or (not hub_offline() and hub_reachable()):
        return
    missing = {key: ref for key, ref in needed.items() if not _cached(*ref)}
    if not missing:
        return
    why = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub cannot be reached"
    lines = [f"{len(missing)} of the {len(needed)} models this run needs are not in the Hugging Face cache, and "
             f"{why}:"]
    lines += [f"  {key}: {repo}" for key, (repo, _) in missing.items()]
    lines.append("To fix: where the hub is reachable, download them (huggingface_hub's `hf` command):")
    lines += [f"  {download_command(repo, filename)}" for repo, filename in dict.fromkeys(missing.values())]
    lines.append("then copy the cache (~/.cache/huggingface/hub, or $HF_HOME/hub) here; or point each config key "
                 "at a local folder; or add --config tiny for an offline smoke run with random weights.")
    raise ModelUnavailableError("\n".join(lines))


def check_stylize(args: Any, config: Any) -> JobFiles:
    """`sagvideo stylize`: the outputs (none an input, all writable), the video, style image and
    depth folder, the models; returns the job's files."""
    output = args.output or Path(args.video).with_name(f"{Path(args.video).stem}_sag.mp4")
    files = JobFiles.for_video(output, config.output, video=args.video, style=args.style, depth_dir=args.depth).check()
    check_readable_file(args.video, "video file", "the video argument")
    check_image_file(args.style, "style image", "--style")
    if args.depth is not None and not Path(args.depth).expanduser().is_dir():
        raise InputError(f"Depth folder '{args.depth}' not found. To fix: give --depth a folder of one depth map "
                         f"per frame (from `sagvideo depth`).")
    check_models_available(config, video=True, depth=args.depth is None)
    return files


def check_image(args: Any, config: Any) -> JobFiles:
    """`sagvideo image`: the output, the style image, the photo for --depth-from, the models."""
    files = JobFiles.for_image(args.output, config.output, style=args.style, depth_from=args.depth_from).check()
    check_image_file(args.style, "style image", "--style")
    if args.depth_from is not None:
        check_image_file(args.depth_from, "photo", "--depth-from")
    check_models_available(config, video=False, depth=args.depth_from is not None)
    return files


def check_depth(args: Any, config: Any) -> JobFiles:
    """`sagvideo depth`: the output folder (not the video, writable), the video, the depth model."""
    files = JobFiles.for_depth_maps(args.output, config.output, video=args.video).check()
    check_readable_file(args.video, "video file", "the video argument")
    check_models_available(config, video=False, depth=True, sampling=False)
    return files
