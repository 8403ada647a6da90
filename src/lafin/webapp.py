"""The web demo: paint a hole, see and edit the 68 landmarks, regenerate the face.

What LaFIn adds over other inpainting methods is an explicit structure: the 68 iBUG points. The
page shows them on the masked input beside the result, and lets the user change them before the
face is generated again: an editable table, expression presets (open or close the mouth, smile,
raise the eyebrows, ...) that move the relevant point groups, and click-to-move on the image.

Run it with ``python -m lafin.webapp --weights W`` (or ``serve()``). It is offline: Gradio
analytics are off, there are no share links, and the page loads nothing from other hosts. Each
browser session has its own :class:`Session` in a ``gr.State``; model runs go through a queue one
at a time (two CPU cores do not thrash); uploads, results and downloads stay in a temporary folder
that the app owns (Gradio's cache is pointed there).

The event handlers live in :class:`DemoHandlers` and work on plain numpy arrays, so they are
tested without a browser; :func:`build_app` only lays out the page and wires them.
"""

from __future__ import annotations

import argparse
import atexit
import html
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import cv2
import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from lafin.alignment import rescale_points  # noqa: E402
from lafin.io import InputError, load_image, load_mask  # noqa: E402
from lafin.landmarks import (  # noqa: E402
    NUM_POINTS,
    PARTS,
    draw_landmarks,
    load_landmarks,
    save_landmarks,
)

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from lafin.pipeline import InpaintResult, LaFInModel

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000
DEFAULT_MAX_FILE_SIZE = "200mb"
DISPLAY_SIDE = 512  # the landmark view's longer side, in screen pixels
TABLE_HEADERS = ["point", "part", "x", "y"]
MODES = ("auto", "crop", "photo")
BRUSH_COLOR = "#ff00ff"

# part name of each of the 68 points, for the table
POINT_PARTS: list[str] = [name for name, (a, b) in sorted(PARTS.items(), key=lambda kv: kv[1][0])
                          for _ in range(a, b)]

_STAGE_ORDER = ("prepare", "background", "detect", "landmarks", "generate", "blend")


class DemoError(ValueError):
    """A problem with what the user gave or did, with a message fit for the page."""


# ---------------------------------------------------------------------------- expressions


def _face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The face's own axes: unit ``right`` (from the image-left eye to the other), unit ``down``
    (perpendicular, towards the chin) and the inter-ocular distance in pixels."""
    right_eye, left_eye = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    across = left_eye - right_eye
    iod = float(np.hypot(*across))
    if not np.isfinite(iod) or iod < 1e-3:
        raise DemoError("the landmarks are degenerate (both eyes at the same place): an "
                        "expression cannot be applied; reset or edit them first")
    right = across / iod
    down = np.array([-right[1], right[0]])
    return right, down, iod


def _move(points: np.ndarray, weights: dict[int, float], vector: np.ndarray) -> None:
    for i, w in weights.items():
        points[i] += w * vector


# how far each point follows the lower lip when the mouth opens (jaw drops with it)
_OPEN_MOUTH = {66: 1.0, 65: 0.9, 67: 0.9, 57: 1.0, 56: 0.95, 58: 0.95, 55: 0.7, 59: 0.7,
               60: 0.3, 64: 0.3, 48: 0.25, 54: 0.25, 61: -0.05, 62: -0.05, 63: -0.05,
               8: 1.0, 7: 0.85, 9: 0.85, 6: 0.6, 10: 0.6, 5: 0.35, 11: 0.35, 4: 0.15, 12: 0.15}
_INNER_TOP, _INNER_BOTTOM = (61, 62, 63), (67, 66, 65)
_LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))  # (upper, lower) eyelid points


def _open_mouth(p: np.ndarray, s: float) -> None:
    _, down, iod = _face_axes(p)
    _move(p, _OPEN_MOUTH, 0.30 * iod * s * down)


def _close_mouth(p: np.ndarray, s: float) -> None:
    _, down, _ = _face_axes(p)
    gap = float((p[list(_INNER_BOTTOM)] - p[list(_INNER_TOP)]).mean(axis=0) @ down)
    if gap <= 0:
        return
    # the inner lips move towards each other by (mean bottom weight - top weight) per unit
    closing = np.mean([_OPEN_MOUTH[i] for i in _INNER_BOTTOM]) - _OPEN_MOUTH[62]
    _move(p, _OPEN_MOUTH, -gap * min(s, 1.0) / closing * down)


def _smile(p: np.ndarray, s: float) -> None:
    right, down, iod = _face_axes(p)
    out, up = 0.10 * iod * s, -0.10 * iod * s
    for weight, left_pts, right_pts in ((1.0, (48,), (54,)), (0.8, (60,), (64,)),
                                        (0.45, (49, 59), (53, 55)), (0.2, (61, 67), (63, 65))):
        for i in left_pts:
            p[i] += weight * (-out * right + up * down)
        for i in right_pts:
            p[i] += weight * (out * right + up * down)
    _move(p, {40: 1.0, 41: 1.0, 46: 1.0, 47: 1.0}, -0.02 * iod * s * down)  # cheeks lift the lids


def _raise_eyebrows(p: np.ndarray, s: float) -> None:
    _, down, iod = _face_axes(p)
    brows = {i: 1.0 for i in range(17, 27)} | {17: 0.8, 26: 0.8, 18: 0.9, 25: 0.9}
    _move(p, brows, -0.12 * iod * s * down)
    _move(p, {37: 1.0, 38: 1.0, 43: 1.0, 44: 1.0}, -0.03 * iod * s * down)


def _frown(p: np.ndarray, s: float) -> None:
    right, down, iod = _face_axes(p)
    _move(p, {17: 0.4, 18: 0.6, 19: 0.8, 20: 1.0, 21: 1.0, 22: 1.0, 23: 1.0, 24: 0.8, 25: 0.6,
              26: 0.4}, 0.08 * iod * s * down)
    _move(p, {20: 0.5, 21: 1.0}, 0.05 * iod * s * right)   # inner ends knit together
    _move(p, {22: 1.0, 23: 0.5}, -0.05 * iod * s * right)


def _close_eyes(p: np.ndarray, s: float) -> None:
    s = min(max(s, 0.0), 1.0)
    for upper, lower in _LID_PAIRS:  # the upper lid does most of the closing
        gap = p[lower] - p[upper]
        p[upper] += 0.8 * s * gap
        p[lower] -= 0.2 * s * gap


def _widen_eyes(p: np.ndarray, s: float) -> None:
    _, down, iod = _face_axes(p)
    _move(p, {37: 1.0, 38: 1.0, 43: 1.0, 44: 1.0}, -0.06 * iod * s * down)
    _move(p, {40: 1.0, 41: 1.0, 46: 1.0, 47: 1.0}, 0.02 * iod * s * down)


EXPRESSIONS: dict[str, Callable[[np.ndarray, float], None]] = {
    "open mouth": _open_mouth, "close mouth": _close_mouth, "smile": _smile,
    "raise eyebrows": _raise_eyebrows, "frown": _frown, "close eyes": _close_eyes,
    "widen eyes": _widen_eyes,
}


def apply_expression(landmarks: np.ndarray, expression: str, strength: float = 1.0) -> np.ndarray:
    """Move the iBUG-68 point groups of one expression; returns a new (68, 2) float32 array.

    The moves are in the face's own frame (its eye line gives "right" and "down") and scale with
    the inter-ocular distance, so they work for any face size and in-plane rotation.

    Args:
        landmarks: (68, 2) x, y pixels.
        expression: a key of :data:`EXPRESSIONS` (``open mouth``, ``close mouth``, ``smile``,
            ``raise eyebrows``, ``frown``, ``close eyes``, ``widen eyes``).
        strength: 1 is a moderate change; 0 changes nothing; "close" expressions stop at closed.
    """
    if expression not in EXPRESSIONS:
        raise DemoError(f"unknown expression {expression!r}; choose one of "
                        f"{', '.join(EXPRESSIONS)}")
    points = np.array(landmarks, dtype=np.float64)
    if points.shape != (NUM_POINTS, 2):
        raise DemoError(f"landmarks must have shape (68, 2), got {points.shape}")
    EXPRESSIONS[expression](points, float(strength))
    return points.astype(np.float32)


# ---------------------------------------------------------------------------- table <-> array


def landmarks_to_table(landmarks: np.ndarray | None) -> list[list[Any]]:
    """(68, 2) -> rows ``[point, part, x, y]`` (x, y rounded to 0.1 px); [] for None."""
    if landmarks is None:
        return []
    return [[i, POINT_PARTS[i], round(float(x), 1), round(float(y), 1)]
            for i, (x, y) in enumerate(np.asarray(landmarks, np.float64))]


def table_to_landmarks(table: Any) -> np.ndarray:
    """Rows ``[point, part, x, y]`` (a list of lists, numpy array or pandas DataFrame) -> (68, 2)
    float32, rows placed by their point number. Raises :class:`DemoError` naming a bad row."""
    if table is None:
        raise DemoError("there are no landmarks yet: click Inpaint first")
    if hasattr(table, "values") and hasattr(table, "columns"):  # pandas / polars
        table = table.values.tolist()
    rows = [list(r) for r in (table.tolist() if isinstance(table, np.ndarray) else table)]
    if len(rows) != NUM_POINTS:
        raise DemoError(f"the landmark table must have {NUM_POINTS} rows, it has {len(rows)}")
    out = np.full((NUM_POINTS, 2), np.nan, np.float32)
    for n, row in enumerate(rows):
        if len(row) < 4:
            raise DemoError(f"landmark table row {n + 1} needs the columns point, part, x, y")
        try:
            index = int(float(row[0]))
            x, y = float(row[2]), float(row[3])
        except (TypeError, ValueError):
            raise DemoError(f"landmark table row {n + 1}: point, x and y must be numbers, got "
                            f"{row[0]!r}, {row[2]!r}, {row[3]!r}") from None
        if not 0 <= index < NUM_POINTS:
            raise DemoError(f"landmark table row {n + 1}: point must be 0..67, got {index}")
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DemoError(f"landmark table row {n + 1}: x and y must be finite numbers")
        out[index] = (x, y)
    missing = np.flatnonzero(np.isnan(out[:, 0]))
    if missing.size:
        raise DemoError("the landmark table has no row for point(s) "
                        f"{', '.join(map(str, missing))}")
    return out


# ---------------------------------------------------------------------------- session


@dataclass
class Session:
    """One browser session's work (kept in a ``gr.State``, never shared).

    Attributes:
        image: HxWx3 uint8 RGB, the photo of the last Inpaint.
        mask: HxW uint8, 1 = hole, as used.
        predicted: (68, 2) float32 landmarks the model used on Inpaint (what Reset restores).
        landmarks: (68, 2) float32, the current (possibly edited) landmarks.
        other_faces: landmarks of the other faces the hole touched (photo mode), drawn only.
        result: HxWx3 uint8, the last result.
        selected: index of the point picked by a click on the landmark view, or None.
        view: (x0, y0, scale) of the landmark view: view pixel = (image pixel - x0/y0) * scale.
        out_dir: this session's folder for result files.
    """

    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    predicted: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    other_faces: list[np.ndarray] = field(default_factory=list)
    result: np.ndarray | None = None
    selected: int | None = None
    view: tuple[float, float, float] = (0.0, 0.0, 1.0)
    out_dir: str | None = None


def _error(message: str) -> Exception:
    """A message for the page (gr.Error when Gradio is there, else DemoError)."""
    try:
        import gradio as gr
    except ImportError:  # pragma: no cover
        return DemoError(message)
    return gr.Error(html.escape(message, quote=False))


class DemoHandlers:
    """The page's event handlers, on numpy arrays; each raises ``gr.Error`` with a message.

    Args:
        model: the loaded model.
        max_upload_pixels: largest photo or mask accepted (width x height).
        work_dir: where per-session result folders are made.
    """

    def __init__(self, model: "LaFInModel", max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
                 work_dir: str | Path | None = None) -> None:
        self.model = model
        self.max_upload_pixels = int(max_upload_pixels)
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="lafin-web-"))

    # ------------------------------------------------------------------ inputs

    def _limit_text(self) -> str:
        return f"{self.max_upload_pixels / 1e6:g} megapixels"

    def _check_pixels(self, width: int, height: int, what: str) -> None:
        if width * height > self.max_upload_pixels:
            raise _error(f"The {what} is too large: {width}x{height} = "
                         f"{width * height / 1e6:.1f} megapixels; this demo accepts at most "
                         f"{self._limit_text()}. Scale it down or crop around the face.")

    def image_from_editor(self, editor: dict | None) -> np.ndarray:
        """The photo (HxWx3 uint8) from the ImageEditor's value; transparent parts become white."""
        background = editor.get("background") if isinstance(editor, dict) else None
        if background is None:
            raise _error("Upload a photo first (or click 'Load example').")
        arr = np.asarray(background)
        self._check_pixels(arr.shape[1], arr.shape[0], "photo")
        try:
            return load_image(arr)
        except InputError as exc:
            raise _error(f"This photo cannot be used: {exc}") from None

    def mask_from_inputs(self, editor: dict | None, mask_file: str | None,
                         shape: tuple[int, int]) -> np.ndarray:
        """The hole (HxW uint8, 1 = hole): the uploaded mask file if any, else the painting
        (every brush layer's non-transparent pixels)."""
        if mask_file:
            return self._mask_file(str(mask_file), shape)
        hole = np.zeros(shape, np.uint8)
        for layer in (editor or {}).get("layers") or []:
            arr = np.asarray(layer)
            if arr.ndim != 3 or arr.shape[2] != 4:
                continue
            painted = (arr[..., 3] > 0).astype(np.uint8)
            if painted.shape != shape:
                painted = cv2.resize(painted, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
            hole |= painted
        return hole

    def _mask_file(self, path: str, shape: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        name = Path(path).name
        try:
            with Image.open(path) as probe:  # reads the header only
                self._check_pixels(*probe.size, "mask")
        except Image.DecompressionBombError:
            raise _error(f"The mask {name} is too large; this demo accepts at most "
                         f"{self._limit_text()}.") from None
        except OSError:
            raise _error(f"The mask file {name} is not an image (use a PNG: white = hole, "
                         "black = keep).") from None
        try:
            return load_mask(path, shape=shape)
        except InputError as exc:
            raise _error(f"Mask {name}: {str(exc).replace(path, name)}") from None

    # ------------------------------------------------------------------ running the model

    def _run(self, image: np.ndarray, hole: np.ndarray, landmarks: np.ndarray | None, mode: str,
             progress: Callable[..., Any] | None) -> "InpaintResult":
        from lafin.pipeline import STAGE_LABELS

        if mode not in MODES:
            raise _error(f"Unknown mode {mode!r}; choose auto, crop or photo.")

        def tell(stage: str) -> None:
            if progress is not None:
                step = _STAGE_ORDER.index(stage) if stage in _STAGE_ORDER else 0
                progress(step / len(_STAGE_ORDER), desc=STAGE_LABELS.get(stage, stage))

        try:
            return self.model(image, hole, landmarks=landmarks, mode=mode, progress=tell)
        except InputError as exc:
            raise _error(f"Cannot inpaint this: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the page must get a message, not a dead spinner
            log.exception("inpainting failed")
            raise _error(f"Inpainting failed ({type(exc).__name__}: {exc}).") from None

    def _session_dir(self, session: Session) -> Path:
        if session.out_dir is None or not Path(session.out_dir).is_dir():
            sessions = self.work_dir / "sessions"
            sessions.mkdir(parents=True, exist_ok=True)
            session.out_dir = tempfile.mkdtemp(prefix="s-", dir=sessions)
        return Path(session.out_dir)

    def _write_downloads(self, session: Session, result: "InpaintResult") -> list[str]:
        """Result PNG, mask PNG (white = hole) and the landmarks (.json and .pts), in a fresh
        sub-folder (the previous run's files stay valid for its open links)."""
        from PIL import Image

        out = Path(tempfile.mkdtemp(prefix="run-", dir=self._session_dir(session)))
        files = [out / "lafin-result.png", out / "lafin-mask.png"]
        Image.fromarray(result.image).save(files[0])
        Image.fromarray((result.mask > 0).astype(np.uint8) * 255).save(files[1])
        if result.landmarks is not None:
            files += [out / "lafin-landmarks.json", out / "lafin-landmarks.pts"]
            save_landmarks(files[2], result.landmarks)
            save_landmarks(files[3], result.landmarks)
        return [str(f) for f in files]

    def _finish(self, session: Session, result: "InpaintResult", predicted: bool
                ) -> tuple[str, np.ndarray, list[list[Any]], list[str], str, Session]:
        session.result = result.image
        session.mask = result.mask
        lm = None if result.landmarks is None else np.asarray(result.landmarks, np.float32).copy()
        if predicted:
            session.predicted = lm
        session.landmarks = lm
        session.other_faces = [np.asarray(f.landmarks, np.float32) for f in result.faces
                               if lm is None or not np.allclose(f.landmarks, lm)]
        session.selected = None
        files = self._write_downloads(session, result)
        return (files[0], self.render_view(session), landmarks_to_table(lm), files,
                self._status(result), session)

    def _status(self, result: "InpaintResult") -> str:
        h, w = result.mask.shape
        parts = [f"**{result.mode} mode**", f"hole {100 * result.mask.mean():.1f}% of {w}x{h} px",
                 "your landmarks" if result.landmarks_given else "predicted landmarks",
                 f"{sum(result.timings.values()):.2f} s"]
        text = " · ".join(parts)
        if result.mode == "photo":
            faces = "; ".join(f"face at ({f.box[0]:.0f}, {f.box[1]:.0f}): {f.path}, "
                              f"{f.hole_pixels} hole px" for f in result.faces) or "no face found"
            text += f"  \n{faces}"
            if result.background_pixels:
                text += f"; {result.background_pixels} hole px outside faces filled by OpenCV"
        if result.landmarks is None:
            text += "  \nNo face in the hole's surroundings: there are no landmarks to edit."
        return text

    def inpaint(self, editor: dict | None, mask_file: str | None, mode: str, session: Session,
                progress: Callable[..., Any] | None = None
                ) -> tuple[str, np.ndarray, list[list[Any]], list[str], str, Session]:
        """Inpaint button: photo and hole from the page, landmarks predicted.

        Returns (result PNG path, landmark view HxWx3 uint8, landmark table rows, download file
        paths, status Markdown, session).
        """
        image = self.image_from_editor(editor)
        hole = self.mask_from_inputs(editor, mask_file, image.shape[:2])
        if not hole.any():
            raise _error("The mask is empty: paint over the part of the face to fill with the "
                         "brush, or upload a mask image (white = hole).")
        result = self._run(image, hole, None, mode, progress)
        session.image = image
        return self._finish(session, result, predicted=True)

    def regenerate(self, table: Any, mode: str, session: Session,
                   progress: Callable[..., Any] | None = None
                   ) -> tuple[str, np.ndarray, list[list[Any]], list[str], str, Session]:
        """Regenerate button: the same photo and hole, the landmarks of the table."""
        if session.image is None or session.mask is None:
            raise _error("Click Inpaint first: the landmarks come from the first run.")
        landmarks = self._table(table)
        result = self._run(session.image, session.mask, landmarks, mode, progress)
        return self._finish(session, result, predicted=False)

    # ------------------------------------------------------------------ landmark editing

    def _table(self, table: Any) -> np.ndarray:
        try:
            return table_to_landmarks(table)
        except DemoError as exc:
            raise _error(str(exc)) from None

    def _need_landmarks(self, session: Session) -> np.ndarray:
        if session.landmarks is None or session.image is None:
            raise _error("There are no landmarks to edit yet: click Inpaint first.")
        return session.landmarks

    def apply_preset(self, expression: str, strength: float, session: Session
                     ) -> tuple[np.ndarray, list[list[Any]], str, Session]:
        """An expression button: move the point groups; returns (view, table, status, session)."""
        current = self._need_landmarks(session)
        try:
            session.landmarks = apply_expression(current, expression, strength)
        except DemoError as exc:
            raise _error(str(exc)) from None
        return (self.render_view(session), landmarks_to_table(session.landmarks),
                f"Applied **{expression}** (strength {strength:g}). Click *Regenerate* to see "
                "the face with these landmarks.", session)

    def edit_table(self, table: Any, session: Session) -> tuple[np.ndarray, str, Session]:
        """The table was edited: take its landmarks; returns (view, status, session)."""
        self._need_landmarks(session)
        session.landmarks = self._table(table)
        return (self.render_view(session),
                "Landmarks edited. Click *Regenerate* to see the face with them.", session)

    def reset(self, session: Session) -> tuple[np.ndarray, list[list[Any]], str, Session]:
        """Back to the landmarks predicted by the last Inpaint."""
        self._need_landmarks(session)
        session.landmarks = None if session.predicted is None else session.predicted.copy()
        session.selected = None
        return (self.render_view(session), landmarks_to_table(session.landmarks),
                "Landmarks reset to the predicted ones.", session)

    def click(self, session: Session, xy: Sequence[float]
              ) -> tuple[np.ndarray, list[list[Any]], str, Session]:
        """A click on the landmark view at view pixel ``xy``: the first click picks the nearest
        point, the next one moves it there."""
        current = self._need_landmarks(session)
        x0, y0, scale = session.view
        point = rescale_points(np.asarray(xy[:2], np.float64), 1 / scale) + (x0, y0)
        if session.selected is None:
            i = int(np.argmin(np.linalg.norm(current - point, axis=1)))
            session.selected = i
            status = (f"Point {i} ({POINT_PARTS[i]}) selected: click where it should go.")
        else:
            i, session.selected = session.selected, None
            moved = current.copy()
            moved[i] = point
            session.landmarks = moved.astype(np.float32)
            status = (f"Point {i} ({POINT_PARTS[i]}) moved to ({point[0]:.1f}, {point[1]:.1f}). "
                      "Click *Regenerate* to see the face.")
        return self.render_view(session), landmarks_to_table(session.landmarks), status, session

    def load_landmarks_file(self, path: str | None, session: Session
                            ) -> tuple[np.ndarray, list[list[Any]], str, Session]:
        """Landmarks from an uploaded .pts, .json or .npy file (image pixels)."""
        self._need_landmarks(session)
        if not path:
            raise _error("No landmarks file was uploaded.")
        name = Path(path).name
        try:
            session.landmarks = load_landmarks(path)
        except (ValueError, OSError, KeyError) as exc:
            raise _error(f"Cannot read landmarks from {name}: "
                         f"{str(exc).replace(str(path), name)}") from None
        return (self.render_view(session), landmarks_to_table(session.landmarks),
                f"Loaded landmarks from {name}. Click *Regenerate* to use them.", session)

    # ------------------------------------------------------------------ the landmark view

    def render_view(self, session: Session) -> np.ndarray:
        """The masked input (hole whitened, as the model sees it) with the landmarks drawn:
        the current set green, other faces blue, the selected point red. Large photos show the
        region around the face. Sets ``session.view`` for mapping clicks back."""
        image, hole = session.image, session.mask
        assert image is not None and hole is not None
        h, w = hole.shape
        x0, y0, x1, y1 = 0, 0, w, h
        if session.landmarks is not None and max(h, w) > 2 * DISPLAY_SIDE:
            lo, hi = session.landmarks.min(axis=0), session.landmarks.max(axis=0)
            centre, half = (lo + hi) / 2, 0.9 * float(max(hi - lo))
            x0, y0 = int(max(0, centre[0] - half)), int(max(0, centre[1] - half))
            x1, y1 = int(min(w, centre[0] + half + 1)), int(min(h, centre[1] + half + 1))
            if x1 - x0 < 16 or y1 - y0 < 16:
                x0, y0, x1, y1 = 0, 0, w, h
        scale = DISPLAY_SIDE / max(x1 - x0, y1 - y0)
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        crop = image[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        view = cv2.resize(crop, size, interpolation=interp)
        hole_view = cv2.resize(hole[y0:y1, x0:x1], size, interpolation=cv2.INTER_NEAREST) > 0
        view[hole_view] = (0.4 * view[hole_view] + 0.6 * 255).astype(np.uint8)
        session.view = (float(x0), float(y0), float(scale))

        def to_view(points: np.ndarray) -> np.ndarray:
            return rescale_points(np.asarray(points, np.float64) - (x0, y0), scale)

        for other in session.other_faces:
            view = draw_landmarks(view, to_view(other), color=(0, 160, 255))
        if session.landmarks is not None:
            pts = to_view(session.landmarks)
            view = draw_landmarks(view, pts, color=(0, 220, 0))
            if session.selected is not None:
                x, y = pts[session.selected]
                cv2.circle(view, (int(round(x)), int(round(y))), 6, (255, 0, 0), 2, cv2.LINE_AA)
        return view

    def cleanup(self, session: Session | None) -> None:
        """Remove a session's result files (the State's delete callback)."""
        if isinstance(session, Session) and session.out_dir:
            shutil.rmtree(session.out_dir, ignore_errors=True)


def example_editor_value(size: int = 256) -> dict[str, Any]:
    """The built-in example face with its hole pre-painted, as an ImageEditor value."""
    from lafin.examples import example_face, example_mask

    face = example_face(size)
    hole = example_mask(size).astype(bool)
    layer = np.zeros((size, size, 4), np.uint8)
    layer[hole] = (255, 0, 255, 255)
    composite = np.dstack([face, np.full((size, size), 255, np.uint8)])
    composite[hole] = layer[hole]
    return {"background": np.dstack([face, np.full((size, size), 255, np.uint8)]),
            "layers": [layer], "composite": composite}


# ---------------------------------------------------------------------------- the page

_INTRO = """\
# lafin: landmark-guided face inpainting
1. **Upload a face photo** into the editor (or click *Load example*) and **paint over the part to
   fill** with the brush, or upload a mask image (white = hole).
2. Click **Inpaint**. The result appears beside the input, with the 68 landmarks the model placed.
3. **Change the structure**: an expression button, the table, or click a point on the landmark
   view and then click where it should go. Click **Regenerate**.

Large photos and photos with several faces are handled whole: the faces the hole touches are found,
aligned, inpainted and put back (mode *auto* or *photo*). Known pixels are never changed.
"""

_CSS = """
#lafin-status { min-height: 2.5em; }
#lafin-result img { width: 100%; height: 100%; object-fit: contain; }
"""


def _owned_temp_dir(work_dir: str | Path | None) -> Path:
    if work_dir is not None:
        path = Path(work_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(tempfile.mkdtemp(prefix="lafin-web-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def build_app(model: "LaFInModel", max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS, *,
              work_dir: str | Path | None = None, title: str = "lafin web demo") -> "gr.Blocks":
    """The demo page (a ``gr.Blocks``, queued one model run at a time; not launched).

    Args:
        model: the loaded model.
        max_upload_pixels: largest photo or mask (width x height) the handlers accept.
        work_dir: the app's temporary folder (Gradio's cache and the result files); default: a
            new one, removed when the process exits. ``GRADIO_TEMP_DIR`` is set to a folder in
            it (process-wide: Gradio reads it at run time).
    """
    root = _owned_temp_dir(work_dir)
    gradio_cache = root / "gradio"
    gradio_cache.mkdir(exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_cache)
    import gradio as gr

    handlers = DemoHandlers(model, max_upload_pixels, work_dir=root)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 6 * 3600)) as demo:
        session = gr.State(Session(), delete_callback=handlers.cleanup)
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column(scale=3):
                editor = gr.ImageEditor(
                    label="Photo: paint the hole", type="numpy", image_mode="RGBA",
                    sources=["upload", "clipboard"], transforms=(), layers=False,
                    brush=gr.Brush(colors=[BRUSH_COLOR], color_mode="fixed"),
                    elem_id="lafin-editor", height=520)
            with gr.Column(scale=1, min_width=240):
                mask_file = gr.File(label="...or upload a mask (white = hole; used instead of "
                                    "the painting)", file_types=["image"], type="filepath",
                                    elem_id="lafin-mask-file")
                mode = gr.Radio(list(MODES), value="auto", label="Mode",
                                info="crop: one face crop; photo: find the faces; auto: crop for "
                                     "small images, photo for large ones")
                example_btn = gr.Button("Load example", elem_id="lafin-example")
                inpaint_btn = gr.Button("Inpaint", variant="primary", elem_id="lafin-inpaint")
        status = gr.Markdown(elem_id="lafin-status")
        with gr.Row():
            view = gr.Image(label="Landmarks on the masked input (click a point, then where it "
                            "should go)", type="numpy", format="png", interactive=False,
                            height=440, elem_id="lafin-view")
            result_img = gr.Image(label="Result", type="filepath", format="png",
                                  interactive=False, height=440, elem_id="lafin-result")
        with gr.Accordion("Edit the structure (landmarks)", open=True):
            with gr.Row():
                preset_btns = {name: gr.Button(name.capitalize(), size="sm",
                                               elem_id=f"lafin-preset-{name.replace(' ', '-')}")
                               for name in EXPRESSIONS}
            with gr.Row():
                strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Expression strength")
                reset_btn = gr.Button("Reset to predicted", size="sm")
                lm_upload = gr.UploadButton("Load landmarks (.pts/.json/.npy)", size="sm",
                                            file_types=[".pts", ".json", ".npy"],
                                            type="filepath")
                regenerate_btn = gr.Button("Regenerate", variant="primary",
                                           elem_id="lafin-regenerate")
            table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["number", "str", "number",
                                                                  "number"],
                                 type="array", interactive=True, static_columns=[0, 1],
                                 label="Landmarks (x, y in image pixels; edit x and y)",
                                 max_height=360, elem_id="lafin-table")
        downloads = gr.File(label="Downloads: result, mask, landmarks (.json, .pts)",
                            file_count="multiple", interactive=False, elem_id="lafin-downloads")

        run_outputs = [result_img, view, table, downloads, status, session]
        edit_outputs = [view, table, status, session]
        model_queue = {"concurrency_id": "model", "concurrency_limit": 1}
        light_queue = {"concurrency_id": "edit", "concurrency_limit": 2}

        def on_inpaint(editor_value, mask_path, mode_value, state, progress=gr.Progress()):
            return handlers.inpaint(editor_value, mask_path, mode_value, state, progress=progress)

        def on_regenerate(rows, mode_value, state, progress=gr.Progress()):
            return handlers.regenerate(rows, mode_value, state, progress=progress)

        def on_select(state, evt):
            return handlers.click(state, evt.index)

        # a real annotation object: Gradio passes the click event by this type, and the
        # module's postponed (string) annotations could not name the locally imported gradio
        on_select.__annotations__["evt"] = gr.SelectData

        inpaint_btn.click(on_inpaint, [editor, mask_file, mode, session], run_outputs,
                          **model_queue)
        regenerate_btn.click(on_regenerate, [table, mode, session], run_outputs, **model_queue)
        example_btn.click(lambda: (example_editor_value(), None), None, [editor, mask_file],
                          **light_queue)
        for name, btn in preset_btns.items():
            btn.click(lambda s, st, _name=name: handlers.apply_preset(_name, s, st),
                      [strength, session], edit_outputs, **light_queue)
        reset_btn.click(handlers.reset, [session], edit_outputs, **light_queue)
        lm_upload.upload(handlers.load_landmarks_file, [lm_upload, session], edit_outputs,
                         **light_queue)
        table.input(handlers.edit_table, [table, session], [view, status, session],
                    **light_queue)
        view.select(on_select, [session], edit_outputs, **light_queue)
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.lafin_work_dir = root  # type: ignore[attr-defined]
    demo.lafin_handlers = handlers  # type: ignore[attr-defined]
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, weights: str | Path | Sequence[str | Path]
          | None = None, device: str = "cpu", *, model: "LaFInModel | None" = None,
          max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
          max_file_size: str | int = DEFAULT_MAX_FILE_SIZE, block: bool = True,
          quiet: bool = False) -> "gr.Blocks":
    """Load the model (unless given) and serve the demo; offline, no share link.

    Args:
        host, port: where to listen (default 127.0.0.1:7860, this machine only).
        weights, device: as for :class:`lafin.pipeline.LaFInModel` (ignored when ``model`` is
            given); no weights and none shipped raises ``WeightsNotFoundError``.
        max_upload_pixels: largest photo accepted (width x height).
        max_file_size: largest upload in bytes, or e.g. ``"200mb"``.
        block: serve until interrupted; False returns the running app (tests).
    """
    if model is None:
        from lafin.pipeline import LaFInModel

        model = LaFInModel(weights=weights, device=device)
    demo = build_app(model, max_upload_pixels)
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                prevent_thread_lock=not block, quiet=quiet, ssr_mode=False, pwa=False,
                mcp_server=False, enable_monitoring=False, max_file_size=max_file_size,
                footer_links=[], css=_CSS)
    return demo


def main(argv: list[str] | None = None) -> int:
    """``python -m lafin.webapp [--host H] [--port P] [--weights W] [--device D]``."""
    parser = argparse.ArgumentParser(prog="python -m lafin.webapp",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--weights", nargs="+", help="weights file(s) (default: the shipped model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-upload-pixels", type=int, default=DEFAULT_MAX_UPLOAD_PIXELS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from lafin.checkpoint import WeightsError
    from lafin.pipeline import WeightsNotFoundError

    weights = args.weights[0] if args.weights and len(args.weights) == 1 else args.weights
    # a plain `kill` ends the server like Ctrl+C: the app's temporary folder is removed at exit
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(args.host, args.port, weights, args.device, max_upload_pixels=args.max_upload_pixels)
    except (WeightsNotFoundError, WeightsError, InputError, OSError) as exc:
        # OSError: also Gradio's "Cannot find empty port" when the port is taken
        print(f"lafin: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
