"""The web demo in a real browser: Debian's Chromium driven by Playwright, against a server
started as a separate process (``lafin serve``) with tiny random weights; when it is stopped with
SIGTERM its temporary folder must be empty.

- One user: example -> Inpaint -> paint on the result -> Inpaint again -> Ctrl+Z (undo), with the
  brush-size key and an expression on the way.
- A group photo (two synthetic faces, one hole over both mouths): both faces are reported.
- An old photo: Detect damage puts the detector's mask (scratches) in the painter, Inpaint fills it.
- Refused uploads (a text file dropped on the painter, a truncated JPEG) give their message on
  the page and no traceback in the server's log.
- Two browser contexts are two users: one opens a photo and a mask file, the other opens a photo
  and paints the hole; both click Inpaint at once and each must get its own result, filled inside
  its hole and bit-identical outside.
Nothing may be fetched from another host.
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
    pytest.skip(
        "no /usr/bin/chromium (apt-get install chromium) for the browser test", allow_module_level=True
    )
pytest.importorskip(
    "playwright.sync_api",
    reason="Python playwright is not installed (pip install playwright; the browser is Debian's chromium)",
)
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
    save_weights(
        folder / "tiny.safetensors",
        config,
        generator=build_generator(config),
        landmark_predictor=build_landmark_predictor(config),
    )
    port = _free_port()
    # its own TMPDIR: after SIGTERM the server must have removed everything it wrote there
    tmp = folder / "server-tmp"
    tmp.mkdir()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1", TMPDIR=str(tmp))
    log = open(folder / "server.log", "w")
    # `lafin serve`, the command users run (its SIGTERM handling is checked at the end)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lafin.cli",
            "serve",
            "--port",
            str(port),
            "--weights",
            str(folder / "tiny.safetensors"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=folder,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"the server exited ({proc.returncode}):\n{(folder / 'server.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the server did not answer within 90 s:\n{(folder / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url, folder
    finally:
        proc.terminate()  # SIGTERM
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
    left = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
    assert code == 0 and not left, (
        f"after SIGTERM: exit {code}, left in TMPDIR: {left[:10]}\n"
        f"{(folder / 'server.log').read_text()[-2000:]}"
    )


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
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
    page.locator("#lafin-photos input[type=file]").first.set_input_files(str(path))
    page.locator("#lafin-status").get_by_text(f"Opened {path.name}").wait_for()
    page.wait_for_selector("#lafin-painter .lafin-paint[data-ready] canvas")


def _paint(page, dx: float = 0.0, dy: float = 0.0) -> None:
    """A stroke across the middle of the painter (offset by dx, dy screen pixels)."""
    box = page.locator("#lafin-painter canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2 + dy
    page.mouse.move(cx - 40, cy - 10)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(cx - 40 + 8 * step, cy - 10 + 2 * step)
    page.mouse.up()


def _upload_file(page, component: str, path: Path, attempts: int = 3) -> None:
    """Give a file to a gradio File component and wait until its upload is done: the file's
    row with its download link. (The row splits the name into stem and extension, "hole .png",
    so waiting for the name's text matched only the brief "Uploading..." line and missed it on a
    loaded machine.) A failed upload offers the file input again: it is retried."""
    done = page.locator(f'{component} a[download="{path.name}"]')
    for attempt in range(attempts):
        page.locator(f"{component} input[type=file]").first.set_input_files(str(path))
        try:
            done.first.wait_for(timeout=TIMEOUT_MS // attempts)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1 or not page.locator(f"{component} input[type=file]").count():
                raise


def _fetch_png(context, url: str) -> np.ndarray:
    response = context.request.get(url)
    assert response.ok, f"{url}: HTTP {response.status}"
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def _download(page, context, name: str) -> np.ndarray:
    link = page.locator(f'#lafin-downloads a[download="{name}"]')
    link.wait_for()
    return _fetch_png(context, link.get_attribute("href"))


def _result(page, context) -> np.ndarray:
    return _download(page, context, "lafin-result.png")


def _status(page, text: str, where: str = "#lafin-status") -> None:
    page.locator(where).get_by_text(text).first.wait_for()


def test_example_inpaint_edit_the_result_again_and_undo(server, browser):
    url, folder = server
    hosts: set[str] = set()
    ctx, page = _open_page(browser, url, hosts)
    page.click("#lafin-example")
    page.wait_for_selector("#lafin-painter .lafin-paint[data-ready][data-mask]")
    # the skin grain starts at 1 and a changed value goes with the run (the Inpaint event's
    # inputs include it: a mismatch would be an error, not a result)
    grain = page.locator("#lafin-grain input[type=number]")
    assert float(grain.input_value()) == 1.0
    grain.fill("0.5")
    grain.press("Enter")
    page.wait_for_function("() => document.querySelector('#lafin-grain input[type=range]').value === '0.5'")
    page.click("#lafin-inpaint")
    _status(page, "predicted landmarks")
    first = _result(page, ctx)
    first_hole = _download(page, ctx, "lafin-mask.png")[..., 0] > 0
    assert first.shape == (256, 256, 3) and first_hole.any()

    # the brush keys work on the painter (no trip to the server)
    page.locator("#lafin-brush-info").get_by_text("brush").wait_for()
    before = page.locator("#lafin-brush-info").inner_text()
    page.keyboard.press("]")
    assert page.locator("#lafin-brush-info").inner_text() != before

    # paint on the result (the painter now shows it) and inpaint again: the new run starts
    # from the first result, so everything outside the new hole is the first result
    old_files = page.locator('#lafin-downloads a[download="lafin-result.png"]').get_attribute("href")
    _paint(page, dy=60)
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "old => { const a = document.querySelector('#lafin-downloads a[download=\"lafin-result.png\"]');"
        " return a && a.getAttribute('href') !== old; }",
        arg=old_files,
    )
    second = _result(page, ctx)
    second_hole = _download(page, ctx, "lafin-mask.png")[..., 0] > 0
    assert second_hole.any() and not np.array_equal(second_hole, first_hole)
    assert np.array_equal(second[~second_hole], first[~second_hole])
    assert not np.array_equal(second, first)

    # an expression's message appears next to the expression buttons
    page.click("#lafin-preset-smile")
    _status(page, "Applied smile", "#lafin-edit-status")

    # Ctrl+Z with no new strokes: back to the first result
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+z")
    _status(page, "Undone: step 1 of 2")
    page.wait_for_function(
        "old => { const a = document.querySelector('#lafin-downloads a[download=\"lafin-result.png\"]');"
        " return a && a.getAttribute('href') === old; }",
        arg=old_files,
    )
    assert np.array_equal(_result(page, ctx), first)
    ctx.close()
    assert hosts <= {"127.0.0.1"}, f"the page fetched from other hosts: {hosts - {'127.0.0.1'}}"


def test_group_photo_reports_both_faces(server, browser):
    url, folder = server
    photo = np.full((220, 400, 3), (90, 110, 100), np.uint8)
    photo[20:200, 30:174] = face_like(180, 144, seed=4)
    photo[20:200, 226:370] = face_like(180, 144, seed=5)
    hole = np.zeros((220, 400), np.uint8)
    hole[140:170, 60:340] = 1  # over both mouths
    Image.fromarray(photo).save(folder / "group.png")
    Image.fromarray(hole * 255).save(folder / "group-hole.png")
    ctx, page = _open_page(browser, url, set())
    _upload_photo(page, folder / "group.png")
    _upload_file(page, "#lafin-mask-file", folder / "group-hole.png")
    page.click("#lafin-inpaint")
    _status(page, "photo mode")
    _status(page, "2 faces in the hole")
    result = _result(page, ctx)
    assert np.array_equal(result[hole == 0], photo[hole == 0])
    assert not np.array_equal(result[hole == 1], photo[hole == 1])
    tmp = folder / "server-tmp"
    assert list(tmp.rglob("group.png")) and list(tmp.rglob("sessions/*/run-*"))
    ctx.close()
    # the closed tab's uploads and results leave the server's temporary folder at once
    deadline = time.monotonic() + 60
    while list(tmp.rglob("group*.png")) or list(tmp.rglob("sessions/*/run-*")):
        assert time.monotonic() < deadline, sorted(map(str, tmp.rglob("*")))[:20]
        time.sleep(0.5)


def test_detect_damage_then_inpaint(server, browser):
    """An old photo: Detect damage paints the scratches in the painter, Inpaint fills them."""
    import cv2

    from lafin.examples import example_face

    url, folder = server
    clean = example_face(256)
    scratched = clean.copy()
    cv2.line(scratched, (20, 30), (200, 150), (245, 245, 245), 2)
    cv2.line(scratched, (150, 10), (60, 190), (20, 20, 20), 2)
    drawn = np.any(scratched != clean, axis=2)
    Image.fromarray(scratched).save(folder / "old.png")
    ctx, page = _open_page(browser, url, set())
    _upload_photo(page, folder / "old.png")
    page.click("#lafin-detect")
    _status(page, "Detected damage")
    page.wait_for_selector("#lafin-painter .lafin-paint[data-ready][data-mask]")
    page.click("#lafin-inpaint")
    _status(page, "predicted landmarks")
    hole = _download(page, ctx, "lafin-mask.png")[..., 0] > 0
    assert (hole & drawn).sum() > 0.8 * drawn.sum()  # the shipped detector finds the scratches
    assert hole.mean() < 0.25
    result = _result(page, ctx)
    assert np.array_equal(result[~hole], scratched[~hole])
    ctx.close()


def test_refused_uploads_give_a_message_and_no_traceback(server, browser):
    url, folder = server
    Image.fromarray(face_like(120, 100)).save(folder / "cut.jpg", "JPEG")
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    ctx, page = _open_page(browser, url, set())
    # a text file dropped on the painter is answered, not silently ignored
    dropped = page.evaluate_handle(
        "() => { const d = new DataTransfer(); d.items.add(new File(['not a photo'], "
        "'notes.txt', { type: 'text/plain' })); return d; }"
    )
    page.dispatch_event("#lafin-painter", "drop", {"dataTransfer": dropped})
    page.get_by_text("notes.txt is not an image").first.wait_for()
    page.locator("#lafin-photos input[type=file]").first.set_input_files(str(folder / "cut.jpg"))
    page.get_by_text("cut.jpg is damaged or truncated").first.wait_for()
    # nothing opened: Inpaint says what to do instead of inpainting a blank canvas
    page.click("#lafin-inpaint")
    page.get_by_text("Open a photo first").first.wait_for()
    ctx.close()
    log = (folder / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


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
    _paint(page_b)

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
    assert page_a.locator("#lafin-grow-hole input[type=checkbox]").is_checked()  # on at first
    page_a.click("#lafin-regenerate")
    page_a.locator("#lafin-status").get_by_text("your landmarks").wait_for()
    page_a.wait_for_function(
        "() => { const a = document.querySelector("
        "'#lafin-downloads a[download=\"lafin-landmarks.json\"]');"
        " return a && a.closest('body'); }"
    )
    edited = landmarks_a()
    moved = np.flatnonzero(np.abs(edited - predicted).max(axis=1) > 0.2)
    assert {48, 54} <= set(moved) <= set(range(40, 68))
    # known pixels stay: those outside the hole, grown over the moved points it did not cover
    grown = _download(page_a, ctx_a, "lafin-mask.png")[..., 0] > 0
    assert (grown >= (hole_a > 0)).all()
    assert np.array_equal(_result(page_a, ctx_a)[~grown], image_a[~grown])

    ctx_a.close()
    ctx_b.close()
    assert hosts <= {"127.0.0.1"}, f"the page fetched from other hosts: {hosts - {'127.0.0.1'}}"
