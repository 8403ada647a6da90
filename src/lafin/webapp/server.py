"""Serving the demo: :func:`serve` launches it (offline, no share link) and on Ctrl+C or
SIGTERM stops and removes everything it wrote; :func:`main` is ``python -m lafin.webapp``."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lafin.io import InputError
from lafin.webapp.app import SESSION_TTL, build_app
from lafin.webapp.layout import CSS
from lafin.webapp.memory import limit_malloc_arenas
from lafin.webapp.painter import PAINTER_SCRIPT
from lafin.webapp.uploads import DEFAULT_MAX_UPLOAD_PIXELS

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from lafin.pipeline import LaFInModel

DESCRIPTION = "The web demo: paint a hole, see and edit the 68 landmarks, regenerate the face."
DEFAULT_MAX_FILE_SIZE = "200mb"
MAX_SESSIONS = 200  # sessions kept in memory at once
STOP_GRACE = 15.0  # seconds from SIGTERM to the process's end at the latest


def _patient_startup_check() -> None:
    """Gradio checks that its freshly started server answers, with HEAD requests of at most 3 s,
    and gives up at the first timeout ("When localhost is not accessible..."); on a machine busy
    with training the first page can take longer. Ask with a 30 s timeout for up to 2 minutes."""
    import httpx
    from gradio import networking

    if getattr(networking.url_ok, "lafin_patient", False):
        return

    def url_ok(url: str) -> bool:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.head(url, timeout=30).status_code in (200, 401, 301, 302, 303, 307, 308):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return False

    url_ok.lafin_patient = True  # type: ignore[attr-defined]
    networking.url_ok = url_ok


class _Stop(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl+C: Gradio closes its server, the temporary folder is removed."""


def _stop_on_sigterm(root: Path, owned: bool) -> Any:
    """Handle SIGTERM like Ctrl+C, removing ``root`` first if the app made it; returns the
    handler it replaced."""
    stopped: list[bool] = []

    def on_sigterm(*_: Any) -> None:
        # the files go first: a supervisor may follow SIGTERM with SIGKILL within seconds
        # while Gradio is still closing its connections
        if owned:
            shutil.rmtree(root, ignore_errors=True)
        if not stopped:
            # the process is to end: neither Gradio's closing nor a worker thread still
            # finishing a request (seen after a client vanished mid-run) may keep it alive
            timer = threading.Timer(STOP_GRACE, os._exit, (0,))
            timer.daemon = True
            timer.start()
        stopped.append(True)
        raise _Stop()

    return signal.signal(signal.SIGTERM, on_sigterm)


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    weights: str | Path | Sequence[str | Path] | None = None,
    device: str = "cpu",
    *,
    model: "LaFInModel | None" = None,
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
    max_file_size: str | int = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
    quiet: bool = False,
    work_dir: str | Path | None = None,
    session_ttl: float = SESSION_TTL,
    max_sessions: int = MAX_SESSIONS,
) -> "gr.Blocks":
    """Load the model (unless given) and serve the demo; offline, no share link.

    With ``block`` (the default) it serves until Ctrl+C or SIGTERM and then removes everything
    it wrote (uploads, results, Gradio's cache) before returning.

    Args:
        host, port: where to listen (default 127.0.0.1:7860, this machine only).
        weights, device: as for :class:`lafin.pipeline.LaFInModel` (ignored when ``model`` is
            given); no weights and none shipped raises ``WeightsNotFoundError``.
        max_upload_pixels: largest photo accepted (width x height).
        max_file_size: largest upload in bytes, or e.g. ``"200mb"``.
        block: serve until interrupted; False returns the running app (tests).
        work_dir: the temporary folder (default: a new one; removed when serving ends).
        session_ttl: seconds a session's work is kept after its last change.
        max_sessions: sessions kept in memory at once (the least recently used goes first).
    """
    if block:
        limit_malloc_arenas()  # before the model and the server's threads allocate
    if model is None:
        from lafin.pipeline import LaFInModel

        model = LaFInModel(weights=weights, device=device)
    owned = work_dir is None
    root = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="lafin-web-"))
    if owned:
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    demo = build_app(model, max_upload_pixels, work_dir=root, session_ttl=session_ttl)
    _patient_startup_check()
    previous = None
    if block and threading.current_thread() is threading.main_thread():
        previous = _stop_on_sigterm(root, owned)
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=not block,
            quiet=quiet,
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            enable_monitoring=False,
            max_file_size=max_file_size,
            footer_links=[],
            css=CSS,
            head=PAINTER_SCRIPT,
            state_session_capacity=max_sessions,
        )
    except KeyboardInterrupt:
        pass  # Ctrl+C or SIGTERM while starting or serving: stop and clean up below
    finally:
        if block:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            demo.close()
            if owned:  # again: a run that was under way may have written after the first
                shutil.rmtree(root, ignore_errors=True)
    return demo


def main(argv: list[str] | None = None) -> int:
    """``python -m lafin.webapp [--host H] [--port P] [--weights W] [--device D]``."""
    parser = argparse.ArgumentParser(prog="python -m lafin.webapp", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--weights", nargs="+", help="weights file(s) (default: the shipped model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-upload-pixels", type=int, default=DEFAULT_MAX_UPLOAD_PIXELS)
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=SESSION_TTL,
        help="seconds a session's work is kept after its last change",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log each run's time in the handler (inputs, model, outputs)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from lafin.checkpoint import WeightsError
    from lafin.pipeline import WeightsNotFoundError

    weights = args.weights[0] if args.weights and len(args.weights) == 1 else args.weights
    try:
        serve(
            args.host,
            args.port,
            weights,
            args.device,
            max_upload_pixels=args.max_upload_pixels,
            session_ttl=args.session_ttl,
        )
    except (WeightsNotFoundError, WeightsError, InputError, OSError) as exc:
        # OSError: also Gradio's "Cannot find empty port" when the port is taken
        print(f"lafin: error: {exc}", file=sys.stderr)
        return 2
    return 0
