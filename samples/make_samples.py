"""Make the quick-start samples: a short rendered clip with audio, and a style image.

Run from the repository root: `python samples/make_samples.py`. Everything is generated here
(no third-party media), so the samples are free to use. Writes samples/clip.mp4 (6 s, 144 frames at 24 fps,
384x216, a ball rolling past a box, with a tone) and samples/style.png (swirling brush strokes).
"""

from __future__ import annotations

import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from sagvideo.video.ffmpeg import ffmpeg_exe
from sagvideo.video.write import write_video

HERE = Path(__file__).resolve().parent
W, H, FPS, SECONDS = 384, 216, 24, 6


def render_frame(i: int, n: int) -> np.ndarray:
    """A lit room: back wall, floor receding in perspective, a box, and a ball rolling left to right."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    horizon = 0.45 * H
    img = np.empty((H, W, 3), np.float32)
    wall = 0.55 + 0.15 * (x / W)
    floor_depth = np.clip((y - horizon) / (H - horizon), 0, 1)
    stripes = 0.5 + 0.5 * (np.sin(40 * np.log1p(4 * floor_depth + 1e-3)) > 0)
    img[:] = np.where((y < horizon)[..., None], (wall[..., None] * [0.9, 0.85, 0.7]),
                      ((0.3 + 0.4 * floor_depth) * (0.8 + 0.2 * stripes))[..., None] * [0.6, 0.45, 0.3])
    box = (x > 0.62 * W) & (x < 0.8 * W) & (y > 0.35 * H) & (y < 0.72 * H)
    img[box] = [0.25, 0.4, 0.6]
    t = i / max(n - 1, 1)
    cx, cy, r = (0.1 + 0.75 * t) * W, 0.78 * H, 0.12 * H
    d2 = ((x - cx) ** 2 + (y - cy) ** 2) / r**2
    ball = d2 < 1
    shade = np.sqrt(np.clip(1 - d2, 0, 1)) * (0.6 + 0.4 * np.clip((cx - x) / r + (cy - y) / r, -1, 1))
    img[ball] = (shade[ball, None] * [0.95, 0.3, 0.2]) + 0.05
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_style(size: int = 512) -> np.ndarray:
    """Swirling strokes in a night-sky palette: a stand-in painting with strong texture."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.arctan2(y - 0.4, x - 0.55)
    radius = np.hypot(y - 0.4, x - 0.55)
    swirl = np.sin(30 * radius + 3 * angle + 4 * np.sin(6 * x))
    noise = rng.normal(size=(size // 8, size // 8))
    noise = np.kron(noise, np.ones((8, 8)))
    v = 0.5 + 0.35 * swirl + 0.1 * noise
    palette = np.stack([0.15 + 0.8 * v**3, 0.25 + 0.6 * v**2, 0.55 + 0.4 * v], -1)
    return (np.clip(palette, 0, 1) * 255).astype(np.uint8)


def main() -> None:
    n = FPS * SECONDS
    frames = np.stack([render_frame(i, n) for i in range(n)])
    with tempfile.TemporaryDirectory() as tmp:
        silent = Path(tmp) / "silent.mp4"
        write_video(frames, silent, Fraction(FPS), crf=28)
        # add a 330 Hz tone so the quick start shows the audio being kept
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(silent), "-f", "lavfi", "-i",
                        f"sine=frequency=330:duration={SECONDS}", "-c:v", "copy", "-c:a", "aac", "-shortest",
                        str(HERE / "clip.mp4")], check=True)
    Image.fromarray(make_style()).save(HERE / "style.png")
    print(f"wrote {HERE / 'clip.mp4'} and {HERE / 'style.png'}")


if __name__ == "__main__":
    main()
