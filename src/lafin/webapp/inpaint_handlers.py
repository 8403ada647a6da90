"""The page's inpainting events: Inpaint, Re-run, Regenerate (with edited landmarks), each at
the *Skin grain* slider's ``refiner_noise``, and Undo/Redo through the session's results."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lafin.edit_hole import hole_over_edit
from lafin.errors import OptionError
from lafin.io import InputError
from lafin.results import STAGE_LABELS
from lafin.webapp.errors import DemoError, page_error
from lafin.webapp.pages import Page, PageRenderer
from lafin.webapp.painter import hole_from_painting
from lafin.webapp.session import Session, Step
from lafin.webapp.storage import SessionFiles
from lafin.webapp.table import table_to_landmarks
from lafin.webapp.uploads import UploadReader

if TYPE_CHECKING:  # pragma: no cover
    from lafin.pipeline import InpaintResult, LaFInModel

log = logging.getLogger(__name__)

HISTORY_LIMIT = 12  # results kept for Undo per session


def describe_result(result: "InpaintResult") -> str:
    """The status line of a run: mode, hole size, whose landmarks, time; in photo mode the
    faces the hole touched and the hole outside them; the result's warnings (e.g. crop mode's
    "this may not be a face")."""
    h, w = result.mask.shape
    share = np.count_nonzero(result.mask) / result.mask.size
    parts = [
        f"**{result.mode} mode**",
        f"hole {100 * share:.1f}% of {w}x{h} px",
        "your landmarks" if result.landmarks_given else "predicted landmarks",
        f"{sum(result.timings.values()):.2f} s",
    ]
    text = " · ".join(parts)
    if result.mode == "photo":
        count = len(result.faces)
        faces = (
            "; ".join(
                f"face at ({f.box[0]:.0f}, {f.box[1]:.0f}): {f.path}, {f.hole_pixels} hole px"
                for f in result.faces
            )
            or "no face found"
        )
        text += f"  \n{count} face{'s' if count != 1 else ''} in the hole: {faces}"
        if result.background_pixels:
            text += f"; {result.background_pixels} hole px outside faces filled by OpenCV"
        if count > 1:
            text += (
                "  \nThe landmarks shown (green) and editable are the largest face's; the others are blue."
            )
    if result.landmarks is None:
        text += "  \nNo face in the hole's surroundings: there are no landmarks to edit."
    for warning in result.warnings:
        text += f"  \n**Warning:** {warning}"
    return text


class InpaintHandlers:
    """Model runs on a session's shown image; each handler returns :meth:`Page.outputs`.

    Args:
        model: the loaded model.
        reader: reads an uploaded mask file.
        files: counts the session's uploads.
        pages: makes the page for the result.
        history_limit: results kept for Undo per session (the photo is always kept).
    """

    def __init__(
        self,
        model: "LaFInModel",
        reader: UploadReader,
        files: SessionFiles,
        pages: PageRenderer,
        history_limit: int = HISTORY_LIMIT,
    ) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be >= 1, not {history_limit}")
        self.model = model
        self.reader = reader
        self.files = files
        self.pages = pages
        self.history_limit = int(history_limit)

    def mask_from_inputs(self, painted: str | None, mask_file: str | None, session: Session) -> np.ndarray:
        """The hole at full resolution (HxW uint8, 1 = hole): the uploaded mask file if any,
        else the painting (see :func:`~lafin.webapp.painter.hole_from_painting`)."""
        current = session.current
        if current is None:
            raise page_error("Open a photo first (or click 'Load example'): there is nothing to inpaint yet.")
        shape = current.shape[:2]
        if mask_file:
            self.files.hold(session, str(mask_file))
            return self.reader.read_mask(str(mask_file), shape)
        return hole_from_painting(painted, shape, session.preview_scale, session.proposed)

    def model_for(self, refiner_noise: float | None) -> "LaFInModel":
        """The model to run at the *Skin grain* slider's ``refiner_noise`` (0-2; None: the
        loaded model's own options). ``with_options`` shares the loaded networks and only
        builds the small objects that run them, so a model per run costs nothing worth caching."""
        if refiner_noise is None:
            return self.model
        try:
            return self.model.with_options(refiner_noise=refiner_noise)
        except OptionError:
            raise page_error(f"Skin grain must be a number from 0 to 2, not {refiner_noise!r}.") from None

    def _run(
        self,
        image: np.ndarray,
        hole: np.ndarray,
        landmarks: np.ndarray | None,
        mode: str,
        progress: Callable[..., Any] | None,
        refiner_noise: float | None = None,
    ) -> "InpaintResult":
        from lafin.pipeline import MODES

        if mode not in MODES:
            raise page_error(f"Unknown mode {mode!r}; choose {', '.join(MODES[:-1])} or {MODES[-1]}.")
        model = self.model_for(refiner_noise)
        stages = list(STAGE_LABELS)  # in the order a call usually runs them
        reached = [0]

        def tell(stage: str) -> None:
            # the bar never steps back: a loose crop runs photo mode's stages after crop mode's
            # landmarks, and a photo's faces each run landmarks to blend again; the label is
            # always the stage that runs
            if progress is not None:
                reached[0] = max(reached[0], stages.index(stage) if stage in stages else 0)
                progress(reached[0] / len(stages), desc=STAGE_LABELS.get(stage, stage))

        try:
            return model(image, hole, landmarks=landmarks, mode=mode, progress=tell)
        except InputError as exc:
            raise page_error(f"Cannot inpaint this: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the page must get a message, not a dead spinner
            log.exception("inpainting failed")  # a server fault: its traceback is wanted
            raise page_error(f"Inpainting failed ({type(exc).__name__}: {exc}).") from None

    def _finish(
        self,
        session: Session,
        result: "InpaintResult",
        predicted: np.ndarray | None,
        replace: bool,
        painted: np.ndarray | None = None,
        note: str = "",
    ) -> Page:
        lm = None if result.landmarks is None else np.asarray(result.landmarks, np.float32).copy()
        others = [
            np.asarray(f.landmarks, np.float32)
            for f in result.faces
            if lm is None or not np.allclose(f.landmarks, lm)
        ]
        step = Step(
            image=result.image,
            mask=result.mask,
            painted=painted,
            predicted=lm if predicted is None else predicted,
            landmarks=lm,
            other_faces=others,
            status=describe_result(result) + note,
        )
        session.last_mask = result.mask
        session.push(step, replace, self.history_limit)
        return self.pages.page(session, step.status)

    def inpaint(
        self,
        painted: str | None,
        mask_file: str | None,
        mode: str,
        session: Session,
        refiner_noise: float | None = None,
        progress: Callable[..., Any] | None = None,
    ) -> tuple[Any, ...]:
        """Inpaint button: fill the painted hole (or the mask file's) in the image the painter
        shows, which is the last result once there is one; landmarks are predicted.

        Args:
            painted: the painter's stroke layer as a PNG data URL (see
                :func:`~lafin.webapp.painter.decode_painting`).
            refiner_noise: the *Skin grain* slider (see :meth:`model_for`).
            progress: called with (fraction, desc=stage label) as the model's stages start.
        """
        started = time.perf_counter()
        hole = self.mask_from_inputs(painted, mask_file, session)
        if not hole.any():
            raise page_error(
                "The mask is empty: paint over the part of the face to fill with the "
                "brush, or upload a mask image (white = hole)."
            )
        ran = time.perf_counter()
        result = self._run(session.current, hole, None, mode, progress, refiner_noise)
        done = time.perf_counter()
        outputs = self._finish(session, result, None, replace=False).outputs()
        log.info(
            "inpaint: inputs %.3f s, model %.3f s, outputs %.3f s",
            ran - started,
            done - ran,
            time.perf_counter() - done,
        )
        return outputs

    def rerun(
        self,
        mode: str,
        session: Session,
        refiner_noise: float | None = None,
        progress: Callable[..., Any] | None = None,
    ) -> tuple[Any, ...]:
        """Re-run: the last hole again, on the image shown (the last result)."""
        if session.last_mask is None or session.current is None:
            raise page_error("Nothing to re-run yet: paint a hole and click Inpaint first.")
        if session.last_mask.shape != session.current.shape[:2]:
            raise page_error("The last hole belongs to another photo: paint a new one.")
        result = self._run(session.current, session.last_mask, None, mode, progress, refiner_noise)
        return self._finish(session, result, None, replace=False).outputs()

    def regenerate(
        self,
        table: Any,
        mode: str,
        session: Session,
        refiner_noise: float | None = None,
        progress: Callable[..., Any] | None = None,
        grow_hole: bool = True,
    ) -> tuple[Any, ...]:
        """Regenerate button: the shown result made again from the same image and hole with the
        landmarks of the table (it replaces the shown result; Undo goes to the one before).

        Args:
            grow_hole: the *Grow the hole over moved points* checkbox: join the hole the user
                gave with the box over the points that differ from the predicted ones
                (:func:`~lafin.edit_hole.hole_over_edit`), else known pixels stay and
                moved points outside the hole change little there. The grown hole is the
                result's: Re-run, Undo/Redo and the mask download use it.
        """
        step = session.step
        if step is None or step.mask is None:
            raise page_error("Click Inpaint first: the landmarks come from the first run.")
        try:
            landmarks = table_to_landmarks(table)
        except DemoError as exc:
            raise page_error(str(exc)) from None
        # from the user's hole each time: landmarks reset to the predicted ones give it back
        painted = session.painted
        hole, note = painted, ""
        if grow_hole and step.predicted is not None:
            hole = hole_over_edit(painted, step.predicted, landmarks)
            added = int(np.count_nonzero(hole)) - int(np.count_nonzero(painted))
            if added:
                note = f"  \nThe hole was grown over the moved points ({added} px)."
        result = self._run(session.image, hole, landmarks, mode, progress, refiner_noise)
        user_hole = painted if note else None  # kept only beside a grown hole
        return self._finish(session, result, step.predicted, True, user_hole, note).outputs()

    def undo(self, session: Session) -> tuple[Any, ...]:
        """Back to the image before the last run (Ctrl+Z)."""
        if not session.history or session.position == 0:
            raise page_error("Nothing to undo.")
        session.position -= 1
        return self._moved(session, "Undone")

    def redo(self, session: Session) -> tuple[Any, ...]:
        """Forward again after an undo (Ctrl+Y or Ctrl+Shift+Z)."""
        if not session.history or session.position >= len(session.history) - 1:
            raise page_error("Nothing to redo.")
        session.position += 1
        return self._moved(session, "Redone")

    def _moved(self, session: Session, what: str) -> tuple[Any, ...]:
        step = session.step
        text = step.status if step is not None and step.mask is not None else "The photo as opened."
        return self.pages.page(
            session, f"{what}: step {session.position} of {len(session.history) - 1}. " + text
        ).outputs()
