"""Still images: the style reference in, single images and the contact sheet out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .errors import InputError
from .files import atomic_path

MAX_STYLE_SIDE = 1024  # the loss sees 224 px; larger style images are downscaled on load


def load_style_image(path: str | os.PathLike, max_side: int = MAX_STYLE_SIDE) -> torch.Tensor:
    """Style image -> float32 (3, H, W) in [0, 1]. Grayscale and alpha are converted, huge images shrunk."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"style image not found: {path}. Pass an existing image file with --style.")
    try:
        with Image.open(path) as img:
            img.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced size when huge
            img = _to_rgb(img)
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"style image {path} is too large to decode safely ({exc}). Downscale it below ~100 megapixels."
        ) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read style image {path}: {exc}. Use a PNG or JPEG file.") from exc
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB; transparent pixels are composited over white rather than taking arbitrary colours."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """A photo for `--depth-from` -> uint8 (H, W, 3)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"image not found: {path}. Pass an existing image file with --depth-from.")
    try:
        with Image.open(path) as img:
            return np.asarray(_to_rgb(img))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}. Use a PNG or JPEG file.") from exc


def write_image(image: np.ndarray, path: Path) -> None:
    """uint8 (H, W, 3) -> image file, atomically (format from the suffix)."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))


def _row(images: list[np.ndarray], height: int) -> list[Image.Image]:
    out = []
    for array in images:
        img = Image.fromarray(array)
        out.append(img.resize((max(1, round(img.width * height / img.height)), height)))
    return out


def contact_sheet(
    rows: dict[str, list[np.ndarray]], path: Path, *, height: int = 96, max_columns: int = 8, note: str = ""
) -> None:
    """A PNG with one labelled row per entry (e.g. input, depth, output, style), written atomically.

    rows: label -> list of uint8 (H, W, 3) or (H, W) images; long rows are subsampled evenly.
    """
    label_w, pad = 70, 4
    prepared = {}
    for label, images in rows.items():
        pick = np.linspace(0, len(images) - 1, min(len(images), max_columns)).round().astype(int)
        chosen = [np.repeat(images[i][..., None], 3, -1) if images[i].ndim == 2 else images[i] for i in pick]
        prepared[label] = _row(chosen, height)
    width = label_w + max(sum(im.width + pad for im in ims) for ims in prepared.values())
    top = 18 if note else 0
    sheet = Image.new("RGB", (width, top + len(prepared) * (height + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    if note:
        draw.text((4, 3), note, fill=(180, 0, 0))
    for r, (label, images) in enumerate(prepared.items()):
        y = top + r * (height + pad)
        draw.text((4, y + height // 2 - 5), label, fill="black")
        x = label_w
        for im in images:
            sheet.paste(im, (x, y))
            x += im.width + pad
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
