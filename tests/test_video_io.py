"""Reading and writing video with the real decord and ffmpeg binary, on real and generated clips."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sagvideo.errors import InputError
from sagvideo import files
from sagvideo.video import ffmpeg, frames as vframes, io, write

from _fixtures import require_fixture
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bunny() -> Path:
    return require_fixture("bigbuckbunny.mp4")


def make_clip(folder: Path, name: str, *, size="64x48", rate="25", frames=10, audio=False) -> Path:
    """Encode a testsrc2 clip (moving pattern) with the ffmpeg binary, optionally with a sine tone."""
    path = folder / name
    cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-shortest"] if audio else []
    subprocess.run(cmd + [str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def ntsc_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("ntsc"), "ntsc.mp4", size="178x100", rate="30000/1001",
                     frames=60, audio=True)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ----------------------------------------------------------------------------- probing / reading


def test_probe_real_clip(bunny):
    info = io.probe_video(bunny)
    assert (info.frame_count, info.width, info.height) == (132, 1280, 720)
    assert info.fps == Fraction(25) and isinstance(info.fps, Fraction)
    assert 5.2 < info.duration < 5.4


def test_probe_ntsc_rate_is_exact(ntsc_clip):
    info = io.probe_video(ntsc_clip)
    assert info.fps == Fraction(30000, 1001)
    assert info.has_audio and (info.width, info.height) == (178, 100)


@pytest.mark.parametrize("frames,stride,start", [(16, 1, 0), (8, 4, 10), (5, 30, 11), (1, 1, 131)])
def test_read_clip_indices_and_model_size(bunny, frames, stride, start):
    clip = io.read_clip(bunny, frames=frames, stride=stride, start=start, size=256)
    assert clip.indices == [start + i * stride for i in range(frames)]
    assert clip.frames.shape == (frames, 256, 456, 3) and clip.frames.dtype == np.uint8
    assert clip.model_size == (456, 256) and clip.source_size == (1280, 720)
    assert clip.fps == 25 and clip.output_fps == Fraction(25, stride)
    assert clip.start_time == pytest.approx(start / 25)
    assert clip.end_time == pytest.approx(min(start + frames * stride, 132) / 25)


@pytest.mark.parametrize("size,expected", [(512, (912, 512)), (500, (896, 504)), (3, (16, 8))])
def test_model_size_keeps_aspect_in_multiples_of_8(size, expected):
    w, h = io.model_size_for(1280, 720, size)
    assert (w, h) == expected and w % 8 == 0 and h % 8 == 0
    if size >= 64:  # tiny sizes cannot keep the aspect within 8-pixel steps
        assert w / h == pytest.approx(1280 / 720, rel=0.01)


def test_odd_size_and_portrait_clip(tmp_path):
    odd = make_clip(tmp_path, "odd.mp4", size="178x100", frames=4)
    clip = io.read_clip(odd, frames=4, size=64)
    assert clip.frames.shape == (4, 64, 112, 3) and clip.source_size == (178, 100)
    portrait = make_clip(tmp_path, "portrait.mp4", size="90x160", frames=2)
    w, h = io.read_clip(portrait, frames=2, size=72).model_size
    assert w == 72 and h % 8 == 0 and h / w == pytest.approx(160 / 90, rel=0.05)


def test_read_clip_returns_the_requested_frames(tmp_path):
    # Frame i is a flat gray of level 10 * i, so each decoded frame says which index it came from.
    levels = np.arange(20) * 10
    frames = np.broadcast_to(levels[:, None, None, None], (20, 48, 64, 3)).astype(np.uint8)
    path = write.write_video(frames, tmp_path / "levels.mp4", 25, crf=0, preset="ultrafast")
    for size in (48, 72):  # model sizes 64x48 and 96x72
        clip = io.read_clip(path, frames=4, stride=3, start=5, size=size)
        assert np.round(clip.frames.reshape(4, -1).mean(axis=1) / 10).tolist() == [5, 8, 11, 14]


def test_decord_resize_fallback_for_widths_it_rejects(tmp_path):
    # decord cannot resize to a width of 72 px; read_clip must still return correct frames.
    path = make_clip(tmp_path, "portrait.mp4", size="90x160", frames=3)
    clip = io.read_clip(path, frames=3, size=72)
    assert clip.frames.shape == (3, 128, 72, 3)
    import decord

    source = decord.VideoReader(str(path)).get_batch([0, 1, 2]).asnumpy()
    assert np.abs(vframes.restore_size(source, (72, 128)).astype(int) - clip.frames).mean() < 1


def test_read_clip_decodes_only_needed_frames(bunny):
    # Peak memory of a fresh process: all 132 frames at 1280x720 would need 365 MB.
    code = (
        "import resource\n"
        "from sagvideo.video import io\n"
        "rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "base = rss()\n"
        f"clip = io.read_clip({str(bunny)!r}, frames=16, size=256)\n"
        "print(rss() - base, clip.frames.nbytes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO).stdout.split()
    grown, clip_bytes = int(out[-2]), int(out[-1])
    assert clip_bytes == 16 * 256 * 456 * 3
    assert grown < 132 * 1280 * 720 * 3 / 3, f"read_clip grew memory by {grown / 2**20:.0f} MiB"


def test_restore_size(bunny):
    clip = io.read_clip(bunny, frames=2, stride=50, size=128)
    restored = vframes.restore_size(clip.frames, clip.source_size)
    assert restored.shape == (2, 720, 1280, 3) and restored.dtype == np.uint8
    import decord

    source = decord.VideoReader(str(bunny)).get_batch(clip.indices).asnumpy().astype(int)
    assert np.abs(restored.astype(int) - source).mean() < 12  # same picture, just blurrier


@pytest.mark.parametrize("kwargs,flag", [
    ({"frames": 0}, "--frames"), ({"stride": -1}, "--stride"), ({"size": 0}, "--size"),
    ({"start": -2}, "--start"), ({"frames": 2.5}, "--frames"),
])
def test_bad_arguments(bunny, kwargs, flag):
    with pytest.raises(InputError, match=flag):
        io.read_clip(bunny, **kwargs)


def test_too_few_frames_names_count_and_fixes(tmp_path):
    three = make_clip(tmp_path, "three.mp4", frames=3)
    with pytest.raises(InputError) as err:
        io.read_clip(three, frames=16)
    msg = str(err.value)
    assert "has 3 frames" in msg and "--frames 3" in msg
    with pytest.raises(InputError, match=r"To fix: use --frames 2 or --stride 1\.$"):
        io.read_clip(three, frames=3, stride=2)
    with pytest.raises(InputError, match=r"has 3 frames.*start=5.*To fix: use --start 1\.$"):
        io.read_clip(three, frames=2, start=5)


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(InputError, match="cannot be read as a video"):
        io.read_clip(text)
    fake = tmp_path / "painting.mp4"
    fake.write_bytes(require_fixture("starry_night.jpg").read_bytes())
    with pytest.raises(InputError, match="still image"):
        io.read_clip(fake)
    audio_only = tmp_path / "tone.mp4"
    subprocess.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.3",
                    "-c:a", "aac", str(audio_only)], check=True)
    with pytest.raises(InputError, match="no video stream"):
        io.probe_video(audio_only)
    with pytest.raises(InputError, match="not found"):
        io.read_clip(tmp_path / "missing.mp4")


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("rate", [Fraction(25), Fraction(30000, 1001)])
def test_write_video_exact_rate(tmp_path, rate):
    frames = np.random.default_rng(0).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    out = write.write_video(frames, tmp_path / "out.mp4", rate, preset="ultrafast")
    info = io.probe_video(out)
    assert info.fps == rate and info.frame_count == 12 and not info.has_audio
    assert leftovers(tmp_path) == []


def test_roundtrip_ntsc_with_audio_span(ntsc_clip, tmp_path):
    clip = io.read_clip(ntsc_clip, frames=30, start=15, size=64)
    assert clip.has_audio and clip.start_time == pytest.approx(15 * 1001 / 30000)
    out = write.write_video(clip.frames, tmp_path / "styled.mp4", clip.output_fps,
                         audio_from=clip.path, audio_span=clip.audio_span, preset="ultrafast")
    info = io.probe_video(out)
    assert info.fps == Fraction(30000, 1001) and info.frame_count == 30 and info.has_audio
    span = clip.end_time - clip.start_time
    assert span == pytest.approx(30 * 1001 / 30000)
    assert info.duration == pytest.approx(span, abs=0.06)


def test_real_clip_with_stride_keeps_speed_and_audio(bunny, tmp_path):
    clip = io.read_clip(bunny, frames=8, stride=3, start=20, size=64)
    out = write.write_video(clip.frames, tmp_path / "bunny.mp4", clip.output_fps,
                         audio_from=bunny, audio_span=clip.audio_span, preset="ultrafast")
    info = io.probe_video(out)
    assert info.fps == Fraction(25, 3) and info.frame_count == 8 and info.has_audio
    assert info.duration == pytest.approx(8 * 3 / 25, abs=0.06)


def test_write_video_odd_size(tmp_path):
    frames = np.random.default_rng(1).integers(0, 255, (3, 33, 47, 3), dtype=np.uint8)
    info = io.probe_video(write.write_video(frames, tmp_path / "odd.mp4", 10, preset="ultrafast"))
    assert (info.width, info.height, info.frame_count) == (48, 34, 3)


def test_failing_ffmpeg_leaves_nothing(tmp_path, monkeypatch):
    # A stand-in binary that writes a partial output file and fails, as a crashing ffmpeg would.
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor last; do :; done\necho partial > "$last"\necho "boom" >&2\nexit 3\n')
    fake.chmod(0o755)
    monkeypatch.setattr(write, "ffmpeg_exe", lambda: str(fake))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ffmpeg.FFmpegError, match="(?s)exit code 3.*boom"):
        write.write_video(frames, out_dir / "x.mp4", 25)
    assert list(out_dir.iterdir()) == []


def test_interrupt_mid_write_leaves_nothing(tmp_path, monkeypatch):
    real = write._frame_bytes
    sent = []

    def interrupted(frame):
        if len(sent) == 3:
            raise KeyboardInterrupt
        sent.append(1)
        return real(frame)

    monkeypatch.setattr(write, "_frame_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write.write_video(np.zeros((10, 32, 32, 3), np.uint8), tmp_path / "x.mp4", 25, preset="ultrafast")
    assert len(sent) == 3 and list(tmp_path.iterdir()) == []


def test_refuse_overwrite_unless_asked(tmp_path):
    target = tmp_path / "exists.mp4"
    target.write_bytes(b"keep me")
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(InputError, match="--overwrite"):
        write.write_video(frames, target, 25)
    assert target.read_bytes() == b"keep me"
    write.write_video(frames, target, 25, overwrite=True, preset="ultrafast")
    assert io.probe_video(target).frame_count == 2 and leftovers(tmp_path) == []


def test_missing_and_non_folder_parents(tmp_path):
    with pytest.raises(InputError, match=f"'{tmp_path / 'nope'}' does not exist.*mkdir -p"):
        files.check_output_path(tmp_path / "nope" / "out.mp4")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        write.write_video(np.zeros((1, 8, 8, 3), np.uint8), a_file / "out.mp4", 25)


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    # root ignores permission bits; sysfs refuses new files even to root.
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink(probe)
    pytest.skip("running as root and no folder here refuses writes to root")


def test_read_only_folder(tmp_path):
    folder = _unwritable_folder(tmp_path)
    try:
        with pytest.raises(InputError, match=f"'{folder}' is not writable"):
            files.check_output_path(folder / "out.mp4")
        with pytest.raises(InputError, match="is not writable"):
            write.write_gif(np.zeros((2, 8, 8, 3), np.uint8), folder / "out.gif", 10)
    finally:
        if folder != Path("/sys"):
            folder.chmod(0o755)


def test_write_gif(tmp_path):
    frames = np.stack([np.full((20, 30, 3), v, np.uint8) for v in (0, 80, 160, 240)])
    out = write.write_gif(frames, tmp_path / "a.gif", Fraction(30000, 1001))
    with Image.open(out) as gif:
        assert gif.n_frames == 4 and gif.size == (30, 20)
        total = 0
        for i in range(4):
            gif.seek(i)
            total += gif.info["duration"]
    assert total == pytest.approx(4 * 1001 / 30, abs=10)
    with pytest.raises(InputError, match="--overwrite"):
        write.write_gif(frames, out, 10)
    assert leftovers(tmp_path) == []


def test_write_frames_dir(tmp_path):
    frames = np.random.default_rng(2).integers(0, 255, (3, 8, 12, 3), dtype=np.uint8)
    out = write.write_frames_dir(frames, tmp_path / "frames")
    assert sorted(p.name for p in out.iterdir()) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    assert np.array_equal(np.asarray(Image.open(out / "frame_00002.png")), frames[2])
    with pytest.raises(InputError, match="--overwrite"):
        write.write_frames_dir(frames[:1], out)
    write.write_frames_dir(frames[:1], out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["frame_00000.png"]
    assert leftovers(tmp_path) == []


def test_atomic_path_cleans_up_and_publishes(tmp_path):
    target = tmp_path / "report.json"
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json"
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    files.atomic_write_bytes(target, b"{}")
    assert target.read_bytes() == b"{}" and list(tmp_path.iterdir()) == [target]
    assert target.stat().st_mode & 0o044  # readable by others like a plain open() (not mkstemp's 0600)


def test_bad_audio_span(bunny, tmp_path):
    with pytest.raises(InputError, match="audio_span"):
        write.write_video(np.zeros((2, 16, 16, 3), np.uint8), tmp_path / "a.mp4", 25,
                       audio_from=bunny, audio_span=(2.0, 1.0))
    assert list(tmp_path.iterdir()) == []
