"""Still images: decoding any common mode and bit depth, the style reference in, images and the contact sheet out."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from .errors import InputError
from .files import atomic_path

if TYPE_CHECKING:
    import torch

MAX_STYLE_SIDE = 1024  # the loss sees 224 px; larger style images are downscaled on load
MIN_STYLE_SIDE = 64  # below this the 224 px CLIP input is mostly interpolation blur
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601, as Pillow's "L" conversion
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_GRAY_MODES = ("1", "L", "LA", "La")


@dataclass(frozen=True)
class DecodedImage:
    """A still image as a viewer shows it (upright), in float32.

    `color` is (H, W, 1) for gray files or (H, W, 3) for everything else, in [0, 1];
    `alpha` is (H, W) in [0, 1] (1 = opaque), or None when the file has no transparency.
    """

    color: np.ndarray
    alpha: np.ndarray | None = None

    @property
    def has_alpha(self) -> bool:
        return self.alpha is not None

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) as displayed."""
        return self.color.shape[1], self.color.shape[0]

    def rgb(self, background: float = 1.0) -> np.ndarray:
        """float32 (H, W, 3) in [0, 1]; transparent pixels are composited over `background` (white)."""
        color = np.repeat(self.color, 3, axis=-1) if self.color.shape[-1] == 1 else self.color
        if self.alpha is None:
            return np.ascontiguousarray(color, dtype=np.float32)
        a = self.alpha[..., None]
        return np.ascontiguousarray(color * a + background * (1 - a), dtype=np.float32)

    def luminance(self) -> np.ndarray:
        """float32 (H, W) in [0, 1]: gray as stored, colour as Rec. 601 luma; alpha is ignored."""
        gray = self.color[..., 0] if self.color.shape[-1] == 1 else self.color @ LUMA
        return np.ascontiguousarray(gray, dtype=np.float32)


def decode_image(img: Image.Image, max_side: int | None = None) -> DecodedImage:
    """An opened Pillow image of any common mode -> DecodedImage (upright, float32 in [0, 1]).

    Gray: 1 and L (/255), I;16/I;16B/I;16L (/65535), I (/65535 when its values fit 16 bits,
    else stretched min..max), F (as is when in [0, 1], else stretched min..max; NaN/inf is a
    ValueError). Colour: RGB, palettes, CMYK (Adobe-inverted or plain), YCbCr and the rest go
    through Pillow's RGB conversion. Alpha comes from LA/RGBA/PA, palette transparency and
    transparent-colour keys. EXIF orientation is applied, so the result is as viewers show it.
    With `max_side`, an image over twice that size is first box-averaged by a whole factor to
    bound memory; the caller still resizes it exactly.
    """
    # Pillow decodes every CMYK JPEG as Photoshop's inverted CMYK; without the Adobe marker the
    # file stores plain ink values, so undo that (read before a new image drops `format`).
    plain_cmyk = img.mode == "CMYK" and img.format in ("JPEG", "MPO") and "adobe" not in img.info
    img = ImageOps.exif_transpose(img)  # first: TIFF keeps its orientation in tags a new image drops
    if max_side:
        img = _box_reduce(img, max_side)
    mode = img.mode
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        values = np.asarray(img)
        if mode == "F":
            gray = _float_to_unit(values)
        elif mode == "I" and (values.min(initial=0) < 0 or values.max(initial=0) > 65535):
            gray = _stretch(values.astype(np.float64))
        else:
            gray = values.astype(np.float32) / 65535
        return DecodedImage(gray[..., None].astype(np.float32), _key_alpha(img, values))
    if mode == "CMYK" and plain_cmyk:
        img = Image.fromarray(255 - np.asarray(img), mode="CMYK")
    has_alpha = (mode in _ALPHA_MODES or "transparency" in img.info
                 or (mode == "P" and img.palette is not None and img.palette.mode.endswith("A")))
    gray = mode in _GRAY_MODES
    target = ("LA" if gray else "RGBA") if has_alpha else ("L" if gray else "RGB")
    values = np.asarray(img.convert(target), dtype=np.float32) / 255
    if values.ndim == 2:
        values = values[..., None]
    if has_alpha:
        return DecodedImage(np.ascontiguousarray(values[..., :-1]), np.ascontiguousarray(values[..., -1]))
    return DecodedImage(values)


def _box_reduce(img: Image.Image, max_side: int) -> Image.Image:
    """Shrink by the whole factor that keeps the long side >= 2 * max_side (Pillow's reducing gap)."""
    factor = max(img.size) // (2 * max_side)
    if factor < 2 or img.mode in ("1", "P", "PA") or "transparency" in img.info:
        return img  # palette indices and colour keys cannot be averaged; such files are rarely huge
    if img.mode in _SIXTEEN_BIT:
        return img.convert("I").reduce(factor)
    return img.reduce(factor)  # Pillow weights RGBA/LA colour by alpha here: no hidden colour bleeds in


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if hi <= lo:
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def _float_to_unit(values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError("the float image contains NaN or infinite values")
    if values.size and (values.min() < 0 or values.max() > 1):
        return _stretch(values.astype(np.float64))  # HDR or data values: map the range onto [0, 1]
    return values.astype(np.float32)


def _key_alpha(img: Image.Image, values: np.ndarray) -> np.ndarray | None:
    # 16/32-bit gray with a tRNS key colour: that exact value is transparent.
    key = img.info.get("transparency")
    if not isinstance(key, int):
        return None
    return (values != key).astype(np.float32)


def read_image(path: str | os.PathLike, *, max_side: int | None = None, role: str = "image") -> DecodedImage:
    """Decode an image file (any mode Pillow opens, see `decode_image`) -> DecodedImage.

    `max_side` lets files over twice that large decode smaller (JPEG at 1/2, 1/4 or 1/8 size,
    others box-averaged; the caller still resizes exactly); `role` names the file in errors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{role} not found: {path}. To fix: pass the path of an existing image file.")
    try:
        with Image.open(path) as img:
            if max_side:
                img.draft(img.mode, (max_side, max_side))
            return decode_image(img, max_side)
    except Image.DecompressionBombError as exc:
        raise InputError(
            f"{role} {path} is too large to decode safely ({exc}). To fix: downscale it below ~100 megapixels."
        ) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {role} {path}: {exc}. To fix: save it as an 8- or 16-bit PNG "
                         f"or a JPEG.") from exc


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """float32 (H, W, C) with the long side cut to `max_side` (Lanczos, aspect kept); smaller ones as is."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # per channel in mode F: keeps 16-bit precision that an 8-bit RGB resize would drop
    channels = [np.asarray(Image.fromarray(image[..., c]).resize(size, Image.Resampling.LANCZOS))
                for c in range(image.shape[-1])]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def read_style_image(path: str | os.PathLike, max_side: int = MAX_STYLE_SIDE) -> np.ndarray:
    """Style image -> float32 (H, W, 3) in [0, 1], upright, alpha over white, huge images shrunk (no torch).

    Any mode and bit depth `decode_image` reads (16-bit PNGs keep their full range). Warns when
    a side is under MIN_STYLE_SIDE px: the loss resizes the image to CLIP's 224 px input.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"style image not found: {path}. Pass an existing image file with --style.")
    image = read_image(path, max_side=max_side, role="style image")
    w, h = image.size
    if min(w, h) < MIN_STYLE_SIDE:
        warnings.warn(f"style image '{path.name}' is {w}x{h} px; the style loss resizes it to 224 px, so its "
                      f"texture statistics will be mostly blur. Use a style image at least {MIN_STYLE_SIDE} px "
                      f"on a side (224 px or more is best).", UserWarning, stacklevel=3)
    return np.ascontiguousarray(_shrink(image.rgb(background=1.0), max_side))


def load_style_image(path: str | os.PathLike, max_side: int = MAX_STYLE_SIDE) -> "torch.Tensor":
    """`read_style_image` as a float32 tensor (3, H, W) in [0, 1]."""
    import torch  # here only: checking a style image (preflight, batch validation) needs no torch

    return torch.from_numpy(read_style_image(path, max_side)).permute(2, 0, 1).contiguous()


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """A photo for `--depth-from` -> uint8 (H, W, 3), upright, alpha over white, any mode and bit depth."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"image not found: {path}. Pass an existing image file with --depth-from.")
    rgb = read_image(path, role="image").rgb(background=1.0)
    return (rgb * 255).round().astype(np.uint8)


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
    rows: dict[str, list[np.ndarray]], path: Path, *, height: int = 96, max_columns: int = 8, note: str = "",
    frame_numbers: list[int] | None = None,
) -> None:
    """A PNG with one labelled row per entry (e.g. input, depth, output, style), written atomically.

    rows: label -> list of uint8 (H, W, 3) or (H, W) images; long rows are subsampled evenly.
    frame_numbers: the source frame of each image in the rows of that length; each shown image is
    marked with it (8 of 120 frames say which 8 they are).
    """
    label_w, pad = 70, 4
    prepared, numbers = {}, {}
    for label, images in rows.items():
        pick = np.linspace(0, len(images) - 1, min(len(images), max_columns)).round().astype(int)
        chosen = [np.repeat(images[i][..., None], 3, -1) if images[i].ndim == 2 else images[i] for i in pick]
        prepared[label] = _row(chosen, height)
        if frame_numbers is not None and len(images) == len(frame_numbers):
            numbers[label] = [frame_numbers[i] for i in pick]
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
        for k, im in enumerate(images):
            sheet.paste(im, (x, y))
            if label in numbers:
                text = str(numbers[label][k])
                draw.rectangle([x, y, x + 6 * len(text) + 3, y + 11], fill="white")
                draw.text((x + 2, y), text, fill="black")
            x += im.width + pad
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
