"""The page's event handlers in one object: :class:`DemoHandlers` builds the parts (photos,
inpainting, damage, landmarks) over shared session files and pages. They work on plain numpy
arrays and paths, so they are tested without a browser."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lafin.webapp.damage_handlers import DamageHandlers
from lafin.webapp.inpaint_handlers import HISTORY_LIMIT, InpaintHandlers
from lafin.webapp.landmark_handlers import LandmarkHandlers
from lafin.webapp.pages import PageRenderer
from lafin.webapp.painter import PREVIEW_SIDE
from lafin.webapp.photo_handlers import PhotoHandlers
from lafin.webapp.session import Session
from lafin.webapp.storage import SessionFiles
from lafin.webapp.uploads import DEFAULT_MAX_UPLOAD_PIXELS, UploadReader

if TYPE_CHECKING:  # pragma: no cover
    from lafin.pipeline import LaFInModel


class DemoHandlers:
    """The page's event handlers; each raises ``gr.Error`` with a message for the user.

    Attributes:
        photos: open photos, step through them, load the example (:class:`PhotoHandlers`).
        inpainting: Inpaint, Re-run, Regenerate, Undo, Redo (:class:`InpaintHandlers`).
        damage: Detect damage (:class:`DamageHandlers`).
        landmarks: expressions, table, clicks, landmarks files, reset (:class:`LandmarkHandlers`).
        files: the sessions' folders, downloads and uploads (:class:`SessionFiles`).
        pages: what the page shows for a session (:class:`PageRenderer`).

    Args:
        model: the loaded model.
        max_upload_pixels: largest photo or mask accepted (width x height); checked from the
            file's header, before it is decoded.
        work_dir: where per-session result folders are made (default: a new temporary folder).
        preview_side: the longer side of the editor's and the result's previews; the photo is
            read once at full resolution and kept on the server, the page gets reduced copies.
        history_limit: results kept for Undo per session (the photo is always kept).
        upload_dir: Gradio's upload folder: an uploaded file in it is deleted when the last
            session that used it ends (None: uploads are left alone).
    """

    def __init__(
        self,
        model: "LaFInModel",
        max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
        work_dir: str | Path | None = None,
        preview_side: int = PREVIEW_SIDE,
        history_limit: int = HISTORY_LIMIT,
        upload_dir: str | Path | None = None,
    ) -> None:
        if max_upload_pixels < 64 or preview_side < 64 or history_limit < 1:
            raise ValueError("max_upload_pixels and preview_side must be >= 64, history_limit >= 1")
        self.model = model
        reader = UploadReader(max_upload_pixels)
        self.files = SessionFiles(work_dir or tempfile.mkdtemp(prefix="lafin-web-"), upload_dir)
        self.pages = PageRenderer(self.files, preview_side)
        self.photos = PhotoHandlers(reader, self.files, self.pages)
        self.inpainting = InpaintHandlers(model, reader, self.files, self.pages, history_limit)
        self.damage = DamageHandlers(model, self.pages)
        self.landmarks = LandmarkHandlers(self.files)

    def cleanup(self, session: Session | None) -> None:
        """A session ended: remove its files, drop its images, release its uploads."""
        self.files.cleanup(session)
