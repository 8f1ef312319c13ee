"""The page's job adapter without a browser: the CLI's checks first, fresh names, networks kept
between runs, out-of-memory and bad input told with nothing written, and Cancel."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sagvideo.pipeline.runtime as runtime_module
from sagvideo.ui.jobs import Finished, JobControl, JobFailed, JobRequest, JobRunner, Progress
from sagvideo.ui.settings import PageSettings, config_choices

ROOT = Path(__file__).resolve().parents[1]
FAST = "sampling.steps=2\nguidance.passes=1\noutput.metrics=false"  # 2 frames (the knob), 2 steps


def request(video, style, advanced=FAST, **knobs):
    return JobRequest(str(video), str(style), "", PageSettings("tiny", {"frames": "2", **knobs}, advanced))


def outputs(folder: Path) -> list[str]:
    """What a user would see in the output folder (the hidden depth cache aside)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def run_all(runner, req, control=None):
    events = list(runner.run(req, control))
    assert isinstance(events[-1], Finished)
    return events


def test_runs_keep_their_networks_survive_out_of_memory_and_never_overwrite(tmp_path, fixtures, monkeypatch,
                                                                           one_torch_thread):
    built = []
    real_build = runtime_module.tiny_components
    monkeypatch.setattr(runtime_module, "tiny_components", lambda **kw: built.append(1) or real_build(**kw))
    runner = JobRunner(tmp_path / "out")
    (tmp_path / "out").mkdir()
    req = request(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg")

    events = run_all(runner, req)
    steps = [e.step for e in events if isinstance(e, Progress) and e.total]
    assert steps == [1, 2] and all(e.total == 2 for e in events if isinstance(e, Progress) and e.total)
    assert any(e.preview is not None and e.preview.ndim == 3 for e in events if isinstance(e, Progress))
    first = events[-1]
    assert first.output.name == "bigbuckbunny_sag_001.mp4" and first.report["frames"] == 2
    assert {p.name for p in first.files} == set(outputs(tmp_path / "out"))  # every file written is offered

    # a real allocator failure inside the UNet mid-run: the message and its fix, nothing written
    unet = runner.cache.get(req.settings.config(), video=True).components.unet
    hook = unet.register_forward_pre_hook(lambda *_: torch.empty(10**15, dtype=torch.uint8))
    with pytest.raises(JobFailed, match="out of memory .*--config 12gb.*Nothing was written"):
        list(runner.run(req))
    hook.remove()
    assert outputs(tmp_path / "out") == sorted(p.name for p in first.files)

    second = run_all(runner, req)[-1]
    assert second.output.name == "bigbuckbunny_sag_002.mp4"  # a fresh name; the first run's files untouched
    assert len(built) == 1 and runner.cache.loads == 1  # the networks were built once for both runs


def test_cancel_stops_at_the_next_step_and_keeps_nothing(tmp_path, fixtures, one_torch_thread):
    runner = JobRunner(tmp_path)
    control = JobControl()
    seen = []
    with pytest.raises(JobFailed, match="Cancelled .*step 2 of 6") as failed:
        for event in runner.run(request(fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg",
                                        advanced="sampling.steps=6\nguidance.passes=1"), control):
            seen.append(event)
            if isinstance(event, Progress) and event.step == 1:
                control.cancel.set()
    assert failed.value.cancelled and outputs(tmp_path) == []


def test_bad_input_is_told_before_anything_loads_and_writes_nothing(tmp_path, fixtures):
    text = tmp_path / "in" / "notes.txt"
    text.parent.mkdir()
    text.write_text("not a video")
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    out.mkdir()
    runner = JobRunner(out, max_upload_mb=1.0)
    clip, style = fixtures / "bigbuckbunny.mp4", fixtures / "starry_night.jpg"
    small = tmp_path / "in" / "small.mp4"
    small.write_bytes(b"\0" * 1000)
    cases = [
        (request(text, style), "notes.txt' cannot be read as a video"),
        (request(small, broken), "broken.png"),
        (request(small, style, advanced="guidance.nn=2"), "guidance.nn"),
        (request(small, style, frames="some"), "frames must be 'all' or a number"),
        (request(clip, style), "over this page's upload limit of 1 MB"),
        (JobRequest(None, str(style), "", PageSettings("tiny")), "no video given"),
    ]
    for req, needle in cases:
        with pytest.raises(JobFailed, match="Nothing was written") as failed:
            list(runner.run(req))
        assert needle in str(failed.value)
    assert outputs(out) == []


def test_the_config_choice_lists_the_shipped_configs_and_the_servers_file(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("video:\n  size: 64\n")
    choices = config_choices([str(mine)])
    assert {"video", "image", "tiny", "12gb", "8gb"} <= set(choices) and choices[-1] == str(mine)
    assert PageSettings(str(mine), {"steps": 7}, "guidance.n=3").config().sampling.steps == 7


def test_ui_without_the_extra_says_how_to_install_before_torch(tmp_path):
    script = ("import sys; sys.modules['gradio'] = None\n"  # as if gradio were not installed
              "from sagvideo.cli import main\n"
              f"assert main(['ui', '--output-dir', {str(tmp_path / 'o')!r}]) == 2\n"
              "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_NOT_LOADED')")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "TORCH_NOT_LOADED"
    assert proc.stderr.strip() == 'sagvideo: error: the page needs the optional "ui" extra. To fix: pip install ' \
                                  '"sagvideo[ui]"'


def test_only_this_machine_by_default_and_a_warning_for_other_hosts():
    from sagvideo.cli import build_parser
    from sagvideo.ui.launch import host_warning

    args = build_parser().parse_args(["ui"])
    assert (args.host, args.port, args.auth) == ("127.0.0.1", 7860, None)
    assert host_warning(args.host, args.port, None) is None
    warning = host_warning("0.0.0.0", 7860, None)
    assert "anyone who can reach port 7860" in warning and "--auth USER:PASSWORD" in warning
    assert "--auth" not in host_warning("0.0.0.0", 7860, ("u", "p"))


def test_an_image_upload_is_stylized_as_one_image(tmp_path, fixtures, one_torch_thread):
    runner = JobRunner(tmp_path)
    done = run_all(runner, request(fixtures / "shipwreck.jpg", fixtures / "starry_night.jpg"))[-1]
    assert done.output.name == "shipwreck_sag_001.png" and done.report["kind"] == "image"
    assert outputs(tmp_path) == ["shipwreck_sag_001.json", "shipwreck_sag_001.png"]
