"""The page's photo events: open one photo, several or a folder's worth, step through them, or
load the built-in example."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lafin.webapp.errors import page_error
from lafin.webapp.pages import Page, PageRenderer
from lafin.webapp.painter import preview_scale
from lafin.webapp.session import Session
from lafin.webapp.storage import SessionFiles
from lafin.webapp.uploads import UploadReader


class PhotoHandlers:
    """Opening photos into a session; each handler returns :meth:`Page.outputs`.

    Args:
        reader: checks and reads the uploaded files.
        files: counts the session's uploads (deleted when no session uses them).
        pages: makes the page for the opened photo.
    """

    def __init__(self, reader: UploadReader, files: SessionFiles, pages: PageRenderer) -> None:
        self.reader = reader
        self.files = files
        self.pages = pages

    def open(self, paths: Sequence[str] | str | None, session: Session) -> tuple[Any, ...]:
        """Open one photo, several, or a folder's worth: the first readable one is shown, the
        others are stepped through with Previous/Next; every refused file is named with why."""
        if isinstance(paths, (str, Path)):
            paths = [str(paths)]
        paths = [str(p) for p in paths or [] if p]
        if not paths:
            raise page_error("No file was uploaded.")
        self.files.hold(session, *paths)
        photos, refused = [], []
        for path in sorted(paths, key=lambda p: Path(p).name.lower()):
            try:
                self.reader.probe(path)
            except Exception as exc:  # noqa: BLE001 - gr.Error: collect every file's reason
                refused.append(getattr(exc, "message", str(exc)))
                continue
            photos.append((Path(path).name, path))
        if not photos:
            raise page_error(
                " ".join(refused)
                if len(refused) == 1
                else f"None of the {len(refused)} files can be used: " + " ".join(refused)
            )
        page = None
        for index in range(len(photos)):
            try:
                page = self._show(photos, index, session)
                break
            except Exception as exc:  # noqa: BLE001 - a truncated file: try the next one
                refused.append(getattr(exc, "message", str(exc)))
        if page is None:
            raise page_error(" ".join(refused))
        if refused:
            page.status += f"  \n**Skipped {len(refused)} file(s):** " + " ".join(refused)
        return page.outputs()

    def step(self, delta: int, session: Session) -> tuple[Any, ...]:
        """Previous (-1) / Next (+1) photo of the opened folder."""
        if not session.photos:
            raise page_error("Open some photos first (one or several files, or a folder).")
        index = session.photo_index + int(delta)
        if not 0 <= index < len(session.photos):
            raise page_error("That was the " + ("last" if delta > 0 else "first") + " photo.")
        return self._show(session.photos, index, session).outputs()

    def choose(self, name: str | None, session: Session) -> tuple[Any, ...]:
        """A photo picked from the list of the opened folder."""
        names = [n for n, _ in session.photos]
        if name not in names:
            raise page_error("Pick one of the opened photos.")
        return self._show(session.photos, names.index(name), session).outputs()

    def load_example(self, session: Session) -> tuple[Any, ...]:
        """The built-in example face, with its hole pre-painted in the editor."""
        from lafin.examples import example_face, example_mask

        face = example_face(256)
        session.photos, session.photo_index = [], 0
        self._begin(session, face, "example")
        page = self.pages.page(session, "Loaded the example with a hole painted over it: click *Inpaint*.")
        page.editor = self.pages.editor(session, example_mask(256))
        return page.outputs()

    def _begin(self, session: Session, image: np.ndarray, name: str) -> None:
        session.start(image, name, preview_scale(image.shape, self.pages.preview_side))

    def _show(self, photos: list[tuple[str, str]], index: int, session: Session) -> Page:
        name, path = photos[index]
        image = self.reader.read_photo(path)
        session.photos, session.photo_index = list(photos), index
        self._begin(session, image, Path(name).stem)
        h, w = image.shape[:2]
        where = f" (photo {index + 1} of {len(photos)})" if len(photos) > 1 else ""
        note = (
            f"; the editor shows it at {100 * session.preview_scale:.0f}%, results are made at full size"
            if session.preview_scale < 1
            else ""
        )
        return self.pages.page(
            session,
            f"Opened **{name}**{where}: {w}x{h} px{note}. Paint over "
            "the part to fill, then click *Inpaint* (Ctrl+Enter).",
        )
