"""The web demo's messages for the user: :class:`DemoError` and :func:`page_error`."""

from __future__ import annotations

import html


class DemoError(ValueError):
    """A problem with what the user gave or did, with a message fit for the page."""


def page_error(message: str) -> Exception:
    """A message for the page (``gr.Error`` when Gradio is there, else :class:`DemoError`). A
    user's mistake is not a server fault: Gradio is told not to log a traceback for it."""
    try:
        import gradio as gr
    except ImportError:  # pragma: no cover
        return DemoError(message)
    return gr.Error(html.escape(message, quote=False), print_exception=False)
