"""`outputs.JobFiles`, the one door for a job's files, on its own (no model runs): what it refuses,
what its lock and its live preview leave behind, and that a folder of depth maps appears whole."""

from pathlib import Path

import numpy as np
import pytest

from sagvideo.config import load_config
from sagvideo.errors import InputError
from sagvideo.outputs import JobFiles


def _settings(**overrides):
    return load_config(None, {f"output.{k}": v for k, v in overrides.items()}).output


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    video, style = tmp_path / "in.mp4", tmp_path / "style.png"
    video.write_bytes(b"video")
    style.write_bytes(b"style")
    return video, style


def test_a_link_to_an_input_is_refused_first_and_an_existing_output_without_overwrite(tmp_path):
    video, style = _inputs(tmp_path)
    (tmp_path / "out.json").symlink_to(style)  # the report of out.mp4 would overwrite the style image
    with pytest.raises(InputError, match="is the input"):
        JobFiles.for_video(tmp_path / "out.mp4", _settings(), video=video, style=style).check()
    (tmp_path / "taken.mp4").write_bytes(b"mine")
    with pytest.raises(InputError, match="already exists"):
        JobFiles.for_video(tmp_path / "taken.mp4", _settings(), video=video, style=style).check()
    files = JobFiles.for_video(tmp_path / "taken.mp4", _settings(overwrite=True), video=video, style=style)
    assert files.check().planned()["report"] == tmp_path / "taken.json"
    with pytest.raises(InputError, match="ending in"):
        JobFiles.for_image(tmp_path / "image.mp4", _settings(), style=style).check()


def test_one_run_per_output_and_a_failure_leaves_no_lock_staging_or_preview(tmp_path):
    video, style = _inputs(tmp_path)
    stale = tmp_path / ".out.mp4.tmp-killed"  # what a killed run left
    stale.mkdir()
    files = JobFiles.for_video(tmp_path / "out.mp4", _settings(preview=1), video=video, style=style).check()

    def decode(latents: np.ndarray) -> np.ndarray:  # (1, C, F', h, w) -> uint8 (F', 8, 8, 3)
        return np.full((latents.shape[2], 8, 8, 3), 200, np.uint8)

    seen = []
    with pytest.raises(RuntimeError, match="sampling failed"):
        with files.open():
            assert not stale.exists()
            with pytest.raises(InputError, match="being written by another sagvideo run"):
                with JobFiles.for_video(tmp_path / "out.mp4", _settings(), video=video, style=style).open():
                    pass
            on_step = files.preview(decode, lambda *step: seen.append(step[0]))
            on_step(0, 999, None, np.zeros((1, 4, 6, 2, 2)), None)
            assert files.layout.preview.is_file() and seen == [0]
            raise RuntimeError("sampling failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "style.png"]


def test_depth_maps_appear_whole_and_the_video_is_never_their_folder(tmp_path):
    video, _ = _inputs(tmp_path)
    with pytest.raises(InputError, match="is the input"):
        JobFiles.for_depth_maps(video, _settings(overwrite=True), video=video).check()
    files = JobFiles.for_depth_maps(tmp_path / "depth", _settings(), video=video).check()
    with files.open():
        files.write_depth_maps(np.zeros((3, 8, 8), np.uint8))
    assert sorted(p.name for p in (tmp_path / "depth").iterdir()) == [f"depth_{i:05d}.png" for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth", "in.mp4", "style.png"]  # no lock folder left
    with pytest.raises(InputError, match="already exists"):
        JobFiles.for_depth_maps(tmp_path / "depth", _settings(), video=video).check()
