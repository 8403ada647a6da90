"""Web demo memory and cleanup: open and close many browser sessions, then stop the server.

Starts ``python -m lafin.webapp`` with its own TMPDIR, and for each session does what a visitor
does over HTTP (the page's protocol: a heartbeat stream while the tab is open, then queued
events): load the example, inpaint it, then close the tab (end the heartbeat). Reports the
server's resident memory at start, after the first session and after all of them, then sends
SIGTERM and lists what is left in its temporary folder.

    python benchmarks/web_sessions.py --sessions=80 [--weights W]

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
        self._heart = self.http.get(f"{url}gradio_api/heartbeat/{self.session_hash}",
                                    stream=True, timeout=30)
        self._beat = threading.Thread(target=self._drain, daemon=True)
        self._beat.start()

    def _drain(self) -> None:
        try:
            for _ in self._heart.iter_lines():
                pass
        except Exception:  # noqa: BLE001 - the stream ends when the tab closes
            pass

    def run(self, name: str, data: list) -> list:
        body = {"data": data, "fn_index": self.fns[name], "session_hash": self.session_hash,
                "event_data": None, "trigger_id": None}
        r = self.http.post(f"{self.url}gradio_api/queue/join", json=body, timeout=300)
        r.raise_for_status()
        with self.http.get(f"{self.url}gradio_api/queue/data",
                           params={"session_hash": self.session_hash}, stream=True,
                           timeout=300) as stream:
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
    parser.add_argument("--weights", help="weights file (default: the shipped model)")
    args = parser.parse_args(argv)
    from lafin.examples import example_mask

    painted = painting_of(example_mask(256))
    tmp = Path(tempfile.mkdtemp(prefix="lafin-web-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "lafin.webapp", "--port", str(port)]
    if args.weights:
        cmd += ["--weights", args.weights]
    env = dict(os.environ, TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False")
    log = open(tmp.parent / f"{tmp.name}.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
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
        fns = function_indices(url)
        start = rss_mb(server.pid)
        print(f"server RSS at start: {start:.0f} MB", flush=True)
        times = []
        after_first = None
        for n in range(args.sessions):
            visitor = Visitor(url, fns)
            t = time.perf_counter()
            visitor.run("lafin-example", [None])
            visitor.run("lafin-inpaint", [painted, None, "crop", None])
            times.append(time.perf_counter() - t)
            visitor.close()
            if n == 0:
                time.sleep(2)
                after_first = rss_mb(server.pid)
            if (n + 1) % 20 == 0:
                print(f"{n + 1} sessions: RSS {rss_mb(server.pid):.0f} MB", flush=True)
        time.sleep(5)  # the last tabs' unload events
        end = rss_mb(server.pid)
        sessions_dir = next(tmp.glob("lafin-web-*"), None)
        left = list((sessions_dir / "sessions").iterdir()) if sessions_dir and (
            sessions_dir / "sessions").is_dir() else []
        print(f"server RSS: start {start:.0f} MB, after the first session {after_first:.0f} MB, "
              f"after {args.sessions} closed sessions {end:.0f} MB "
              f"(+{end - start:.0f} MB from start, +{end - after_first:.0f} MB from the first)")
        print(f"session folders left while serving: {len(left)}")
        print(f"example + inpaint per session: median {np.median(times):.2f} s")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            code = "killed after 30 s"
        log.close()
    leftovers = [str(p.relative_to(tmp)) for p in tmp.rglob("*")]
    print(f"after SIGTERM: exit {code}, {len(leftovers)} entries left in its TMPDIR"
          + (f": {leftovers[:10]}" if leftovers else ""))
    ok = not leftovers and end - start <= 200
    if not leftovers:
        tmp.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
