"""The page's old-photo event: Detect damage proposes the damage detector's mask in the painter."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lafin.io import InputError
from lafin.webapp.errors import page_error
from lafin.webapp.pages import PageRenderer
from lafin.webapp.session import Session

if TYPE_CHECKING:  # pragma: no cover
    from lafin.pipeline import LaFInModel

log = logging.getLogger(__name__)


class DamageHandlers:
    """Damage detection on a session's shown image.

    Args:
        model: the loaded model (its ``detect_damage``).
        pages: makes the painter with the proposal.
    """

    def __init__(self, model: "LaFInModel", pages: PageRenderer) -> None:
        self.model = model
        self.pages = pages

    def detect(
        self, threshold: float, session: Session, progress: Callable[..., Any] | None = None
    ) -> tuple[str, None, str, Session]:
        """Detect damage button: the damage detector's mask of the image in the editor (scratches,
        cracks, dust, tears), grown by :data:`lafin.restore.DEFAULT_DILATE` px as ``lafin
        restore`` grows it, put in the painter's stroke layer (replacing what was painted) for
        the user to correct with the brush and the eraser before Inpaint.

        Returns (painter, mask file (cleared: the painting is used), status, session).
        """
        from lafin.restore import DEFAULT_DILATE, grow_mask

        image = session.current
        if image is None:
            raise page_error(
                "Open a photo first (or click 'Load example'): there is nothing to look for damage in yet."
            )
        if progress is not None:
            progress(0.0, desc="Detecting damage")
        started = time.perf_counter()
        try:
            damage = self.model.detect_damage(image, threshold=float(threshold))
        except InputError as exc:
            raise page_error(f"Cannot detect damage: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the page must get a message, not a dead spinner
            log.exception("damage detection failed")  # a server fault: its traceback is wanted
            raise page_error(f"Damage detection failed ({type(exc).__name__}: {exc}).") from None
        seconds = time.perf_counter() - started
        hole = (grow_mask(damage, DEFAULT_DILATE) > 0).astype(np.uint8)
        found = (damage > 0).mean()
        # a mask of the whole photo leaves nothing to inpaint from: it is not proposed
        session.proposed = hole if hole.any() and not hole.all() else None
        editor = self.pages.editor(session, session.proposed)
        if not hole.any():
            status = (
                f"No damage found at threshold {threshold:g} ({seconds:.2f} s): lower the "
                "threshold to propose more, or paint the hole yourself."
            )
        elif hole.all():
            status = (
                f"The whole photo was taken for damage at threshold {threshold:g}: raise "
                "the threshold and detect again."
            )
        else:
            status = (
                f"Detected damage on {100 * found:.2f}% of the photo (threshold "
                f"{threshold:g}, grown by {DEFAULT_DILATE} px; {seconds:.2f} s), shown "
                "in the painter. Correct it (brush adds, eraser **E** removes), then click "
                "*Inpaint*."
            )
        return editor, None, status, session
