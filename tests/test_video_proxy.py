"""The video proxy's code paths at toy sizes: clips with exact known motion, the model's shapes,
a training run that writes a loadable checkpoint, the metrics against hand-made clips, and one
guided method through the windowed, frame-averaged sampler."""

import pytest
import torch

from sagvideo.bench.video_proxy import clip_metrics, run_method
from sagvideo.proxy.video_data import VELOCITIES, digit_split, moving_digit_clips, roll_clip, structure_maps
from sagvideo.proxy.video_model import VideoConfig, VideoDenoiser
from sagvideo.proxy.video_train import VideoTrainSettings, load_video_proxy, save_video_proxy, train_video


def test_clips_move_by_their_labels_velocity_exactly():
    clips, labels = moving_digit_clips(5, 6, torch.Generator().manual_seed(0))
    assert clips.shape == (5, 1, 6, 16, 16) and float(clips.min()) == -1.0 and float(clips.max()) <= 1.0
    for clip, label in zip(clips[:, 0], labels):
        dy, dx = VELOCITIES[int(label)]
        for t in range(5):
            assert torch.equal(clip[t + 1], torch.roll(clip[t], (dy, dx), dims=(0, 1)))
    asked = torch.tensor([VELOCITIES.index((1, -1))] * 2)
    assert torch.equal(moving_digit_clips(2, 3, torch.Generator().manual_seed(0), labels=asked)[1], asked)


def test_the_control_is_a_blur_that_moves_with_the_clip():
    clips, _ = moving_digit_clips(3, 4, torch.Generator().manual_seed(1))
    control = structure_maps(clips)
    assert control.shape == clips.shape
    assert torch.allclose(structure_maps(torch.roll(clips, (1, -1), dims=(3, 4))),
                          torch.roll(control, (1, -1), dims=(3, 4)), atol=1e-6)  # circular: moves exactly
    assert torch.allclose(control.mean(dim=(3, 4)), clips.mean(dim=(3, 4)), atol=1e-5)  # a blur keeps the mean
    assert float((control - clips).abs().max()) > 0.5  # and loses the strokes' detail
    assert torch.allclose(structure_maps(torch.full((1, 1, 1, 16, 16), -1.0)), torch.tensor(-1.0))


def test_the_bench_clips_use_digits_the_model_never_trained_on():
    from sagvideo.bench.video_proxy import bench_clips

    train, test = digit_split("train"), digit_split("test")
    assert len(train) + len(test) == 1797
    clips, control, labels = bench_clips(3, 5)
    assert labels.tolist() == [0, 1, 2] and torch.equal(control, structure_maps(clips))
    assert (0, 0) not in [VELOCITIES[int(k)] for k in bench_clips(9, 2)[2]]  # every bench clip moves
    for frame in clips[:, 0, 0]:  # each first frame is one digit's 8x8 block rolled somewhere on the canvas
        blocks = torch.stack([torch.roll(frame, (-dy, -dx), dims=(0, 1))[:8, :8] for dy in range(16) for dx in range(16)])
        assert bool((blocks[:, None] == test[None]).all(-1).all(-1).any())
        assert not bool((blocks[:, None] == train[None]).all(-1).all(-1).any())


def test_model_keeps_the_clip_shape_and_mixes_frames():
    torch.manual_seed(0)
    model = VideoDenoiser(VideoConfig(channels=8)).eval()
    for block in (model.motion, model.motion_mid):  # zero-initialised: give the attention a say
        torch.nn.init.normal_(block.out.weight, std=0.5)
    x = torch.randn(2, 1, 5, 16, 16)
    with torch.no_grad():
        control = torch.randn(2, 1, 5, 16, 16)
        eps = model(x, 500, control)
        changed = x.clone()
        changed[:, :, 4] += 1.0
        eps2 = model(changed, 500, control)
        other_control = control.clone()
        other_control[:, :, 0] += 1.0
        eps3 = model(x, 500, other_control)
    assert eps.shape == x.shape
    assert not torch.allclose(eps[:, :, 0], eps2[:, :, 0])  # frame 0 sees frame 4: temporal attention
    assert not torch.allclose(eps[:, :, 0], eps3[:, :, 0])  # the control enters
    with pytest.raises(ValueError, match=r"\(B, 1, F, 16, 16\)"):
        model(torch.randn(2, 1, 16, 16), 500, torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match="control must have"):
        model(x, 500, torch.randn(2, 1, 4, 16, 16))


def test_toy_training_writes_a_loadable_checkpoint(tmp_path):
    model, record = train_video(VideoTrainSettings(steps=2, batch_size=2, log_every=1), VideoConfig(channels=8),
                                log=lambda s: None)
    path = save_video_proxy(tmp_path / "video.pt", model, record)
    loaded, meta = load_video_proxy(path)
    assert loaded.config == VideoConfig(channels=8) and meta["settings"]["steps"] == 2
    with pytest.raises(FileNotFoundError, match="video_train"):
        load_video_proxy(tmp_path / "missing.pt")


def test_metrics_of_hand_made_clips():
    first = torch.full((16, 16), -1.0)
    first[2:6, 3:7] = 1.0
    label = torch.tensor([VELOCITIES.index((0, 1))])
    follows = roll_clip(first, (0, 1), 10)[None, None]  # (1, 1, 10, 16, 16), moves as asked
    still = first.expand(10, 16, 16)[None, None]  # does not move at all
    good, bad = clip_metrics(follows, label), clip_metrics(still, label)
    assert float(good["warp_error"][0]) == 0.0 and float(good["warp_error_sq"][0]) == 0.0
    # a 4x4 white square that stays put while asked to move one column right: per pair, 8 of the
    # 256 pixels differ by 1 (in [0, 1] units) between x_{t+1} and the shifted x_t
    assert float(bad["warp_error"][0]) == pytest.approx(8 / 256)
    assert float(bad["warp_error_sq"][0]) == pytest.approx(8 / 256)
    assert float(bad["change"][0]) == 0.0 and float(good["change"][0]) == pytest.approx(8 / 256)
    # moving right, checked against moving left: the square's two edges, two columns apart each
    assert float(good["warp_error_reversed"][0]) == pytest.approx(16 / 256)
    assert float(clip_metrics(follows, label, unguided=good)["flicker"][0]) == pytest.approx(1.0)
    # the same frame throughout: both windows score the same loss, the clip's
    assert float(bad["window_gap"][0]) == pytest.approx(0.0, abs=1e-5)
    assert float(bad["window_1_loss"][0]) == pytest.approx(float(bad["style_loss"][0]), rel=1e-5)


def test_a_guided_method_runs_through_the_windowed_sampler():
    """Plumbing only (a random network's clean estimate says nothing about its samples' loss:
    `test_evidence` checks that each method lowers the loss on the trained image proxy)."""
    torch.manual_seed(0)
    model = VideoDenoiser(VideoConfig(channels=8)).eval().requires_grad_(False)
    base, counts, _ = run_method(model, "none", {}, seeds=2, frames=10, steps=3)
    guided, g_counts, _ = run_method(model, "freedom", {"guidance.strength": 0.5, "guidance.passes": 1}, seeds=2,
                                     frames=10, steps=3, unguided=base)
    assert counts.vjps == 0 and g_counts.vjps > 0  # the gradient went through the windowed model
    assert not torch.equal(guided["style_loss"], base["style_loss"])  # the pull acted
    assert set(guided) >= {"style_loss", "warp_error", "warp_error_sq", "flicker", "window_0_loss", "window_1_loss",
                           "window_gap"}


def test_bench_refuses_too_few_seeds_or_a_clip_within_one_window():
    import argparse

    from sagvideo.bench.video_proxy import bench_video_proxy
    from sagvideo.errors import InputError

    with pytest.raises(InputError, match="--seeds >= 2"):
        bench_video_proxy(argparse.Namespace(seeds=1, steps=10))
    with pytest.raises(InputError, match="--clip-frames above 8"):
        bench_video_proxy(argparse.Namespace(seeds=4, steps=10, clip_frames=8))


def test_video_pareto_front_prefers_the_lower_warp_error():
    from sagvideo.bench.pareto_plot import VIDEO_AXES, pareto_front

    pts = [{"s": 1, "style_loss": 9.0, "warp_error": 0.01}, {"s": 2, "style_loss": 8.0, "warp_error": 0.02},
           {"s": 3, "style_loss": 8.5, "warp_error": 0.03}, {"s": 4, "style_loss": 7.0, "warp_error": 0.05}]
    assert [p["s"] for p in pareto_front(pts, VIDEO_AXES)] == [1, 2, 4]  # 3 is worse on both than 2


def test_the_committed_video_proxy_follows_the_motion_its_control_asks_for():
    """The shipped checkpoint's unguided samples move as asked: their error against the asked
    motion is well under that against the opposite motion and under the plain frame change
    (a model that ignored the control, or drew still frames, fails this)."""
    model, meta = load_video_proxy()
    assert meta["num_parameters"] < 200_000 and meta["settings"]["steps"] == VideoTrainSettings().steps
    metrics, counts, _ = run_method(model, "none", {}, seeds=4, frames=10, steps=6)
    assert counts.evals == 6
    warp, reversed_, change = (float(metrics[k].mean()) for k in ("warp_error", "warp_error_reversed", "change"))
    assert warp < 0.5 * reversed_ and warp < 0.6 * change, (warp, reversed_, change)


def test_a_trainer_never_overwrites_a_users_file_unasked(tmp_path):
    from sagvideo.errors import InputError
    from sagvideo.proxy.video_train import DEFAULT_VIDEO_CHECKPOINT, main

    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"a user's file")
    args = ["--out", str(mine), "--steps", "1", "--channels", "8", "--log-every", "1"]
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        main(args)
    assert mine.read_bytes() == b"a user's file"
    with pytest.raises(InputError, match="does not exist"):
        main(["--out", str(tmp_path / "absent" / "v.pt"), "--steps", "1"])
    assert main([*args, "--overwrite"])["settings"]["steps"] == 1 and load_video_proxy(mine)[1]["settings"]["steps"] == 1
    from sagvideo.proxy.checkpoint import checkpoint_target

    # the package's own checkpoint is what the trainer re-creates: no --overwrite needed for it
    assert checkpoint_target(DEFAULT_VIDEO_CHECKPOINT, DEFAULT_VIDEO_CHECKPOINT, False) == DEFAULT_VIDEO_CHECKPOINT


def test_training_draws_only_the_training_digits(monkeypatch):
    import sagvideo.proxy.video_train as video_train
    from sagvideo.proxy.video_data import TRAIN_DIGITS

    seen = []

    def recording(count, frames, gen, digits=None, labels=None):
        seen.append(len(digits))
        return moving_digit_clips(count, frames, gen, digits, labels)

    monkeypatch.setattr(video_train, "moving_digit_clips", recording)
    train_video(VideoTrainSettings(steps=1, batch_size=2, log_every=1), VideoConfig(channels=8), log=lambda s: None)
    assert seen == [TRAIN_DIGITS]


def test_a_refused_trainer_input_exits_2_with_its_message_and_no_traceback(capsys):
    from sagvideo.errors import InputError
    from sagvideo.proxy.checkpoint import run_command

    def refused():
        raise InputError("'x.pt' already exists. To fix: pass --overwrite.")

    with pytest.raises(SystemExit) as ended:
        run_command(refused)
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: 'x.pt' already exists. To fix: pass --overwrite.\n" and "Traceback" not in err
