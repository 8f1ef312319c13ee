"""Images of every common bit depth and mode load as viewers show them (style loader, photo, depth maps).

Each file is generated here; 16-bit PNGs with colour are written by `_png16` (Pillow can read them
but not write them), so nothing beyond Pillow and numpy is needed.
"""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from sagvideo.errors import InputError
from sagvideo.images import decode_image, load_photo, load_style_image, read_image
from sagvideo.video.depth import _read_depth_file

TOL = 1 / 255 + 1e-6
# Rec. 601 luma, the weights of Pillow's "L" conversion, for depth maps stored as colour
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
ORIENTATION = 0x0112  # EXIF tag


def _png16(path, array: np.ndarray) -> None:
    """Write uint16 (H, W) / (H, W, 2|3|4) as a 16-bit PNG (gray, gray+alpha, RGB, RGBA)."""
    channels = 1 if array.ndim == 2 else array.shape[-1]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    h, w = array.shape[:2]
    rows = array.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def _ramp16(w: int = 256, h: int = 8) -> np.ndarray:
    """uint16 (h, w): 0 at the left, 65535 at the right."""
    return np.repeat(np.linspace(0, 65535, w).round().astype(np.uint16)[None], h, axis=0)


def _style(path) -> np.ndarray:
    """The style loader's output as float32 (H, W, 3)."""
    return load_style_image(path).permute(1, 2, 0).numpy()


def _with_orientation(image: Image.Image, path, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    image.save(path, quality=95, exif=exif)


# ---- 16-bit and float gray ------------------------------------------------------------------


def test_16bit_gray_png_is_the_same_gradient_not_white(tmp_path):
    ramp = _ramp16()
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    expected = ramp.astype(np.float32) / 65535
    style = _style(path)
    assert style.shape == (8, 256, 3)
    for c in range(3):
        np.testing.assert_allclose(style[..., c], expected, atol=TOL)
    np.testing.assert_allclose(_read_depth_file(path), expected, atol=TOL)
    np.testing.assert_allclose(load_photo(path)[..., 1] / 255.0, expected, atol=TOL)


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_16bit_gray_tiff_in_either_byte_order(tmp_path, mode):
    ramp = _ramp16()
    order = ">u2" if mode == "I;16B" else "<u2"
    path = tmp_path / "g16.tif"
    Image.frombytes(mode, (256, 8), ramp.astype(order).tobytes()).save(path)
    np.testing.assert_allclose(_style(path)[..., 0], ramp / 65535, atol=TOL)
    np.testing.assert_allclose(_read_depth_file(path), ramp / 65535, atol=TOL)


def test_32bit_int_image_with_16bit_content(tmp_path):
    ramp = _ramp16()
    path = tmp_path / "i32.tif"
    Image.fromarray(ramp.astype(np.int32)).save(path)
    assert Image.open(path).mode == "I"
    np.testing.assert_allclose(_style(path)[..., 2], ramp / 65535, atol=TOL)
    np.testing.assert_allclose(_read_depth_file(path), ramp / 65535, atol=TOL)


def test_float_image_in_unit_range(tmp_path):
    ramp = np.repeat(np.linspace(0, 1, 64, dtype=np.float32)[None], 64, axis=0)
    path = tmp_path / "f.tif"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "F"
    np.testing.assert_allclose(_style(path)[..., 0], ramp, atol=1e-6)


def test_float_image_outside_unit_range_is_stretched_not_clipped():
    ramp = np.repeat(np.linspace(-5, 300, 64, dtype=np.float32)[None], 4, axis=0)
    decoded = decode_image(Image.fromarray(ramp))
    np.testing.assert_allclose(decoded.color[..., 0], (ramp + 5) / 305, atol=1e-6)


def test_non_finite_float_image_is_rejected(tmp_path):
    data = np.zeros((70, 70), np.float32)
    data[3, 3] = np.nan
    path = tmp_path / "nan.tif"
    Image.fromarray(data).save(path)
    with pytest.raises(InputError, match="NaN"):
        load_style_image(path)


# ---- 16-bit colour --------------------------------------------------------------------------


def test_16bit_rgb_png(tmp_path):
    ramp = _ramp16()
    rgb = np.stack([ramp, 65535 - ramp, np.full_like(ramp, 30000)], axis=-1)
    path = tmp_path / "rgb16.png"
    _png16(path, rgb)
    np.testing.assert_allclose(_style(path), rgb / 65535, atol=TOL)
    np.testing.assert_allclose(_read_depth_file(path), (rgb / 65535) @ LUMA, atol=2 * TOL)


def test_16bit_rgba_png_is_composited_over_white(tmp_path):
    ramp = _ramp16()
    rgba = np.stack([np.zeros_like(ramp), np.zeros_like(ramp), np.zeros_like(ramp), ramp], axis=-1)
    path = tmp_path / "rgba16.png"
    _png16(path, rgba)
    alpha = ramp / 65535
    np.testing.assert_allclose(_style(path), np.repeat((1 - alpha)[..., None], 3, -1), atol=2 * TOL)
    np.testing.assert_allclose(_read_depth_file(path), 0.0, atol=TOL)  # alpha ignored: black


def test_16bit_gray_alpha_png(tmp_path):
    ramp = _ramp16()
    la = np.stack([np.full_like(ramp, 65535 // 2), 65535 - ramp], axis=-1)
    path = tmp_path / "la16.png"
    _png16(path, la)
    alpha = 1 - ramp / 65535
    expected = alpha * 0.5 + (1 - alpha)
    np.testing.assert_allclose(_style(path)[..., 1], expected, atol=2 * TOL)
    np.testing.assert_allclose(_read_depth_file(path), 0.5, atol=TOL)


# ---- 8-bit modes ----------------------------------------------------------------------------


def test_palette_with_and_without_transparency(tmp_path):
    index = np.zeros((70, 70), np.uint8)
    index[:, 35:] = 1
    image = Image.fromarray(index, mode="L").convert("P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    plain = tmp_path / "p.png"
    image.save(plain)
    style = _style(plain)
    np.testing.assert_allclose(style[0, 0], [1, 0, 0])
    np.testing.assert_allclose(style[0, -1], [0, 0, 1])
    np.testing.assert_allclose(_read_depth_file(plain)[0, [0, -1]], [0.299, 0.114], atol=TOL)
    see_through = tmp_path / "pt.png"
    image.save(see_through, transparency=0)  # index 0 (red) is transparent
    style = _style(see_through)
    np.testing.assert_allclose(style[0, 0], [1, 1, 1])
    np.testing.assert_allclose(style[0, -1], [0, 0, 1])


def test_la_and_rgba_are_composited_over_white(tmp_path):
    la = np.zeros((70, 70, 2), np.uint8)
    la[..., 0] = 100
    la[:, :35, 1] = 255  # left opaque gray, right fully transparent
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    style = _style(tmp_path / "la.png")
    np.testing.assert_allclose(style[0, 0], [100 / 255] * 3, atol=1e-6)
    np.testing.assert_allclose(style[0, -1], [1, 1, 1])
    np.testing.assert_allclose(_read_depth_file(tmp_path / "la.png"), 100 / 255, atol=1e-6)

    rgba = np.zeros((70, 70, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[..., 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    style = _style(tmp_path / "rgba.png")
    a = 128 / 255
    np.testing.assert_allclose(style[5, 5], [1 - a, 1 - a, 1], atol=1e-6)
    assert load_photo(tmp_path / "rgba.png")[5, 5].tolist() == [127, 127, 255]


def test_read_image_reports_alpha(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 0, 10)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    with_alpha = read_image(tmp_path / "a.png")
    assert with_alpha.has_alpha and with_alpha.color.shape == (8, 8, 3) and with_alpha.alpha.shape == (8, 8)
    np.testing.assert_allclose(with_alpha.alpha, 10 / 255)
    assert not read_image(tmp_path / "b.png").has_alpha


# ---- CMYK -----------------------------------------------------------------------------------


def test_adobe_cmyk_jpeg_has_the_right_colours(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (70, 70), (0, 255, 255, 0)).save(path, quality=100)  # pure magenta+yellow = red
    assert "adobe" in Image.open(path).info  # Pillow writes Photoshop's inverted CMYK with the marker
    np.testing.assert_allclose(_style(path)[35, 35], [1, 0, 0], atol=3 / 255)


def _without_adobe_marker(data: bytes) -> bytes:
    """The JPEG bytes with every APP14 "Adobe" segment cut out."""
    out, i = bytearray(data[:2]), 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        segment = data[i:i + 2 + length]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            return bytes(out) + data[i:]
        if not (marker == 0xEE and segment[4:9] == b"Adobe"):
            out += segment
        i += 2 + length
    return bytes(out)


def test_plain_cmyk_jpeg_without_adobe_marker_is_not_inverted(tmp_path):
    # Pillow inverts CMYK when saving, so saving the inverted ink stores the plain values (0 = no ink).
    ink = (0, 255, 255, 0)
    adobe = tmp_path / "adobe.jpg"
    Image.new("CMYK", (70, 70), tuple(255 - v for v in ink)).save(adobe, quality=100)
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(_without_adobe_marker(adobe.read_bytes()))
    assert "adobe" not in Image.open(plain).info
    np.testing.assert_allclose(_style(plain)[35, 35], [1, 0, 0], atol=3 / 255)


# ---- EXIF orientation -----------------------------------------------------------------------


@pytest.mark.parametrize("orientation, corner", [(6, (0, -1)), (8, (-1, 0)), (3, (-1, -1)), (1, (0, 0))])
def test_exif_rotated_jpeg_comes_back_upright(tmp_path, orientation, corner):
    # Stored 96 x 64 with a white block at the stored top-left. EXIF 6: the stored top row is the
    # visual right side (top-left -> top-right); 8: it is the visual left side (-> bottom-left).
    stored = np.zeros((64, 96, 3), np.uint8)
    stored[:16, :16] = 255
    path = tmp_path / f"o{orientation}.jpg"
    _with_orientation(Image.fromarray(stored), path, orientation)
    upright = (96, 64) if orientation in (6, 8) else (64, 96)  # (H, W) as displayed
    style = _style(path)
    depth = _read_depth_file(path)
    photo = load_photo(path)
    assert style.shape[:2] == depth.shape == photo.shape[:2] == upright
    rows = slice(0, 16) if corner[0] == 0 else slice(-16, None)
    cols = slice(0, 16) if corner[1] == 0 else slice(-16, None)
    for image in (style[..., 0], depth, photo[..., 0] / 255.0):
        assert image[rows, cols].mean() > 0.9
        assert image.mean() < 0.15  # everything else dark


def test_exif_orientation_on_a_16bit_png(tmp_path):
    ramp = _ramp16(w=128, h=64)  # dark left, bright right as stored
    path = tmp_path / "o16.png"
    _with_orientation(Image.fromarray(ramp), path, 6)
    depth = _read_depth_file(path)
    assert depth.shape == (128, 64)
    assert depth[0].mean() < 0.01 and depth[-1].mean() > 0.99  # stored left (dark) is now the top


# ---- sizes ----------------------------------------------------------------------------------


def test_tiny_style_image_warns_with_its_size(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (10, 20, 30)).save(path)
    with pytest.warns(UserWarning, match=r"'x.png' is 40x30 px.*at least 64 px"):
        load_style_image(path)
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_style_image(tmp_path / "ok.png")


def test_huge_16bit_style_image_is_downscaled_and_keeps_its_gradient(tmp_path):
    ramp = _ramp16(w=2048, h=16)
    path = tmp_path / "wide.png"
    Image.fromarray(ramp).save(path)
    style = load_style_image(path, max_side=512)
    assert tuple(style.shape) == (3, 4, 512)
    row = style[0, 2].numpy()
    np.testing.assert_allclose(row, np.linspace(0, 1, 512), atol=0.01)


def test_huge_rgba_is_shrunk_without_hidden_colour_bleeding_in(tmp_path):
    rgba = np.zeros((64, 4096, 4), np.uint8)
    rgba[:, 0::2] = (255, 0, 0, 0)  # transparent columns with red hidden under them
    rgba[:, 1::2] = (0, 0, 255, 255)  # opaque blue columns
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "stripes.png")
    style = load_style_image(tmp_path / "stripes.png", max_side=512).permute(1, 2, 0).numpy()
    assert style.shape == (8, 512, 3)
    # half white, half blue: (0.5, 0.5, 1); averaging unpremultiplied colour would give (0.75, 0.5, 0.75)
    np.testing.assert_allclose(style, np.broadcast_to([0.5, 0.5, 1.0], style.shape), atol=0.01)


def test_huge_rotated_jpeg_is_shrunk_and_upright(tmp_path):
    stored = np.zeros((1200, 2400, 3), np.uint8)
    stored[:300, :300] = 255
    path = tmp_path / "big.jpg"
    _with_orientation(Image.fromarray(stored), path, 6)
    style = load_style_image(path, max_side=200).permute(1, 2, 0).numpy()
    assert style.shape == (200, 100, 3)
    assert style[:20, -20:].mean() > 0.9 and style[-100:].mean() < 0.05  # marker top-right


def test_unreadable_image_is_an_input_error(tmp_path):
    path = tmp_path / "junk.png"
    path.write_bytes(b"not an image")
    with pytest.raises(InputError, match="junk.png"):
        load_style_image(path)
    with pytest.raises(InputError, match="junk.png"):
        load_photo(path)
