"""The web demo (``lafin serve``): paint a hole, see and edit the 68 landmarks, regenerate the face.

What LaFIn adds over other inpainting methods is an explicit structure: the 68 iBUG points. The
page shows them on the masked input beside the result, and lets the user change them before the
face is generated again: an editable table, expression presets (open or close the mouth, smile,
raise the eyebrows, ...) that move the relevant point groups, and click-to-move on the image.

Run it with ``python -m lafin.webapp --weights W`` (or :func:`serve`). It is offline: Gradio
analytics are off, there are no share links, and the page loads nothing from other hosts. Each
browser session has its own :class:`Session` in a ``gr.State``; model runs go through a queue one
at a time (two CPU cores do not thrash); uploads, results and downloads stay in a temporary folder
that the app owns (Gradio's cache is pointed there).

The package, one job per module:

- :mod:`~lafin.webapp.server`: :func:`serve` (launch, SIGTERM, clean-up) and ``python -m``.
- :mod:`~lafin.webapp.app`: :func:`build_app`, the page (state, layout, events, queue);
  :mod:`~lafin.webapp.layout`: its components, one function per panel;
  :mod:`~lafin.webapp.events`: the wiring of their events to the handlers.
- :mod:`~lafin.webapp.handlers`: :class:`DemoHandlers`, the event handlers in one object, made
  of :mod:`~lafin.webapp.photo_handlers`, :mod:`~lafin.webapp.inpaint_handlers`,
  :mod:`~lafin.webapp.damage_handlers` and :mod:`~lafin.webapp.landmark_handlers`; they work on
  numpy arrays, so they are tested without a browser.
- :mod:`~lafin.webapp.session`: a session's state and history; :mod:`~lafin.webapp.storage`:
  its files and their removal; :mod:`~lafin.webapp.memory`: freed memory back to the system.
- :mod:`~lafin.webapp.pages`: what the page shows for a session; :mod:`~lafin.webapp.painter`:
  the canvas the hole is painted on; :mod:`~lafin.webapp.view`: the landmark view;
  :mod:`~lafin.webapp.table`: the landmark table (Regenerate grows the hole over moved
  landmarks with :mod:`lafin.edit_hole`); :mod:`~lafin.webapp.uploads`: reading uploads;
  :mod:`~lafin.webapp.errors`: messages for the page.

Gradio is imported only once the app has pointed its temporary folder at its own
(:func:`build_app`): no module here imports it at load time.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from lafin.webapp.app import SESSION_TTL, build_app  # noqa: E402
from lafin.webapp.errors import DemoError  # noqa: E402
from lafin.webapp.handlers import DemoHandlers  # noqa: E402
from lafin.webapp.memory import release_memory  # noqa: E402
from lafin.webapp.pages import Page  # noqa: E402
from lafin.webapp.painter import decode_painting, painter_html, preview  # noqa: E402
from lafin.webapp.server import DEFAULT_MAX_FILE_SIZE, MAX_SESSIONS, main, serve  # noqa: E402
from lafin.webapp.session import Session, Step  # noqa: E402
from lafin.webapp.storage import forget_session  # noqa: E402
from lafin.webapp.table import landmarks_to_table, table_to_landmarks  # noqa: E402
from lafin.webapp.uploads import DEFAULT_MAX_UPLOAD_PIXELS  # noqa: E402

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_UPLOAD_PIXELS",
    "MAX_SESSIONS",
    "SESSION_TTL",
    "DemoError",
    "DemoHandlers",
    "Page",
    "Session",
    "Step",
    "build_app",
    "decode_painting",
    "forget_session",
    "landmarks_to_table",
    "main",
    "painter_html",
    "preview",
    "release_memory",
    "serve",
    "table_to_landmarks",
]
