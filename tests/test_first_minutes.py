"""A new user's first minutes: progress that ends exact, image defaults under any --config layering,
plots readable at any length, quiet output, and a README whose library snippet runs as written."""

import numpy as np
import pytest
import torch

import sagvideo.pipeline.stylize as pipeline_module
from sagvideo import load_config
from sagvideo.pipeline import StylizePipeline
from sagvideo.pipeline.runtime import Runtime


@pytest.fixture(scope="module")
def runtime():
    return Runtime.from_config(load_config("tiny"))


@pytest.mark.parametrize("overrides,planned_exactly", [
    ({"guidance.n": 3}, True),  # SAG, symplectic, one window: the first prediction starts the estimate
    ({"video.window": 2, "video.overlap": 1}, True),  # several windows: the gradient makes its own first
    ({"guidance.method": "freedom"}, False),  # other methods: corrected step by step
])
def test_the_sampling_bar_ends_exactly_at_its_total(runtime, monkeypatch, overrides, planned_exactly):
    bars = []

    class Recording(pipeline_module.SamplingProgress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.planned = self.bar.total
            bars.append(self)

    monkeypatch.setattr(pipeline_module, "SamplingProgress", Recording)
    config = load_config("tiny", {"sampling.steps": 3, "guidance.passes": 1, "output.metrics": False, **overrides})
    pipe = StylizePipeline(runtime, config)
    frames = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    pipe(frames, torch.rand(3, 64, 64), "x", progress=True)
    bar = bars[-1]
    assert bar.bar.n == bar.bar.total  # never "33/39"
    units = bar.calls + bar.graph_calls
    assert bar.bar.n == units
    if planned_exactly:
        assert bar.planned == units  # the ETA was right from the first step


# ------------------------------------------------------------------ checks before torch, messages

import os
import subprocess
import sys
from pathlib import Path

from sagvideo import defaults
from sagvideo.cli import build_parser, config_from_args, main
from sagvideo.config import shipped_configs

ROOT = Path(__file__).resolve().parents[1]

def test_input_errors_answer_before_torch_is_imported(tmp_path):
    """One child process, several commands: each bad input is refused with torch never imported."""
    style = ROOT / "samples" / "style.png"
    clip = ROOT / "samples" / "clip.mp4"
    (tmp_path / "notes.txt").write_text("not an image")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"- video: {tmp_path / 'missing.mp4'}\n  style: {style}\n  prompt: x\n")
    cases = [
        (["stylize", tmp_path / "nothere.mp4", "--style", style, "--prompt", "x", "--config", "tiny"], "nothere.mp4"),
        (["stylize", clip, "--style", tmp_path / "notes.txt", "--prompt", "x", "--config", "tiny",
          "-o", tmp_path / "o.mp4"], "notes.txt"),
        (["stylize", clip, "--style", style, "--prompt", "x", "--config", "tiny", "-o", tmp_path / "o.avi2"], ".avi2"),
        (["stylize", clip, "--style", style, "--prompt", "x", "--set", "guidance.nn=2"], "guidance.nn"),
        (["image", "--style", style, "--prompt", "x", "--config", "tiny", "-o", tmp_path / "missing" / "o.png"],
         "does not exist"),
        (["depth", tmp_path / "nothere.mp4", "-o", tmp_path / "d", "--config", "tiny"], "nothere.mp4"),
        (["batch", jobs, "-o", tmp_path / "out", "--config", "tiny"], "missing.mp4"),
    ]
    script = "\n".join(["import sys", "from sagvideo.cli import main",
                        *[f"assert main({[str(a) for a in args]!r}) == 2, {str(needle)!r}" for args, needle in cases],
                        "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_NOT_LOADED')"])
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "TORCH_NOT_LOADED", proc.stderr
    for _, needle in cases:
        assert needle in proc.stderr
    assert proc.stderr.count("sagvideo: error:") == len(cases) and "Traceback" not in proc.stderr


def test_an_output_that_is_the_input_says_so_first(capsys, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes((ROOT / "samples" / "clip.mp4").read_bytes())
    for extra in ([], ["--overwrite"]):  # the hint must not be "pass --overwrite", which is then refused
        code = main(["stylize", str(clip), "--style", str(ROOT / "samples" / "style.png"), "--prompt", "x",
                     "--config", "tiny", "-o", str(clip), *extra])
        err = capsys.readouterr().err
        assert code == 2 and "is the input" in err and "--overwrite" not in err.split("To fix:")[-1], err


def test_every_missing_hub_model_is_listed_with_its_download_command(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))  # nothing cached
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache" / "hub"))
    code = main(["stylize", str(ROOT / "samples" / "clip.mp4"), "--style", str(ROOT / "samples" / "style.png"),
                 "--prompt", "x", "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    ids = [defaults.DEFAULT_BASE, defaults.DEFAULT_CONTROLNET, defaults.DEFAULT_CLIP_VISION,
           defaults.DEFAULT_MOTION_ADAPTER, "lllyasviel/Annotators"]
    assert code == 2 and "7 of the 7 models" in err  # the five above, the IP-Adapter and its image encoder
    for repo in ids:
        assert f"  hf download {repo}" in err
    assert f"  hf download {defaults.DEFAULT_IP_ADAPTER} {defaults.IP_ADAPTER_WEIGHT}" in err
    assert f'  hf download {defaults.DEFAULT_IMAGE_ENCODER} --include "{defaults.IMAGE_ENCODER_SUBFOLDER}/*"' in err
    import shutil
    assert shutil.which("hf") or (Path(sys.executable).parent / "hf").exists()  # the command named exists


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_image_keeps_its_own_schedule_and_steps_under_any_config(name):
    args = build_parser().parse_args(["image", "--prompt", "x", "--style", "s.png", "--config", name])
    sampling = config_from_args(args, base="image").sampling
    image = load_config("image").sampling
    sd15 = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "timestep_spacing": "leading"}
    for key, value in sd15.items():  # SD 1.5's scheduler config (v1-5 scheduler_config.json)
        assert getattr(sampling, key) == value, (name, key)
    layered_steps = load_config(name).sampling.steps
    assert sampling.steps == (layered_steps if layered_steps != load_config().sampling.steps else image.steps)


# ------------------------------------------------------------------ plots and contact sheet

from PIL import Image

from sagvideo.images import contact_sheet
from sagvideo.metrics.plot import PANEL_HEIGHT, SMALL_HEIGHT, plot_run, tick_labels


def test_tick_labels_carry_the_digits_that_tell_them_apart():
    ticks = list(np.linspace(519.31, 519.38, 5))
    labels = tick_labels(ticks)
    assert len(set(labels)) == 5 and all(abs(float(a) - b) < 0.01 for a, b in zip(labels, ticks))
    assert tick_labels([0.0, 0.25, 0.5]) == ["0", "0.25", "0.5"]  # no needless digits


def test_per_frame_metrics_are_small_multiples_and_the_sheet_numbers_its_frames(tmp_path):
    rng = np.random.default_rng(0)
    metrics = {name: list(rng.random(120)) for name in ("a", "b", "c", "d", "e", "f")}
    plot_run(tmp_path / "p.png", list(519.3 + 0.001 * np.arange(40)), metrics)
    with Image.open(tmp_path / "p.png") as image:
        assert image.size[1] == PANEL_HEIGHT + 3 * SMALL_HEIGHT  # six panels in two columns
    frames = [np.full((16, 16, 3), 90, np.uint8)] * 120
    contact_sheet({"input": frames}, tmp_path / "plain.png")
    contact_sheet({"input": frames}, tmp_path / "numbered.png", frame_numbers=list(range(120)))
    plain, numbered = (np.asarray(Image.open(tmp_path / n)) for n in ("plain.png", "numbered.png"))
    assert plain.shape == numbered.shape and (plain != numbered).any()


# ------------------------------------------------------------------ README

def test_the_readme_library_snippet_runs_as_written(tmp_path, monkeypatch):
    """Every line of the snippet runs unchanged; only its config is shrunk further (one time-travel
    pass, 32 px, no metrics) so the three runs it makes stay cheap."""
    import sagvideo
    from sagvideo.config import load_config as real_load_config

    toy = {"guidance.passes": 1, "video.size": 32, "output.metrics": False}
    monkeypatch.setattr(sagvideo, "load_config", lambda files=None, overrides=None:
                        real_load_config(files, {**(overrides or {}), **toy}), raising=False)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## As a library"):]
    snippet = section[section.index("```python\n") + 10:section.index("```\n", section.index("```python\n") + 10)]
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "README.md (As a library)", "exec"), scope)
    assert scope["out"].shape == scope["frames"].shape and scope["out"].dtype == np.uint8
    assert (tmp_path / "ball.mp4").is_file() and (tmp_path / "ball.json").is_file()


# ------------------------------------------------------------------ quiet by default

from sagvideo import console
from sagvideo.video.io import decoder_reason


def test_decoder_chatter_becomes_one_note_and_its_errors_read_as_words(capfd, monkeypatch):
    monkeypatch.setitem(console._state, "verbose", False)
    with console.native_stderr_to_notes("'clip.mp4'"):
        os.write(2, b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55] stream 1, offset 0xd74a: partial file\n")
        os.write(2, b"[h264 @ 0x56] error while decoding MB 3 4\nsomething else\n")
    err = capfd.readouterr().err
    assert "[mov,mp4" not in err and "[h264" not in err and "something else" in err
    assert err.count("sagvideo: note: the video decoder reported 2 problem(s) reading 'clip.mp4'") == 1
    raw = RuntimeError("[00:20:10] /github/workspace/src/video/video_reader.cc:486: Error: av_read_frame failed "
                       "with 1094995529")
    assert decoder_reason(raw) == "reading frames failed, invalid data: the file is damaged or cut short"


def test_warnings_are_ours_and_one_line_unless_verbose(capsys, monkeypatch):
    import logging
    import warnings

    monkeypatch.setitem(console._state, "verbose", True)
    for key in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(key, raising=False)  # restored after the test
    with warnings.catch_warnings():
        console.configure_output(verbose=False)
        warnings.warn_explicit("style image 'tiny.png' is 32x32 px\nmore", UserWarning, "images.py", 1,
                               module="sagvideo.images")
        warnings.warn_explicit("`x` is deprecated", DeprecationWarning, "a.py", 1, module="diffusers.models")
        warnings.warn_explicit("does not have many workers", UserWarning, "b.py", 1, module="pytorch_lightning.x")
        assert logging.getLogger("pytorch_lightning").getEffectiveLevel() == logging.WARNING
    err = capsys.readouterr().err
    assert err == "sagvideo: warning: style image 'tiny.png' is 32x32 px\n"
    for name in console.LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
