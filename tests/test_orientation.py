"""Display rotation and SAR: probed from the ffmpeg banner, applied to decord frames as ffmpeg shows them.

Clips are made here with the imageio-ffmpeg binary: a 96x64 test pattern with a red block in the
stored top-left corner, remuxed with `-display_rotation` (an input option: the counter-clockwise
angle of the display matrix) or a `rotate` tag. The reference is ffmpeg's own autorotated decode.
"""

from __future__ import annotations

import io
import subprocess
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from sagvideo.errors import InputError
from sagvideo.video.ffmpeg import ffmpeg_exe
from sagvideo.video.io import probe_video
from sagvideo.video.orientation import Display, apply_display, decoder_size_for, parse_display, probe_display

from _fixtures import require_fixture

W, H, MARK = 96, 64, 16  # decord mis-shapes frames whose row bytes align oddly (48 px wide): avoid


def _ffmpeg(*args: str) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *args],
                          check=True, stdout=subprocess.PIPE).stdout


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 5-frame H.264 clip, 96x64, square pixels, red block at the stored top-left."""
    path = tmp_path_factory.mktemp("clips") / "base.mp4"
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=10", "-frames:v", "5",
            "-vf", f"drawbox=x=0:y=0:w={MARK}:h={MARK}:color=red:t=fill",
            "-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", str(path))
    return path


def _remux(src, dst, *before_input: str, after: tuple[str, ...] = ()) -> None:
    _ffmpeg(*before_input, "-i", str(src), "-c", "copy", *after, str(dst))


def _ffmpeg_frames(path) -> np.ndarray:
    """uint8 (F, H, W, 3): ffmpeg's default decode, which applies the display rotation."""
    first = Image.open(io.BytesIO(_ffmpeg("-i", str(path), "-frames:v", "1", "-f", "image2pipe",
                                          "-c:v", "png", "-")))
    w, h = first.size
    raw = _ffmpeg("-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def _decord_frames(path) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def _assert_matches_ffmpeg(path, display: Display) -> np.ndarray:
    shown = apply_display(_decord_frames(path), display)
    reference = _ffmpeg_frames(path)
    assert shown.shape == reference.shape
    assert np.abs(shown.astype(int) - reference.astype(int)).mean() < 1.0
    return reference


def _red_corner(frame: np.ndarray) -> tuple[str, str]:
    """Which corner of an (H, W, 3) frame holds the red block: ('top'|'bottom', 'left'|'right')."""
    m = MARK // 2
    corners = {("top", "left"): frame[:m, :m], ("top", "right"): frame[:m, -m:],
               ("bottom", "left"): frame[-m:, :m], ("bottom", "right"): frame[-m:, -m:]}
    redness = {k: float(v[..., 0].mean()) - float(v[..., 1:].mean()) for k, v in corners.items()}
    return max(redness, key=redness.get)


# Clockwise turn -> where ffmpeg shows the stored top-left corner.
CORNER = {0: ("top", "left"), 90: ("top", "right"), 180: ("bottom", "right"), 270: ("bottom", "left")}


@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])
def test_rotated_mp4_probes_and_displays_like_ffmpeg(base, tmp_path, clockwise):
    path = tmp_path / f"r{clockwise}.mp4"
    _remux(base, path, "-display_rotation", str(-clockwise))  # the option takes counter-clockwise degrees
    display = probe_display(path)
    assert display.rotation == clockwise
    assert display.sample_aspect == 1
    assert display.stored_size == (W, H)
    assert display.display_size == ((H, W) if clockwise in (90, 270) else (W, H))
    reference = _assert_matches_ffmpeg(path, display)
    assert reference.shape[1:3] == display.display_size[::-1]
    assert _red_corner(reference[0]) == CORNER[clockwise]


def test_sign_convention_against_the_banner(base, tmp_path):
    # "rotation of -90.00 degrees" (counter-clockwise -90) is a quarter turn clockwise for the viewer.
    path = tmp_path / "phone.mp4"
    _remux(base, path, "-display_rotation", "-90")
    banner = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], stderr=subprocess.PIPE).stderr.decode()
    assert "rotation of -90.00 degrees" in banner
    assert probe_display(path).rotation == 90
    assert _red_corner(_ffmpeg_frames(path)[0]) == ("top", "right")


def test_mkv_display_matrix_that_decord_ignores(base, tmp_path):
    path = tmp_path / "r90.mkv"
    _remux(base, path, "-display_rotation", "-90")
    display = probe_display(path)
    assert (display.rotation, display.decoder_rotation) == (90, 0)
    assert display.decoded_size == (W, H)
    _assert_matches_ffmpeg(path, display)


def test_mkv_rotate_tag_that_only_decord_applies(base, tmp_path):
    path = tmp_path / "tag.mkv"
    _remux(base, path, after=("-metadata:s:v:0", "rotate=90"))
    display = probe_display(path)
    assert (display.rotation, display.decoder_rotation) == (0, 90)
    assert display.decoded_size == (H, W)
    _assert_matches_ffmpeg(path, display)


def test_non_square_pixels(base, tmp_path):
    path = tmp_path / "sar2.mp4"
    _ffmpeg("-i", str(base), "-vf", "setsar=2/1", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", str(path))
    display = probe_display(path)
    assert display.sample_aspect == Fraction(2)
    assert display.stored_size == (W, H)
    assert display.display_size == (2 * W, H)
    _assert_matches_ffmpeg(path, display)  # no resampling: same pixels as ffmpeg's raw decode
    stretched = Image.open(io.BytesIO(_ffmpeg("-i", str(path), "-frames:v", "1", "-vf", "scale=iw*sar:ih",
                                              "-f", "image2pipe", "-c:v", "png", "-")))
    assert stretched.size == display.display_size

    rotated = tmp_path / "sar2_r90.mp4"
    _remux(path, rotated, "-display_rotation", "-90")
    display = probe_display(rotated)
    assert (display.rotation, display.sample_aspect, display.display_size) == (90, Fraction(2), (H, 2 * W))
    _assert_matches_ffmpeg(rotated, display)
    # ffmpeg turns the SAR with the picture (2:1 -> 1:2); the shown aspect is the same
    shown = Image.open(io.BytesIO(_ffmpeg("-i", str(rotated), "-frames:v", "1", "-vf", "scale=iw*sar:ih",
                                          "-f", "image2pipe", "-c:v", "png", "-")))
    assert shown.size[0] / shown.size[1] == pytest.approx(display.display_size[0] / display.display_size[1])


@pytest.mark.parametrize("container", ["mp4", "mkv"])  # decord turns MP4 frames itself, not MKV ones
def test_decoder_side_resize_to_the_display_size(base, tmp_path, container):
    import decord

    sar2 = tmp_path / "sar2.mp4"
    _ffmpeg("-i", str(base), "-vf", "setsar=2/1", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", str(sar2))
    path = tmp_path / f"sar2_r90.{container}"
    _remux(sar2, path, "-display_rotation", "-90")
    display = probe_display(path)
    assert display.display_size == (H, 2 * W)
    width, height = decoder_size_for(display, display.display_size)
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height)
    shown = apply_display(reader.get_batch([0]).asnumpy(), display)[0]
    w, h = display.display_size
    reference = Image.open(io.BytesIO(_ffmpeg("-i", str(path), "-frames:v", "1", "-vf", f"scale={w}:{h}",
                                              "-f", "image2pipe", "-c:v", "png", "-"))).convert("RGB")
    assert shown.shape == (h, w, 3)
    assert np.abs(shown.astype(int) - np.asarray(reference, dtype=int)).mean() < 3  # two scalers, same picture
    assert _red_corner(shown) == ("top", "right")


def test_container_sar_overrides_the_codec_sar(base, tmp_path):
    path = tmp_path / "aspect.mp4"
    _remux(base, path, after=("-aspect", "3:1"))  # container SAR 2:1, H.264 stream still says 1:1
    display = probe_display(path)
    assert display.sample_aspect == Fraction(2)
    shown = Image.open(io.BytesIO(_ffmpeg("-i", str(path), "-frames:v", "1", "-vf", "scale=iw*sar:ih",
                                          "-f", "image2pipe", "-c:v", "png", "-")))
    assert shown.size == display.display_size == (2 * W, H)


# The banner of an Android phone clip as ffmpeg 4 printed it (the Video line is one line there).
LEGACY = "\n".join([
    "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mp4':",
    "  Duration: 00:00:03.12, start: 0.000000, bitrate: 20516 kb/s",
    "    Stream #0:0(eng): Video: h264 (Baseline) (avc1 / 0x31637661), yuvj420p(pc), 1920x1080, 19789 kb/s, "
    "SAR 1:1 DAR 16:9, 29.83 fps, 30 tbr, 90k tbn, 180k tbc (default)",
    "    Metadata:",
    "      rotate          : 90",
    "      handler_name    : VideoHandle",
    "{side}    Stream #0:1(eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 96 kb/s (default)",
    "    Metadata:",
    "      rotate          : 180",
    ""])


def test_legacy_banners():
    side = "    Side data:\n      displaymatrix: rotation of -90.00 degrees\n"
    for banner in (LEGACY.format(side=side), LEGACY.format(side="")):  # ffmpeg 4 printed both; tag alone too
        display = parse_display(banner)
        assert (display.rotation, display.decoder_rotation) == (90, 90)
        assert display.display_size == (1080, 1920)
    nothing = parse_display(LEGACY.format(side="").replace("rotate          : 90", "title : x"))
    assert (nothing.rotation, nothing.display_size) == (0, (1920, 1080))  # the audio stream's tag is not the video's


def test_odd_angles_and_missing_streams_are_input_errors(tmp_path):
    odd = LEGACY.format(side="    Side data:\n      Display Matrix: rotation of -45.00 degrees\n")
    with pytest.raises(InputError, match="not a quarter turn"):
        parse_display(odd)
    with pytest.raises(InputError, match="no video stream"):
        parse_display("Input #0, wav, from 'a.wav':\n    Stream #0:0: Audio: pcm_s16le, 44100 Hz\n")
    with pytest.raises(InputError, match="not found"):
        probe_display(tmp_path / "missing.mp4")


def test_apply_display_rejects_single_frames():
    with pytest.raises(InputError, match=r"\(F, H, W, C\)"):
        apply_display(np.zeros((4, 4, 3), np.uint8), Display(rotation=90, stored_size=(4, 4)))


def test_fixture_clip_is_upright_with_square_pixels():
    path = require_fixture("bigbuckbunny.mp4")
    display = probe_display(path)
    info = probe_video(path)
    assert (display.rotation, display.sample_aspect, display.decoder_rotation) == (0, 1, 0)
    assert display.stored_size == display.display_size == (info.width, info.height)
