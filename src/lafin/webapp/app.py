"""The demo's page: :func:`build_app` points Gradio's temporary folder at the app's own, makes
the :class:`~lafin.webapp.handlers.DemoHandlers` and a ``gr.Blocks`` with the session state, the
layout (:mod:`~lafin.webapp.layout`) and its events (:mod:`~lafin.webapp.events`), queued one
model run at a time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lafin.webapp.events import wire_events
from lafin.webapp.handlers import DemoHandlers
from lafin.webapp.layout import build_layout
from lafin.webapp.memory import release_memory
from lafin.webapp.session import Session
from lafin.webapp.storage import owned_temp_dir
from lafin.webapp.uploads import DEFAULT_MAX_UPLOAD_PIXELS

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from lafin.pipeline import LaFInModel

SESSION_TTL = 2 * 3600.0  # seconds a session's work is kept after its last change


def build_app(
    model: "LaFInModel",
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
    *,
    work_dir: str | Path | None = None,
    title: str = "lafin web demo",
    session_ttl: float = SESSION_TTL,
) -> "gr.Blocks":
    """The demo page (a ``gr.Blocks``, queued one model run at a time; not launched).

    Args:
        model: the loaded model.
        max_upload_pixels: largest photo or mask (width x height) the handlers accept.
        work_dir: the app's temporary folder (Gradio's cache and the result files); default: a
            new one, removed when the process exits. ``GRADIO_TEMP_DIR`` is set to a folder in
            it (process-wide: Gradio reads it at run time).
        session_ttl: seconds a session's work is kept after its last change, even if its tab
            stays open (a closed tab's is deleted at once).
    """
    root = owned_temp_dir(work_dir)
    gradio_cache = root / "gradio"
    gradio_cache.mkdir(exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_cache)
    import gradio as gr

    # the result files live in Gradio's cache folder: served from where they are written (no
    # hashed copy per file, none left behind), and removed with their session
    handlers = DemoHandlers(model, max_upload_pixels, work_dir=gradio_cache, upload_dir=gradio_cache)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        session = gr.State(
            Session(),
            time_to_live=session_ttl,
            delete_callback=lambda value: (handlers.cleanup(value), release_memory()),
        )
        wire_events(demo, build_layout(session), handlers)
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.lafin_work_dir = root  # type: ignore[attr-defined]
    demo.lafin_handlers = handlers  # type: ignore[attr-defined]
    return demo
