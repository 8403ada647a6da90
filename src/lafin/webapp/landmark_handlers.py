"""The page's structure events: edit the 68 landmarks with expression buttons, the table, clicks
on the landmark view or a landmarks file, or reset them to the predicted ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lafin.landmarks import POINT_PARTS, edit_expression, load_landmarks
from lafin.webapp.errors import DemoError, page_error
from lafin.webapp.session import Session
from lafin.webapp.storage import SessionFiles
from lafin.webapp.table import landmarks_to_table, table_to_landmarks
from lafin.webapp.view import render_view, view_to_image

Edited = tuple[np.ndarray, list[list[Any]], str, Session]  # (view, table, status, session)

GROW_LABEL = "Grow the hole over moved points"  # the landmark panel's checkbox


def in_hole(hole: np.ndarray, *points: np.ndarray) -> bool:
    """True when any of the points lies in (or within 2 px of) the hole."""
    h, w = hole.shape
    for x, y in points:
        xi, yi = int(round(float(x))), int(round(float(y)))
        if hole[max(0, yi - 2) : max(0, min(h, yi + 3)), max(0, xi - 2) : max(0, min(w, xi + 3))].any():
            return True
    return False


class LandmarkHandlers:
    """Changes to the shown result's landmarks (used by the next Regenerate); each handler
    returns the landmark view, the table (except :meth:`edit_table`), a status and the session.

    Args:
        files: counts an uploaded landmarks file among the session's uploads.
    """

    def __init__(self, files: SessionFiles) -> None:
        self.files = files

    @staticmethod
    def _need_landmarks(session: Session) -> np.ndarray:
        if session.landmarks is None or session.mask is None:
            raise page_error("There are no landmarks to edit yet: click Inpaint first.")
        return session.landmarks

    @staticmethod
    def _outside_hole_note(before: np.ndarray, session: Session) -> str:
        """A note when moved points lie where the user's hole is not: Regenerate grows the
        hole over them while the checkbox is ticked; unticked, those pixels are kept."""
        hole = session.painted
        if hole is None or session.landmarks is None:
            return ""
        # more than the table's rounding (0.05 px)
        moved = np.flatnonzero(np.abs(session.landmarks - before).max(axis=1) > 0.06)
        outside = [int(i) for i in moved if not in_hole(hole, session.landmarks[i], before[i])]
        if not outside:
            return ""
        which = ", ".join(map(str, outside[:8])) + (" ..." if len(outside) > 8 else "")
        return (
            f"  \n**Note:** point(s) {which} are outside the hole you painted: with *{GROW_LABEL}* "
            "ticked, Regenerate grows the hole over them; unticked, the pixels there are kept "
            "as they are, so moving them changes little."
        )

    def apply_preset(self, expression: str, strength: float, session: Session) -> Edited:
        """An expression button (one of :data:`lafin.landmarks.EXPRESSION_NAMES`): move the
        point groups by :func:`lafin.landmarks.edit_expression`."""
        current = self._need_landmarks(session)
        try:
            session.landmarks = edit_expression(current, expression, strength)
        except ValueError as exc:
            raise page_error(str(exc)) from None
        return (
            render_view(session),
            landmarks_to_table(session.landmarks),
            f"Applied **{expression}** (strength {strength:g}). Click *Regenerate* to see "
            "the face with these landmarks." + self._outside_hole_note(current, session),
            session,
        )

    def edit_table(self, table: Any, session: Session) -> tuple[np.ndarray, str, Session]:
        """The table was edited: take its landmarks; returns (view, status, session)."""
        before = self._need_landmarks(session)
        try:
            session.landmarks = table_to_landmarks(table)
        except DemoError as exc:
            raise page_error(str(exc)) from None
        return (
            render_view(session),
            "Landmarks edited. Click *Regenerate* to see the face with them."
            + self._outside_hole_note(before, session),
            session,
        )

    def reset(self, session: Session) -> Edited:
        """Back to the landmarks predicted by the shown run."""
        self._need_landmarks(session)
        predicted = session.predicted
        session.landmarks = None if predicted is None else predicted.copy()
        session.selected = None
        return (
            render_view(session),
            landmarks_to_table(session.landmarks),
            "Landmarks reset to the predicted ones.",
            session,
        )

    def click(self, session: Session, xy: Sequence[float]) -> Edited:
        """A click on the landmark view at view pixel ``xy``: the first click picks the nearest
        point, the next one moves it there."""
        current = self._need_landmarks(session)
        point = view_to_image(session, xy)
        if session.selected is None:
            i = int(np.argmin(np.linalg.norm(current - point, axis=1)))
            session.selected = i
            status = f"Point {i} ({POINT_PARTS[i]}) selected: click where it should go."
        else:
            i, session.selected = session.selected, None
            moved = current.copy()
            moved[i] = point
            session.landmarks = moved.astype(np.float32)
            status = (
                f"Point {i} ({POINT_PARTS[i]}) moved to ({point[0]:.1f}, {point[1]:.1f}). "
                "Click *Regenerate* to see the face." + self._outside_hole_note(current, session)
            )
        return render_view(session), landmarks_to_table(session.landmarks), status, session

    def load_file(self, path: str | None, session: Session) -> Edited:
        """Landmarks from an uploaded .pts, .json or .npy file (image pixels)."""
        self._need_landmarks(session)
        if not path:
            raise page_error("No landmarks file was uploaded.")
        self.files.hold(session, str(path))
        name = Path(path).name
        try:
            session.landmarks = load_landmarks(path)
        except (ValueError, OSError, KeyError) as exc:
            raise page_error(
                f"Cannot read landmarks from {name}: {str(exc).replace(str(path), name)}"
            ) from None
        return (
            render_view(session),
            landmarks_to_table(session.landmarks),
            f"Loaded landmarks from {name}. Click *Regenerate* to use them.",
            session,
        )
