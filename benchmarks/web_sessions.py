"""Web demo memory and cleanup: open and close many browser sessions, then stop the server.

Starts ``python -m lafin.webapp`` with its own TMPDIR; each session is a visitor: a new tab in
Debian's headless Chromium (Playwright; ``--client http`` speaks the page's protocol directly
instead: a heartbeat stream while the tab is open, then queued events), which loads the page,
loads the example, inpaints it, waits for the downloads and closes the tab. Reports the
server's resident memory at start, after the first session, its peak (sampled every 0.2 s) and
after all sessions ended, and what is left of the sessions in its temporary folder; then sends
SIGTERM and lists what is left there.

    python benchmarks/web_sessions.py --sessions=80 [--client browser|http] [--weights W]

Done when (issue #26): memory within 200 MB of the start after the sessions end, and an empty
temporary folder after SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import requests
from PIL import Image


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def painting_of(hole: np.ndarray) -> str:
    layer = np.zeros((*hole.shape, 4), np.uint8)
    layer[hole > 0] = (255, 0, 255, 255)
    buffer = io.BytesIO()
    Image.fromarray(layer, "RGBA").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Visitor:
    """One browser tab: a heartbeat stream while open, events through the queue."""

    def __init__(self, url: str, fns: dict[str, int]) -> None:
        self.url, self.fns = url, fns
        self.session_hash = uuid.uuid4().hex[:11]
        self.http = requests.Session()
        self._heart = self.http.get(f"{url}gradio_api/heartbeat/{self.session_hash}", stream=True, timeout=30)
        self._beat = threading.Thread(target=self._drain, daemon=True)
        self._beat.start()

    def _drain(self) -> None:
        try:
            for _ in self._heart.iter_lines():
                pass
        except Exception:  # noqa: BLE001 - the stream ends when the tab closes
            pass

    def run(self, name: str, data: list) -> list:
        body = {
            "data": data,
            "fn_index": self.fns[name],
            "session_hash": self.session_hash,
            "event_data": None,
            "trigger_id": None,
        }
        r = self.http.post(f"{self.url}gradio_api/queue/join", json=body, timeout=300)
        r.raise_for_status()
        with self.http.get(
            f"{self.url}gradio_api/queue/data",
            params={"session_hash": self.session_hash},
            stream=True,
            timeout=300,
        ) as stream:
            for line in stream.iter_lines():
                if not line.startswith(b"data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"{name} failed: {message.get('output')}")
                    return message["output"]["data"]
        raise RuntimeError(f"{name}: the stream ended without a result")

    def close(self) -> None:
        self._heart.close()
        self.http.close()


class RssSampler(threading.Thread):
    """The server's resident memory every ``period`` seconds; ``peak`` is the largest seen."""

    def __init__(self, pid: int, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.period, self.peak = pid, period, 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (OSError, RuntimeError):
                return


class BrowserVisitors:
    """Visitors as tabs of one headless Chromium: each opens the page, loads the example,
    inpaints it, waits for its downloads and closes the tab (ending its heartbeat). Each tab
    is a session of its own on the server; the tabs share the browser's cache (the page's
    scripts are fetched once), which keeps the benchmark about the sessions, not the
    browser."""

    def __init__(self, url: str) -> None:
        from playwright.sync_api import sync_playwright

        self.url = url
        self._playwright = sync_playwright().start()
        self.browser = self._playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 1400})

    def visit(self) -> None:
        page = self.context.new_page()
        try:
            page.set_default_timeout(300_000)
            page.goto(self.url)
            page.click("#lafin-example")
            page.wait_for_selector("#lafin-painter .lafin-paint[data-ready][data-mask]")
            page.click("#lafin-inpaint")
            page.locator("#lafin-status").get_by_text("predicted landmarks").first.wait_for()
            page.locator('#lafin-downloads a[download="lafin-result.png"]').wait_for()
        finally:
            page.close()

    def close(self) -> None:
        self.context.close()
        self.browser.close()
        self._playwright.stop()


class HttpVisitors:
    """Visitors over HTTP: the page's protocol without a browser (no page load, no file
    fetches)."""

    def __init__(self, url: str) -> None:
        from lafin.examples import example_mask

        self.url, self.fns = url, function_indices(url)
        self.painted = painting_of(example_mask(256))

    def visit(self) -> None:
        visitor = Visitor(self.url, self.fns)
        try:
            visitor.run("lafin-example", [None])
            # the Inpaint event's inputs: painting, mask file, mode, skin grain, session state
            visitor.run("lafin-inpaint", [self.painted, None, "crop", 1.0, None])
        finally:
            visitor.close()

    def close(self) -> None:
        pass


def session_files(tmp: Path) -> tuple[int, int]:
    """(per-session folders, files in Gradio's cache) in the server's temporary folder."""
    root = next(tmp.glob("lafin-web-*"), None)
    if root is None:
        return 0, 0
    cache = root / "gradio"  # the sessions' folders are in it, in "sessions"
    sessions = cache / "sessions"
    folders = len(list(sessions.iterdir())) if sessions.is_dir() else 0
    files = sum(1 for p in cache.rglob("*") if p.is_file() and sessions not in p.parents)
    return folders, files


def function_indices(url: str) -> dict[str, int]:
    config = requests.get(f"{url}config", timeout=30).json()
    elem = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    out = {}
    for index, dep in enumerate(config["dependencies"]):
        for target, event in dep.get("targets", []):
            if event == "click" and elem.get(target) in ("lafin-example", "lafin-inpaint"):
                out[elem[target]] = dep.get("id", index)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=80)
    parser.add_argument(
        "--client",
        choices=("browser", "http"),
        default="browser",
        help="visitors as Chromium tabs (default) or raw HTTP",
    )
    parser.add_argument("--weights", help="weights file (default: the shipped model)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lafin-web-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "lafin.webapp", "--port", str(port)]
    if args.weights:
        cmd += ["--weights", args.weights]
    env = dict(os.environ, TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False")
    log = open(tmp.parent / f"{tmp.name}.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    start = end = folders = None
    try:
        for _ in range(1200):
            if server.poll() is not None:
                raise RuntimeError("the server exited; see " + log.name)
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("the server did not start")
        start = rss_mb(server.pid)
        print(f"server RSS at start: {start:.0f} MB", flush=True)
        sampler = RssSampler(server.pid)
        sampler.start()
        visitors = BrowserVisitors(url) if args.client == "browser" else HttpVisitors(url)
        times = []
        after_first = None
        try:
            for n in range(args.sessions):
                t = time.perf_counter()
                visitors.visit()
                times.append(time.perf_counter() - t)
                if n == 0:
                    time.sleep(2)
                    after_first = rss_mb(server.pid)
                if (n + 1) % 10 == 0:
                    folders, cached = session_files(tmp)
                    print(
                        f"{n + 1} sessions: RSS {rss_mb(server.pid):.0f} MB, "
                        f"{folders} session folders, {cached} files in Gradio's cache",
                        flush=True,
                    )
        finally:
            visitors.close()
        # the last tabs' unload events: wait until their folders are gone (at most 30 s)
        for _ in range(60):
            if session_files(tmp)[0] == 0:
                break
            time.sleep(0.5)
        time.sleep(2)
        end = rss_mb(server.pid)
        sampler.stopped.set()
        folders, cached = session_files(tmp)
        print(
            f"server RSS: start {start:.0f} MB, after the first session {after_first:.0f} MB, "
            f"peak {max(sampler.peak, end):.0f} MB, after {args.sessions} closed sessions "
            f"{end:.0f} MB (+{end - start:.0f} MB from start, +{end - after_first:.0f} MB "
            f"from the first)"
        )
        print(f"left while serving: {folders} session folders, {cached} files in Gradio's cache")
        print(f"one session ({args.client}): median {np.median(times):.2f} s")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = "killed after 30 s"
        log.close()
    leftovers = [str(p.relative_to(tmp)) for p in tmp.rglob("*")]
    print(
        f"after SIGTERM: exit {code}, {len(leftovers)} entries left in its TMPDIR"
        + (f": {leftovers[:10]}" if leftovers else "")
    )
    ok = not leftovers and end is not None and end - start <= 200 and folders == 0
    if not leftovers:
        tmp.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
