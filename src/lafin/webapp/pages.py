"""What the page shows for a session's state: the painter, the before/after slider, the landmark
view, the table, the downloads and the status (:class:`Page`), made by :class:`PageRenderer`."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from lafin.webapp.painter import PREVIEW_SIDE, painter_html, preview
from lafin.webapp.session import Session, Step
from lafin.webapp.storage import SessionFiles
from lafin.webapp.table import landmarks_to_table
from lafin.webapp.view import render_view


@dataclass
class Page:
    """Everything a run, undo/redo or photo change updates on the page."""

    editor: str
    compare: tuple[str, str] | None
    view: str | None
    table: list[list[Any]]
    files: list[str]
    status: str
    session: Session

    def outputs(self) -> tuple[Any, ...]:
        return (self.editor, self.compare, self.view, self.table, self.files, self.status, self.session)


class PageRenderer:
    """Makes the page's contents for a session: reduced copies of its images as JPEG files (the
    photo is kept at full resolution on the server, the page gets reduced copies).

    Args:
        files: where the session's files go.
        preview_side: the longer side of the editor's and the result's previews.
    """

    def __init__(self, files: SessionFiles, preview_side: int = PREVIEW_SIDE) -> None:
        if preview_side < 64:
            raise ValueError(f"preview_side must be >= 64, not {preview_side}")
        self.files = files
        self.preview_side = int(preview_side)

    def editor(self, session: Session, painted: np.ndarray | None = None) -> str:
        """The painter: a preview of the shown image with an empty stroke layer (or ``painted``,
        full size, pre-painted), as HTML for the page's script."""
        jpeg, width, height, _ = self.step_preview(session, session.history[session.position])
        return painter_html(jpeg, width, height, session.brush_size, painted)

    def step_preview(self, session: Session, step: Step) -> tuple[bytes, int, int, str]:
        """The step's reduced copy as JPEG (bytes, width, height, file), made once: the painter
        and the before/after slider of this run and the next one all show it."""
        if step.preview is not None and not os.path.exists(step.preview[3]):
            # a long-open session's file, removed by Gradio's cache clean-up: write it again
            data, width, height, _ = step.preview
            step.preview = (data, width, height, self._write(session, "preview-", data))
        if step.preview is None:
            small = preview(step.image, self.preview_side)[0]
            ok, encoded = cv2.imencode(
                ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
            assert ok
            data = encoded.tobytes()
            step.preview = (data, small.shape[1], small.shape[0], self._write(session, "preview-", data))
        return step.preview

    def _write(self, session: Session, prefix: str, data: bytes) -> str:
        handle, path = tempfile.mkstemp(".jpg", prefix, self.files.folder(session))
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        return path

    def page(self, session: Session, status: str) -> Page:
        """The page for the session's shown step (its landmarks become the current ones, a
        point selection or a damage proposal is dropped)."""
        step = session.step
        assert step is not None
        session.landmarks = None if step.landmarks is None else step.landmarks.copy()
        session.selected, session.proposed = None, None
        compare = None
        view = None
        if step.mask is not None:
            before = self.step_preview(session, session.history[max(session.position - 1, 0)])
            compare = (before[3], self.step_preview(session, step)[3])
            # a JPEG: a few ms, where a PNG of the same view took 10-50x longer
            ok, encoded = cv2.imencode(
                ".jpg", cv2.cvtColor(render_view(session), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
            assert ok
            view = self._write(session, "view-", encoded.tobytes())
        files = [f for f in step.files if os.path.exists(f)] + self.files.other_photos_results(session)
        return Page(
            self.editor(session),
            compare,
            view,
            landmarks_to_table(session.landmarks),
            files,
            status,
            session,
        )
