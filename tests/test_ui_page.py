"""`sagvideo ui` end to end: the real command serves the page, a real headless browser (Debian's
chromium driven by playwright) uses it, and `gradio_client` drives its API endpoint.

Locally these skip without the `ui` extra or chromium; under CI (CI=true) a missing piece fails,
so the browser test can never be skipped silently there (`.ci/run` installs both).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _fixtures import require_fixture

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# offline and quiet: without the background-networking flags chromium dials out (and is refused on a closed network)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_SETS = ["video.frames=2", "sampling.steps=4", "guidance.passes=1"]


def require(what: str, ok: bool) -> None:
    if not ok:
        message = f"{what} is not installed (pip install -e '.[ui,test]'; apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`sagvideo ui --config tiny` in a child process: (url, output folder)."""
    require("gradio (the ui extra)", _importable("gradio") and _importable("gradio_client"))
    out = tmp_path_factory.mktemp("ui") / "outputs"
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
               GRADIO_TEMP_DIR=str(out.parent / "gradio"))
    proc = subprocess.Popen([sys.executable, "-m", "sagvideo.cli", "ui", "--config", "tiny", "--set", *SERVER_SETS,
                             "--output-dir", str(out), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, log = f"http://127.0.0.1:{port}/", []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        log.append(line)
        if f"127.0.0.1:{port}" in line or time.monotonic() > deadline:
            break
    assert proc.poll() is None, "".join(log)
    yield url, out
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    require("playwright", _importable("playwright"))
    require(f"chromium ({CHROMIUM})", Path(CHROMIUM).is_file())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def status(page) -> str:
    return page.locator("#status [data-testid=markdown]").inner_text().strip()


def upload(page, field: str, path: Path) -> None:
    clear = page.locator(f"#{field} button[aria-label=Clear]")
    if clear.count():  # a file is shown: clear it, which brings the file input back
        clear.click()
    page.locator(f"#{field} input[type=file]").set_input_files(str(path))
    page.locator(f"#{field}").get_by_text(path.stem).first.wait_for(timeout=30_000)


# records every text the status line and gradio's progress bar show, as the page renders them
WATCH = """() => {
  window.seen = {status: [], bar: []};
  new MutationObserver(() => {
    const status = document.querySelector('#status [data-testid=markdown]')?.innerText.trim();
    if (status && status !== window.seen.status.at(-1)) window.seen.status.push(status);
    const bar = document.querySelector('.progress-text')?.innerText.trim();
    if (bar && bar !== window.seen.bar.at(-1)) window.seen.bar.push(bar);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def press_and_watch(page, until: str, timeout: float = 120, on_step=None) -> tuple[str, list[int], list[str]]:
    """Press Stylize and wait until the status starts with `until`: (that status, the sampling steps
    the status showed in order, the texts gradio's progress bar showed)."""
    page.evaluate(WATCH)
    page.click("#stylize")
    deadline, clicked = time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        seen = page.evaluate("window.seen")
        steps = [int(m.group(1)) for m in (re.search(r"step (\d+)/", t) for t in seen["status"]) if m]
        if on_step and not clicked and steps and on_step(steps[-1]):
            clicked = True
        if seen["status"] and seen["status"][-1].startswith(until):
            return seen["status"][-1], steps, seen["bar"]
        time.sleep(0.05)
    raise AssertionError(f"the page never said {until!r}; it says {status(page)!r}")


def test_the_page_in_a_browser(server, browser, tmp_path):
    url, out = server
    clip, painting = require_fixture("bigbuckbunny.mp4"), require_fixture("starry_night.jpg")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside = []
    page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
    page.goto(url)

    # a text file as the video: the message on the page, nothing written
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    upload(page, "video-upload", notes)
    upload(page, "style-upload", painting)
    text, _, _ = press_and_watch(page, "error")
    assert "'notes.txt' cannot be read as a video" in text and "Nothing was written" in text
    assert outputs(out) == []

    # then a good run right after: the bar moves step by step, the result matches its report
    upload(page, "video-upload", clip)
    text, steps, bar = press_and_watch(page, "done")
    assert steps == [1, 2, 3, 4], steps  # every step of the run shown, in order
    assert any("/4 steps" in t for t in bar), bar
    report = json.loads((out / "bigbuckbunny_sag_001.json").read_text())
    assert report["status"] == "complete" and report["frames"] == 2
    video = page.locator("#result video")
    video.wait_for()
    page.wait_for_function("document.querySelector('#result video').readyState >= 1")
    duration = video.evaluate("v => v.duration")
    fps = float(Fraction(report["output_fps"]))
    assert duration == pytest.approx(report["frames"] / fps, abs=0.5 / fps)
    served = tmp_path / "served.mp4"
    served.write_bytes(page.request.get(video.get_attribute("src")).body())
    import decord

    assert len(decord.VideoReader(str(served))) == report["frames"]
    downloads = page.locator("#files td.filename").evaluate_all("cells => cells.map(c => c.getAttribute('aria-label'))")
    assert sorted(downloads) == outputs(out)  # every file the run wrote, and only those
    page.wait_for_function("document.querySelector('#result video').readyState >= 2")
    for close in page.locator(".toast-close").all():  # the first run's error message, for the picture
        close.click()
    shot = Path(os.environ.get("SAGVIDEO_UI_SCREENSHOT", tmp_path / "ui.png"))
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    written = outputs(out)

    # Cancel mid-run: it stops at the next step, and no output is kept
    page.locator("#advanced textarea").fill("sampling.steps=40")
    text, steps, _ = press_and_watch(page, "cancelled",
                                     on_step=lambda s: s >= 2 and page.click("#cancel") is None)
    assert "Cancelled (cancelled at step" in text and steps[-1] < 40
    assert outputs(out) == written
    assert outside == []  # the page called nothing outside the server
    page.close()


def test_the_api_endpoint_with_gradio_client(server, tmp_path):
    url, out = server
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    painting = np.asarray(Image.open(require_fixture("starry_night.jpg")).convert("RGB").resize((96, 64)))
    style16 = tmp_path / "style16.png"  # a 16-bit style image reaches the job unconverted, and works
    Image.fromarray((painting[..., 0].astype(np.uint16) * 257), mode="I;16").save(style16)
    client = Client(url, verbose=False)
    job = dict(video=handle_file(str(require_fixture("bigbuckbunny.mp4"))), style=handle_file(str(style16)),
               prompt="a rabbit", frames="2", advanced="sampling.steps=2", api_name="/stylize")
    # one device: a second job sent while the first runs waits its turn (the first runs more steps,
    # and the second is sent once the first has started: two submits may reach the queue in either order)
    first = client.submit(**{**job, "advanced": "sampling.steps=12"})
    running = (Status.PROCESSING, Status.ITERATING, Status.PROGRESS, Status.FINISHED)
    deadline = time.monotonic() + 120
    while first.status().code not in running and time.monotonic() < deadline:
        time.sleep(0.02)
    second = client.submit(**job)
    waited = set()
    while not second.done():
        update = second.status()
        if update.code == Status.IN_QUEUE and not first.done():
            waited.add(update.rank)
        time.sleep(0.02)
    assert waited and min(waited) >= 0  # the second run was told its place in the queue while the first ran
    for result, steps in ((first.result(), 12), (second.result(), 2)):
        message, _, _, video, summary, plot, files = result
        assert message.startswith("done") and summary["frames"] == 2
        name = Path(video).name
        report = json.loads((out / name.replace(".mp4", ".json")).read_text())
        assert report["input"]["prompt"] == "a rabbit" and len(report["timesteps"]) == steps
        assert sorted(Path(f).name for f in files) == sorted(p for p in outputs(out) if p.startswith(name[:-4]))
