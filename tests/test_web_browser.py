"""The web demo in a real browser: Debian's Chromium driven by Playwright, against a server
started as a separate process (``python -m lafin.webapp``) with tiny random weights.

Two browser contexts are two users: one uploads a photo and a mask file, the other uploads a
photo and paints the hole with the brush; both click Inpaint at once and each must get its own
result, filled inside its hole and bit-identical outside. Nothing may be fetched from another host.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from conftest import box_mask, face_like

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (apt-get install chromium) for the browser test",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed "
                    "(pip install playwright; the browser is Debian's chromium)")
pytest.importorskip("gradio", reason="the web demo needs the 'web' extra (gradio)")

from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

# generous: the demo shares two cores with training runs on the development machine
TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo served by its own process on a free port; yields (url, folder with inputs)."""
    import torch

    from lafin.checkpoint import save_weights
    from lafin.config import get_preset
    from lafin.networks import build_generator, build_landmark_predictor

    folder = tmp_path_factory.mktemp("web")
    config = get_preset("tiny")
    torch.manual_seed(0)
    save_weights(folder / "tiny.safetensors", config, generator=build_generator(config),
                 landmark_predictor=build_landmark_predictor(config))
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1")
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "lafin.webapp", "--port", str(port),
                             "--weights", str(folder / "tiny.safetensors")],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}):\n"
                            f"{(folder / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within 90 s:\n"
                            f"{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, folder
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


def _open_page(browser, url: str, hosts: set[str]):
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    context.on("request", lambda request: hosts.add(urlparse(request.url).hostname or ""))
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#lafin-inpaint")
    return context, page


def _upload_photo(page, path: Path) -> None:
    page.locator("#lafin-editor input[type=file]").first.set_input_files(str(path))
    # the editor's tools come alive once the photo is on the canvas
    page.wait_for_selector('#lafin-editor button[aria-label="Pan"]:not([disabled])')
    page.wait_for_timeout(300)


def _upload_file(page, component: str, path: Path, attempts: int = 3) -> None:
    """Give a file to a gradio File component and wait until it shows the file's name. On a
    loaded machine the first upload was seen to be dropped now and then (the name never came):
    the upload is retried, a page that never shows it still fails."""
    for attempt in range(attempts):
        page.locator(f"{component} input[type=file]").first.set_input_files(str(path))
        try:
            page.locator(component).get_by_text(path.name).wait_for(
                timeout=TIMEOUT_MS // attempts)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise


def _fetch_png(context, url: str) -> np.ndarray:
    response = context.request.get(url)
    assert response.ok, f"{url}: HTTP {response.status}"
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def _result(page, context) -> np.ndarray:
    img = page.locator('#lafin-result img[src*="lafin-result.png"]')
    img.wait_for()
    return _fetch_png(context, img.get_attribute("src"))


def test_two_users_inpaint_in_the_browser(server, browser):
    url, folder = server
    image_a, hole_a = face_like(96, 80, seed=1), box_mask(96, 80)
    image_b = face_like(88, 72, seed=2)
    Image.fromarray(image_a).save(folder / "a.png")
    Image.fromarray(hole_a * 255).save(folder / "hole.png")
    Image.fromarray(image_b).save(folder / "b.png")
    hosts: set[str] = set()
    ctx_a, page_a = _open_page(browser, url, hosts)
    ctx_b, page_b = _open_page(browser, url, hosts)

    # user A: a photo without a hole is a message in the page, not a dead page
    _upload_photo(page_a, folder / "a.png")
    page_a.click("#lafin-inpaint")
    page_a.get_by_text("The mask is empty").first.wait_for()
    _upload_file(page_a, "#lafin-mask-file", folder / "hole.png")

    # user B: paints the hole with the brush across the middle of the photo
    _upload_photo(page_b, folder / "b.png")
    box = page_b.locator("#lafin-editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page_b.mouse.move(cx - 40, cy - 10)
    page_b.mouse.down()
    for step in range(1, 11):
        page_b.mouse.move(cx - 40 + 8 * step, cy - 10 + 2 * step)
    page_b.mouse.up()

    # both at once: the queue runs them one after the other, each session gets its own result
    page_a.click("#lafin-inpaint")
    page_b.click("#lafin-inpaint")
    result_a, result_b = _result(page_a, ctx_a), _result(page_b, ctx_b)

    assert result_a.shape == image_a.shape
    assert np.array_equal(result_a[hole_a == 0], image_a[hole_a == 0])
    assert not np.array_equal(result_a[hole_a == 1], image_a[hole_a == 1])

    mask_link = page_b.locator('#lafin-downloads a[download="lafin-mask.png"]')
    mask_link.wait_for()
    hole_b = _fetch_png(ctx_b, mask_link.get_attribute("href"))[..., 0] > 0
    assert result_b.shape == image_b.shape and hole_b.shape == image_b.shape[:2]
    assert 20 < hole_b.sum() < 0.5 * hole_b.size  # the stroke, not the whole photo
    assert np.array_equal(result_b[~hole_b], image_b[~hole_b])
    assert not np.array_equal(result_b[hole_b], image_b[hole_b])

    # A edits the structure: a preset moves the mouth corners, Regenerate uses those landmarks
    def landmarks_a() -> np.ndarray:
        link = page_a.locator('#lafin-downloads a[download="lafin-landmarks.json"]')
        link.wait_for()
        body = ctx_a.request.get(link.get_attribute("href")).body()
        return np.asarray(json.loads(body)["landmarks"], np.float64)

    predicted = landmarks_a()
    assert predicted.shape == (68, 2)
    page_a.click("#lafin-preset-smile")
    page_a.get_by_text("Applied smile").wait_for()
    page_a.click("#lafin-regenerate")
    page_a.locator("#lafin-status").get_by_text("your landmarks").wait_for()
    edited = landmarks_a()
    moved = np.flatnonzero(np.abs(edited - predicted).max(axis=1) > 0.2)
    assert {48, 54} <= set(moved) <= set(range(40, 68))
    assert np.array_equal(_result(page_a, ctx_a)[hole_a == 0], image_a[hole_a == 0])

    ctx_a.close()
    ctx_b.close()
    assert hosts <= {"127.0.0.1"}, f"the page fetched from other hosts: {hosts - {'127.0.0.1'}}"
