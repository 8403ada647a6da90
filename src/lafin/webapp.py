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
import base64
import html
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import cv2
import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from lafin.alignment import rescale_points  # noqa: E402
from lafin.io import InputError, load_image, load_mask  # noqa: E402
from lafin.landmarks import (  # noqa: E402
    EXPRESSION_NAMES,
    NUM_POINTS,
    PARTS,
    draw_landmarks,
    edit_expression,
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
PREVIEW_SIDE = 1024  # the editor's and the before/after previews' longer side
HISTORY_LIMIT = 12  # results kept for Undo per session
SESSION_TTL = 2 * 3600.0  # seconds a session's work is kept after its last change
MAX_SESSIONS = 200  # sessions kept in memory at once
STOP_GRACE = 15.0  # seconds from SIGTERM to the process's end at the latest
TABLE_HEADERS = ["point", "part", "x", "y"]
MODES = ("auto", "crop", "photo")
BRUSH_COLOR = "#ff00ff"

# part name of each of the 68 points, for the table
POINT_PARTS: list[str] = [
    name for name, (a, b) in sorted(PARTS.items(), key=lambda kv: kv[1][0]) for _ in range(a, b)
]

_STAGE_ORDER = ("prepare", "background", "detect", "landmarks", "generate", "refine", "blend")


class DemoError(ValueError):
    """A problem with what the user gave or did, with a message fit for the page."""


# ---------------------------------------------------------------------------- expressions

# the expression buttons: the geometry is lafin.landmarks.edit_expression's
EXPRESSIONS: tuple[str, ...] = EXPRESSION_NAMES


def apply_expression(landmarks: np.ndarray, expression: str, strength: float = 1.0) -> np.ndarray:
    """:func:`lafin.landmarks.edit_expression` with its refusals as the demo's messages."""
    try:
        return edit_expression(landmarks, expression, strength)
    except ValueError as exc:
        raise DemoError(str(exc)) from None


# ---------------------------------------------------------------------------- table <-> array


def landmarks_to_table(landmarks: np.ndarray | None) -> list[list[Any]]:
    """(68, 2) -> rows ``[point, part, x, y]`` (x, y rounded to 0.1 px); [] for None."""
    if landmarks is None:
        return []
    return [
        [i, POINT_PARTS[i], round(float(x), 1), round(float(y), 1)]
        for i, (x, y) in enumerate(np.asarray(landmarks, np.float64))
    ]


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
            raise DemoError(
                f"landmark table row {n + 1}: point, x and y must be numbers, got "
                f"{row[0]!r}, {row[2]!r}, {row[3]!r}"
            ) from None
        if not 0 <= index < NUM_POINTS:
            raise DemoError(f"landmark table row {n + 1}: point must be 0..67, got {index}")
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DemoError(f"landmark table row {n + 1}: x and y must be finite numbers")
        out[index] = (x, y)
    missing = np.flatnonzero(np.isnan(out[:, 0]))
    if missing.size:
        raise DemoError(f"the landmark table has no row for point(s) {', '.join(map(str, missing))}")
    return out


# ---------------------------------------------------------------------------- session


@dataclass
class Step:
    """One image of a session's history: the opened photo, or the result of one run.

    Attributes:
        image: HxWx3 uint8 RGB at the photo's full resolution.
        mask: HxW uint8 (1 = hole) the run filled; None for the opened photo.
        predicted: (68, 2) float32 landmarks the model placed for this run (Reset restores them).
        landmarks: (68, 2) float32 landmarks the run used (predicted or edited); None when the
            hole touched no face.
        other_faces: landmarks of the other faces the hole touched (photo mode), drawn only.
        status: the run's report, shown again when undo/redo comes back to it.
        files: the run's download files.
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    predicted: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    other_faces: list[np.ndarray] = field(default_factory=list)
    status: str = ""
    files: list[str] = field(default_factory=list)
    preview: tuple[bytes, int, int, str] | None = None  # JPEG, width, height, its file


@dataclass
class Session:
    """One browser session's work (kept in a ``gr.State``, never shared).

    Each run starts from the image shown in the editor, which is the last result: edits build
    on each other. ``history[position]`` is that image; Undo/Redo move ``position``.

    Attributes:
        photos: (name, path) of the opened photos (one, or a folder's worth), in order.
        photo_index: which of ``photos`` is being edited.
        name: the current photo's file stem (names the saved results).
        history: ``history[0]`` is the photo, each later step a run's result.
        position: the step shown (and the next run's start).
        landmarks: (68, 2) float32, the current (possibly edited) landmarks of the shown step.
        selected: index of the point picked by a click on the landmark view, or None.
        view: (x0, y0, scale) of the landmark view: view pixel = (image pixel - x0/y0) * scale.
        preview_scale: editor pixels per photo pixel (<= 1: the editor shows a reduced copy).
        brush_size: the editor's brush radius in editor pixels.
        last_mask: the hole of the last run (Re-run applies it again to the shown image).
        proposed: the detected damage (HxW uint8, 1 = damage, full resolution) now in the
            painter's stroke layer, or None; Inpaint keeps its full-resolution outline where
            the user left the reduced copy in the painter as it was.
        saved: the saved result file of each photo name (folder mode).
        out_dir: this session's folder for result files.
        uploads: the uploaded files this session used (deleted when no session uses them).
    """

    photos: list[tuple[str, str]] = field(default_factory=list)
    photo_index: int = 0
    name: str = "photo"
    history: list[Step] = field(default_factory=list)
    position: int = 0
    landmarks: np.ndarray | None = None
    selected: int | None = None
    view: tuple[float, float, float] = (0.0, 0.0, 1.0)
    preview_scale: float = 1.0
    brush_size: int = 8
    last_mask: np.ndarray | None = None
    proposed: np.ndarray | None = None
    saved: dict[str, str] = field(default_factory=dict)
    out_dir: str | None = None
    uploads: set[str] = field(default_factory=set)

    @property
    def step(self) -> Step | None:
        return self.history[self.position] if self.history else None

    @property
    def current(self) -> np.ndarray | None:
        """The image in the editor: where the next run starts."""
        return None if not self.history else self.history[self.position].image

    @property
    def image(self) -> np.ndarray | None:
        """The image the shown result was made from (the photo before any run)."""
        if not self.history:
            return None
        return self.history[max(self.position - 1, 0)].image

    @property
    def mask(self) -> np.ndarray | None:
        """The hole of the shown result (None before any run)."""
        return None if not self.history else self.history[self.position].mask

    @property
    def predicted(self) -> np.ndarray | None:
        return None if not self.history else self.history[self.position].predicted

    @property
    def other_faces(self) -> list[np.ndarray]:
        return [] if not self.history else self.history[self.position].other_faces


def _error(message: str) -> Exception:
    """A message for the page (gr.Error when Gradio is there, else DemoError). A user's mistake
    is not a server fault: Gradio is told not to log a traceback for it."""
    try:
        import gradio as gr
    except ImportError:  # pragma: no cover
        return DemoError(message)
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def _preview(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """A copy whose longer side is at most ``side``, and its scale. Halved with a Gaussian
    (``pyrDown``) while it is over twice the size, then a light Gaussian and bilinear: less
    aliasing than INTER_AREA (1-px stripes) at a third of its time for a 1500-px photo (it runs
    on every result)."""
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = image
    while min(small.shape[0] / size[1], small.shape[1] / size[0]) >= 2:
        small = cv2.pyrDown(small)
    left = size[0] / small.shape[1]  # the reduction still to do, 0.5..1
    if left < 0.95:
        small = cv2.GaussianBlur(small, (0, 0), 0.4 / left)
    return cv2.resize(small, size, interpolation=cv2.INTER_LINEAR), scale


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


class DemoHandlers:
    """The page's event handlers, on numpy arrays; each raises ``gr.Error`` with a message.

    Args:
        model: the loaded model.
        max_upload_pixels: largest photo or mask accepted (width x height); checked from the
            file's header, before it is decoded.
        work_dir: where per-session result folders are made.
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
        self.max_upload_pixels = int(max_upload_pixels)
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="lafin-web-"))
        self.preview_side = int(preview_side)
        self.history_limit = int(history_limit)
        self.upload_dir = None if upload_dir is None else Path(upload_dir).resolve()
        self._upload_users: dict[str, int] = {}  # uploaded file -> sessions using it
        self._uploads_lock = threading.Lock()

    # ------------------------------------------------------------------ uploads

    def _hold(self, session: Session, *paths: str) -> None:
        """Count ``session`` among the users of these uploaded files (once each)."""
        if self.upload_dir is None:
            return
        with self._uploads_lock:
            for path in paths:
                path = str(Path(path).resolve())
                if path in session.uploads or self.upload_dir not in Path(path).parents:
                    continue
                session.uploads.add(path)
                self._upload_users[path] = self._upload_users.get(path, 0) + 1

    def _release(self, session: Session) -> None:
        """``session`` ended: delete the uploads no other session uses (and their folders,
        Gradio's one per upload, when empty)."""
        with self._uploads_lock:
            for path in session.uploads:
                users = self._upload_users.get(path, 1) - 1
                if users > 0:
                    self._upload_users[path] = users
                    continue
                self._upload_users.pop(path, None)
                Path(path).unlink(missing_ok=True)
                try:
                    Path(path).parent.rmdir()
                except OSError:
                    pass  # not empty
            session.uploads.clear()

    # ------------------------------------------------------------------ photos

    def _limit_text(self) -> str:
        return f"{self.max_upload_pixels / 1e6:g} megapixels"

    def _check_pixels(self, width: int, height: int, what: str) -> None:
        if width * height > self.max_upload_pixels:
            raise _error(
                f"The {what} is too large: {width}x{height} = "
                f"{width * height / 1e6:.1f} megapixels; this demo accepts at most "
                f"{self._limit_text()}. Scale it down or crop around the face."
            )

    def _probe(self, path: str, what: str = "photo") -> None:
        """Refuse a file that is not an image or is over the pixel budget, from its header."""
        from PIL import Image

        name = Path(path).name
        try:
            size = Path(path).stat().st_size
        except OSError:
            raise _error(
                f"The {what} {name} could not be read (it is gone from the server; open it again)."
            ) from None
        if size == 0:
            raise _error(f"The {what} {name} is an empty file.")
        try:
            with Image.open(path) as probe:  # reads the header only
                width, height = probe.size
        except Image.DecompressionBombError:
            raise _error(
                f"The {what} {name} is too large; this demo accepts at most {self._limit_text()}."
            ) from None
        except (OSError, SyntaxError, ValueError):
            raise _error(
                f"{name} is not an image this demo can read (use a JPEG, PNG, WebP, BMP or TIFF photo)."
            ) from None
        try:
            self._check_pixels(width, height, f"{what} {name}")
        except Exception as exc:  # gr.Error: name the file, not only "the photo"
            raise exc from None

    def read_photo(self, path: str) -> np.ndarray:
        """An uploaded photo, HxWx3 uint8 RGB, turned upright by its EXIF orientation; checked
        against the pixel budget before it is decoded. Raises gr.Error with a message."""
        from PIL import Image, ImageOps

        self._probe(path)
        name = Path(path).name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    img.load()  # a truncated file fails here
                    upright = ImageOps.exif_transpose(img)
                    return load_image(upright)
        except InputError as exc:
            raise _error(f"The photo {name} cannot be used: {exc}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise _error(f"The photo {name} is damaged or truncated ({exc}).") from None

    def open_photos(self, paths: Sequence[str] | str | None, session: Session) -> tuple[Any, ...]:
        """Open one photo, several, or a folder's worth: the first readable one is shown, the
        others are stepped through with Previous/Next. Returns the page's outputs plus the photo
        list's update (choices, value)."""
        if isinstance(paths, (str, Path)):
            paths = [str(paths)]
        paths = [str(p) for p in paths or [] if p]
        if not paths:
            raise _error("No file was uploaded.")
        self._hold(session, *paths)
        photos, refused = [], []
        for path in sorted(paths, key=lambda p: Path(p).name.lower()):
            try:
                self._probe(path)
            except Exception as exc:  # noqa: BLE001 - gr.Error: collect every file's reason
                refused.append(getattr(exc, "message", str(exc)))
                continue
            photos.append((Path(path).name, path))
        if not photos:
            raise _error(
                " ".join(refused)
                if len(refused) == 1
                else f"None of the {len(refused)} files can be used: " + " ".join(refused)
            )
        page = None
        for index in range(len(photos)):
            try:
                page = self._show_photo(photos, index, session)
                break
            except Exception as exc:  # noqa: BLE001 - a truncated file: try the next one
                refused.append(getattr(exc, "message", str(exc)))
        if page is None:
            raise _error(" ".join(refused))
        if refused:
            page.status += f"  \n**Skipped {len(refused)} file(s):** " + " ".join(refused)
        return page.outputs()

    def _show_photo(self, photos: list[tuple[str, str]], index: int, session: Session) -> Page:
        name, path = photos[index]
        image = self.read_photo(path)
        session.photos, session.photo_index = list(photos), index
        self._start(session, image, Path(name).stem)
        h, w = image.shape[:2]
        where = f" (photo {index + 1} of {len(photos)})" if len(photos) > 1 else ""
        note = (
            f"; the editor shows it at {100 * session.preview_scale:.0f}%, results are made at full size"
            if session.preview_scale < 1
            else ""
        )
        return self._page(
            session,
            f"Opened **{name}**{where}: {w}x{h} px{note}. Paint over "
            "the part to fill, then click *Inpaint* (Ctrl+Enter).",
        )

    def _start(self, session: Session, image: np.ndarray, name: str) -> None:
        session.history, session.position = [Step(image=image)], 0
        session.landmarks, session.selected, session.last_mask = None, None, None
        session.proposed = None
        session.name = name
        _, session.preview_scale = _preview(image, self.preview_side)
        h, w = image.shape[:2]
        # the brush starts at ~4% of the editor's longer side: a few strokes cover an eye
        side = max(h, w) * session.preview_scale
        session.brush_size = int(max(2, round(0.04 * side)))

    def step_photo(self, delta: int, session: Session) -> tuple[Any, ...]:
        """Previous (-1) / Next (+1) photo of the opened folder."""
        if not session.photos:
            raise _error("Open some photos first (one or several files, or a folder).")
        index = session.photo_index + int(delta)
        if not 0 <= index < len(session.photos):
            raise _error("That was the " + ("last" if delta > 0 else "first") + " photo.")
        return self._show_photo(session.photos, index, session).outputs()

    def choose_photo(self, name: str | None, session: Session) -> tuple[Any, ...]:
        """A photo picked from the list of the opened folder."""
        names = [n for n, _ in session.photos]
        if name not in names:
            raise _error("Pick one of the opened photos.")
        return self._show_photo(session.photos, names.index(name), session).outputs()

    def load_example(self, session: Session) -> tuple[Any, ...]:
        """The built-in example face, with its hole pre-painted in the editor."""
        from lafin.examples import example_face, example_mask

        face = example_face(256)
        session.photos, session.photo_index = [], 0
        self._start(session, face, "example")
        page = self._page(session, "Loaded the example with a hole painted over it: click *Inpaint*.")
        page.editor = self._editor_value(session, example_mask(256))
        return page.outputs()

    # ------------------------------------------------------------------ the hole

    def mask_from_inputs(self, painted: str | None, mask_file: str | None, session: Session) -> np.ndarray:
        """The hole at full resolution (HxW uint8, 1 = hole): the uploaded mask file if any,
        else the painting (the painter's stroke layer, a PNG data URL at the preview's size:
        every non-transparent pixel is hole; scaled up to the photo's size)."""
        current = session.current
        if current is None:
            raise _error("Open a photo first (or click 'Load example'): there is nothing to inpaint yet.")
        shape = current.shape[:2]
        if mask_file:
            self._hold(session, str(mask_file))
            return self._mask_file(str(mask_file), shape)
        expected = _preview_shape(shape, session.preview_scale)
        strokes = decode_painting(painted)
        if strokes is None:
            return np.zeros(shape, np.uint8)
        if strokes.shape != expected:
            raise _error(
                f"The painting ({strokes.shape[1]}x{strokes.shape[0]}) does not match "
                "the opened photo: reload the page and open the photo again."
            )
        if strokes.shape == shape:
            return strokes
        proposed = session.proposed
        if proposed is not None and proposed.shape == shape:
            # detected damage: its full-resolution outline where the painter's reduced copy of
            # it was left as it was; what the user erased goes, what they added comes in
            shown = _reduce_mask(proposed, expected)
            added = strokes.astype(bool) & ~shown
            erased = shown & ~strokes.astype(bool)
            hole = proposed.astype(bool)
            if erased.any():
                hole &= ~_enlarge(erased, shape, smooth=False)
            if added.any():
                hole |= _enlarge(added, shape)
            return hole.astype(np.uint8)
        return _enlarge(strokes, shape).astype(np.uint8)

    def _mask_file(self, path: str, shape: tuple[int, int]) -> np.ndarray:
        name = Path(path).name
        self._probe(path, "mask")
        try:
            return load_mask(path, shape=shape)
        except InputError as exc:
            raise _error(f"Mask {name}: {str(exc).replace(path, name)}") from None

    # ------------------------------------------------------------------ running the model

    def _run(
        self,
        image: np.ndarray,
        hole: np.ndarray,
        landmarks: np.ndarray | None,
        mode: str,
        progress: Callable[..., Any] | None,
    ) -> "InpaintResult":
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
            log.exception("inpainting failed")  # a server fault: its traceback is wanted
            raise _error(f"Inpainting failed ({type(exc).__name__}: {exc}).") from None

    def _session_dir(self, session: Session) -> Path:
        if session.out_dir is None or not Path(session.out_dir).is_dir():
            sessions = self.work_dir / "sessions"
            sessions.mkdir(parents=True, exist_ok=True)
            session.out_dir = tempfile.mkdtemp(prefix="s-", dir=sessions)
        return Path(session.out_dir)

    def write_downloads(self, session: Session) -> list[str]:
        """The shown result's downloads, written once (a run's follow-up event, so the result is
        on the page before its PNG is compressed): result PNG, mask PNG (white = hole), the
        landmarks (.json and .pts), in a fresh sub-folder (earlier runs' files stay valid for
        their open links); the result is also saved as ``<photo>-lafin.png``, and the saved
        result of every other photo of the opened folder is listed after them."""
        from PIL import Image

        step = session.step
        if step is None or step.mask is None:
            return []
        if not step.files or not all(os.path.exists(f) for f in step.files):
            out = Path(tempfile.mkdtemp(prefix="run-", dir=self._session_dir(session)))
            files = [out / "lafin-result.png", out / "lafin-mask.png"]
            # compress_level 1: ~3x faster than the default, a few % larger
            Image.fromarray(step.image).save(files[0], compress_level=1)
            Image.fromarray(step.mask.astype(bool)).save(files[1])
            if step.landmarks is not None:
                files += [out / "lafin-landmarks.json", out / "lafin-landmarks.pts"]
                save_landmarks(files[2], step.landmarks)
                save_landmarks(files[3], step.landmarks)
            saved = out / f"{session.name}-lafin.png"
            try:
                os.link(files[0], saved)  # the same file under the photo's name, no copy
            except OSError:
                shutil.copyfile(files[0], saved)
            step.files = [str(f) for f in files]
            session.saved[session.name] = str(saved)
        others = [
            p for name, p in sorted(session.saved.items()) if name != session.name and os.path.exists(p)
        ]
        return list(step.files) + others

    def _push(self, session: Session, step: Step, replace: bool) -> None:
        """Put a run's step after the shown one (dropping any redo steps), or in its place."""
        keep = session.position if replace else session.position + 1
        session.history = session.history[:keep] + [step]
        if len(session.history) > self.history_limit + 1:  # the photo always stays
            session.history = session.history[:1] + session.history[-self.history_limit :]
        session.position = len(session.history) - 1

    def _finish(
        self, session: Session, result: "InpaintResult", predicted: np.ndarray | None, replace: bool
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
            predicted=lm if predicted is None else predicted,
            landmarks=lm,
            other_faces=others,
            status=self._status(result),
        )
        session.last_mask = result.mask
        self._push(session, step, replace)
        return self._page(session, step.status)

    def _status(self, result: "InpaintResult") -> str:
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
                    "  \nThe landmarks shown (green) and editable are the largest face's; "
                    "the others are blue."
                )
        if result.landmarks is None:
            text += "  \nNo face in the hole's surroundings: there are no landmarks to edit."
        for warning in result.warnings:
            text += f"  \n**Warning:** {warning}"
        return text

    def inpaint(
        self,
        painted: str | None,
        mask_file: str | None,
        mode: str,
        session: Session,
        progress: Callable[..., Any] | None = None,
    ) -> tuple[Any, ...]:
        """Inpaint button: fill the painted hole (or the mask file's) in the image the painter
        shows, which is the last result once there is one; landmarks are predicted.

        Args:
            painted: the painter's stroke layer as a PNG data URL (see :func:`decode_painting`).

        Returns the outputs of :meth:`Page.outputs`.
        """
        started = time.perf_counter()
        hole = self.mask_from_inputs(painted, mask_file, session)
        if not hole.any():
            raise _error(
                "The mask is empty: paint over the part of the face to fill with the "
                "brush, or upload a mask image (white = hole)."
            )
        ran = time.perf_counter()
        result = self._run(session.current, hole, None, mode, progress)
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
        self, mode: str, session: Session, progress: Callable[..., Any] | None = None
    ) -> tuple[Any, ...]:
        """Re-run: the last hole again, on the image shown (the last result)."""
        if session.last_mask is None or session.current is None:
            raise _error("Nothing to re-run yet: paint a hole and click Inpaint first.")
        if session.last_mask.shape != session.current.shape[:2]:
            raise _error("The last hole belongs to another photo: paint a new one.")
        result = self._run(session.current, session.last_mask, None, mode, progress)
        return self._finish(session, result, None, replace=False).outputs()

    def regenerate(
        self, table: Any, mode: str, session: Session, progress: Callable[..., Any] | None = None
    ) -> tuple[Any, ...]:
        """Regenerate button: the shown result made again from the same image and hole with the
        landmarks of the table (it replaces the shown result; Undo goes to the one before)."""
        step = session.step
        if step is None or step.mask is None:
            raise _error("Click Inpaint first: the landmarks come from the first run.")
        landmarks = self._table(table)
        result = self._run(session.image, step.mask, landmarks, mode, progress)
        return self._finish(session, result, step.predicted, replace=True).outputs()

    def detect_damage(
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
            raise _error(
                "Open a photo first (or click 'Load example'): there is nothing to look for damage in yet."
            )
        if progress is not None:
            progress(0.0, desc="Detecting damage")
        started = time.perf_counter()
        try:
            damage = self.model.detect_damage(image, threshold=float(threshold))
        except InputError as exc:
            raise _error(f"Cannot detect damage: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the page must get a message, not a dead spinner
            log.exception("damage detection failed")  # a server fault: its traceback is wanted
            raise _error(f"Damage detection failed ({type(exc).__name__}: {exc}).") from None
        seconds = time.perf_counter() - started
        hole = (grow_mask(damage, DEFAULT_DILATE) > 0).astype(np.uint8)
        found = (damage > 0).mean()
        # a mask of the whole photo leaves nothing to inpaint from: it is not proposed
        session.proposed = hole if hole.any() and not hole.all() else None
        editor = self._editor_value(session, session.proposed)
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

    def undo(self, session: Session) -> tuple[Any, ...]:
        """Back to the image before the last run (Ctrl+Z)."""
        if not session.history or session.position == 0:
            raise _error("Nothing to undo.")
        session.position -= 1
        return self._page(
            session,
            f"Undone: step {session.position} of {len(session.history) - 1}. " + self._step_text(session),
        ).outputs()

    def redo(self, session: Session) -> tuple[Any, ...]:
        """Forward again after an undo (Ctrl+Y or Ctrl+Shift+Z)."""
        if not session.history or session.position >= len(session.history) - 1:
            raise _error("Nothing to redo.")
        session.position += 1
        return self._page(
            session,
            f"Redone: step {session.position} of {len(session.history) - 1}. " + self._step_text(session),
        ).outputs()

    @staticmethod
    def _step_text(session: Session) -> str:
        step = session.step
        return step.status if step is not None and step.mask is not None else "The photo as opened."

    # ------------------------------------------------------------------ page state

    def _editor_value(self, session: Session, painted: np.ndarray | None = None) -> str:
        """The painter: a preview of the shown image with an empty stroke layer (or ``painted``,
        full size, pre-painted), as HTML for the page's script."""
        jpeg, width, height, _ = self._step_preview(session, session.history[session.position])
        return painter_html(jpeg, width, height, session.brush_size, painted)

    def _step_preview(self, session: Session, step: Step) -> tuple[bytes, int, int, str]:
        """The step's reduced copy as JPEG (bytes, width, height, file), made once: the painter
        and the before/after slider of this run and the next one all show it."""
        if step.preview is not None and not os.path.exists(step.preview[3]):
            # a long-open session's file, removed by Gradio's cache clean-up: write it again
            data, width, height, _ = step.preview
            handle, path = tempfile.mkstemp(".jpg", "preview-", self._session_dir(session))
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            step.preview = (data, width, height, path)
        if step.preview is None:
            small = _preview(step.image, self.preview_side)[0]
            ok, data = cv2.imencode(
                ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
            assert ok
            handle, path = tempfile.mkstemp(".jpg", "preview-", self._session_dir(session))
            with os.fdopen(handle, "wb") as out:
                out.write(data.tobytes())
            step.preview = (data.tobytes(), small.shape[1], small.shape[0], path)
        return step.preview

    def _page(self, session: Session, status: str) -> Page:
        step = session.step
        assert step is not None
        session.landmarks = None if step.landmarks is None else step.landmarks.copy()
        session.selected, session.proposed = None, None
        compare = None
        view = None
        if step.mask is not None:
            before = self._step_preview(session, session.history[max(session.position - 1, 0)])
            compare = (before[3], self._step_preview(session, step)[3])
            # a JPEG written here: a few ms, where a PNG of the same view took 10-50x longer
            handle, view = tempfile.mkstemp(".jpg", "view-", self._session_dir(session))
            os.close(handle)
            cv2.imwrite(
                view,
                cv2.cvtColor(self.render_view(session), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 92],
            )
        others = [
            p for name, p in sorted(session.saved.items()) if name != session.name and os.path.exists(p)
        ]
        files = [f for f in step.files if os.path.exists(f)] + others
        return Page(
            self._editor_value(session),
            compare,
            view,
            landmarks_to_table(session.landmarks),
            files,
            status,
            session,
        )

    # ------------------------------------------------------------------ landmark editing

    def _table(self, table: Any) -> np.ndarray:
        try:
            return table_to_landmarks(table)
        except DemoError as exc:
            raise _error(str(exc)) from None

    def _need_landmarks(self, session: Session) -> np.ndarray:
        if session.landmarks is None or session.mask is None:
            raise _error("There are no landmarks to edit yet: click Inpaint first.")
        return session.landmarks

    def apply_preset(
        self, expression: str, strength: float, session: Session
    ) -> tuple[np.ndarray, list[list[Any]], str, Session]:
        """An expression button: move the point groups; returns (view, table, status, session)."""
        current = self._need_landmarks(session)
        try:
            session.landmarks = apply_expression(current, expression, strength)
        except DemoError as exc:
            raise _error(str(exc)) from None
        return (
            self.render_view(session),
            landmarks_to_table(session.landmarks),
            f"Applied **{expression}** (strength {strength:g}). Click *Regenerate* to see "
            "the face with these landmarks." + self._outside_hole_note(current, session),
            session,
        )

    def _outside_hole_note(self, before: np.ndarray, session: Session) -> str:
        """A warning when moved points lie where the hole is not: those pixels are kept as
        they are, so moving such points changes little or nothing."""
        hole = session.mask
        if hole is None or session.landmarks is None:
            return ""
        # more than the table's rounding (0.05 px)
        moved = np.flatnonzero(np.abs(session.landmarks - before).max(axis=1) > 0.06)
        outside = [int(i) for i in moved if not _in_hole(hole, session.landmarks[i], before[i])]
        if not outside:
            return ""
        which = ", ".join(map(str, outside[:8])) + (" ..." if len(outside) > 8 else "")
        return (
            f"  \n**Note:** point(s) {which} are outside the hole: the pixels there are "
            "kept as they are, so moving them changes little. Undo, paint over that part "
            "too and Inpaint to let it change."
        )

    def edit_table(self, table: Any, session: Session) -> tuple[np.ndarray, str, Session]:
        """The table was edited: take its landmarks; returns (view, status, session)."""
        before = self._need_landmarks(session)
        session.landmarks = self._table(table)
        return (
            self.render_view(session),
            "Landmarks edited. Click *Regenerate* to see the face with them."
            + self._outside_hole_note(before, session),
            session,
        )

    def reset(self, session: Session) -> tuple[np.ndarray, list[list[Any]], str, Session]:
        """Back to the landmarks predicted by the shown run."""
        self._need_landmarks(session)
        predicted = session.predicted
        session.landmarks = None if predicted is None else predicted.copy()
        session.selected = None
        return (
            self.render_view(session),
            landmarks_to_table(session.landmarks),
            "Landmarks reset to the predicted ones.",
            session,
        )

    def click(
        self, session: Session, xy: Sequence[float]
    ) -> tuple[np.ndarray, list[list[Any]], str, Session]:
        """A click on the landmark view at view pixel ``xy``: the first click picks the nearest
        point, the next one moves it there."""
        current = self._need_landmarks(session)
        x0, y0, scale = session.view
        point = rescale_points(np.asarray(xy[:2], np.float64), 1 / scale) + (x0, y0)
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
        return self.render_view(session), landmarks_to_table(session.landmarks), status, session

    def load_landmarks_file(
        self, path: str | None, session: Session
    ) -> tuple[np.ndarray, list[list[Any]], str, Session]:
        """Landmarks from an uploaded .pts, .json or .npy file (image pixels)."""
        self._need_landmarks(session)
        if not path:
            raise _error("No landmarks file was uploaded.")
        self._hold(session, str(path))
        name = Path(path).name
        try:
            session.landmarks = load_landmarks(path)
        except (ValueError, OSError, KeyError) as exc:
            raise _error(f"Cannot read landmarks from {name}: {str(exc).replace(str(path), name)}") from None
        return (
            self.render_view(session),
            landmarks_to_table(session.landmarks),
            f"Loaded landmarks from {name}. Click *Regenerate* to use them.",
            session,
        )

    # ------------------------------------------------------------------ the landmark view

    def render_view(self, session: Session) -> np.ndarray:
        """What the model sees: the image the run started from with the hole pure white (the
        model gets no pixel from under it), the landmarks drawn: the current set green, other
        faces blue, the selected point red. Large photos show the region around the face. Sets
        ``session.view`` for mapping clicks back."""
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
        view[hole_view] = 255
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
        """Remove a session's result files and drop its images (the State's delete callback)."""
        if isinstance(session, Session):
            if session.out_dir:
                shutil.rmtree(session.out_dir, ignore_errors=True)
            session.history, session.last_mask, session.landmarks = [], None, None
            session.proposed = None
            self._release(session)


def _in_hole(hole: np.ndarray, *points: np.ndarray) -> bool:
    """True when any of the points lies in (or within 2 px of) the hole."""
    h, w = hole.shape
    for x, y in points:
        xi, yi = int(round(float(x))), int(round(float(y)))
        if hole[max(0, yi - 2) : max(0, min(h, yi + 3)), max(0, xi - 2) : max(0, min(w, xi + 3))].any():
            return True
    return False


def _enlarge(strokes: np.ndarray, shape: tuple[int, int], smooth: bool = True) -> np.ndarray:
    """A painted layer (nonzero = painted) at the photo's ``shape``, bool; ``smooth``: the
    outline is interpolated and cut at half (smooth edges), else each pixel is repeated."""
    size = (shape[1], shape[0])
    if not smooth:
        return cv2.resize(strokes.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    big = cv2.resize((strokes > 0).astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR)
    return big >= 128


def _preview_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    if scale >= 1.0:
        return tuple(shape)  # type: ignore[return-value]
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _reduce_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` (nonzero = hole) at ``shape`` (h, w), bool: a reduced pixel is hole when any
    part of it is, so a 1-px scratch stays visible (and stays in the hole) in a reduced copy."""
    on = (np.asarray(mask) > 0).astype(np.float32)
    if on.shape == tuple(shape):
        return on > 0
    interp = cv2.INTER_AREA if on.shape[0] >= shape[0] else cv2.INTER_NEAREST
    return cv2.resize(on, (shape[1], shape[0]), interpolation=interp) > 0


def _png_data_url(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def painter_html(jpeg: bytes, w: int, h: int, brush_size: int, painted: np.ndarray | None = None) -> str:
    """The painter's HTML: the preview (``jpeg``, ``w`` x ``h``) under a transparent canvas of
    the same size that the page's script paints on; ``painted`` (HxW, any size, nonzero = hole)
    pre-paints it."""
    mask_attr = ""
    if painted is not None:
        hole = _reduce_mask(painted, (h, w))
        layer = np.zeros((h, w, 4), np.uint8)
        layer[hole] = (255, 0, 255, 255)  # BGRA magenta, the brush's colour
        mask_attr = f' data-mask="{_png_data_url(layer)}"'
    return (
        f'<div class="lafin-paint" data-w="{w}" data-h="{h}" data-brush="{int(brush_size)}"'
        f'{mask_attr} style="aspect-ratio: {w} / {h}; width: min(100%, calc(480px * {w} / '
        f'{h}));"><img alt="the photo to paint on" draggable="false" '
        f'src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}">'
        "<canvas></canvas></div>"
    )


def decode_painting(data_url: str | None) -> np.ndarray | None:
    """The painter's stroke layer (a PNG data URL) -> HxW uint8, 1 where painted; None when
    nothing was sent. Raises gr.Error for anything that is not a PNG data URL."""
    if not data_url:
        return None
    head, _, payload = str(data_url).partition(",")
    if head != "data:image/png;base64" or not payload:
        raise _error("The painting did not arrive as an image: reload the page.")
    try:
        raw = np.frombuffer(base64.b64decode(payload, validate=True), np.uint8)
        layer = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    except (ValueError, cv2.error):
        layer = None
    if layer is None or layer.ndim != 3 or layer.shape[2] != 4:
        raise _error("The painting did not arrive as an image: reload the page.")
    return (layer[..., 3] > 0).astype(np.uint8)


# ---------------------------------------------------------------------------- the page

_INTRO = """\
# lafin: landmark-guided face inpainting
1. **Open a photo** (or several, or a folder's worth: step through them with *Previous*/*Next*),
   or click *Load example*. **Paint over the part to fill** with the brush (keys **[** and **]**
   change its size), or upload a mask image (white = hole).
2. Click **Inpaint** (Ctrl+Enter). The result replaces the photo in the editor: paint again and
   Inpaint to fix another spot. **Undo**/**Redo** (Ctrl+Z / Ctrl+Y) step through the results;
   drag the slider on the result to compare before and after.
   **Old photo?** *Detect damage* paints the scratches, cracks, dust and tears it finds (the
   threshold sets how much): correct them with the brush and the eraser, then Inpaint.
3. **Change the structure**: an expression button, the table, or click a point on the landmark
   view and then click where it should go. Click **Regenerate**.

Large photos and photos with several faces are handled whole: the faces the hole touches are found,
aligned, inpainted and put back (mode *auto* or *photo*). Known pixels are never changed.
"""

_CSS = """
#lafin-status, #lafin-edit-status { min-height: 2.5em; }
#lafin-painter { min-height: 480px; }
.lafin-paint { position: relative; margin: 0 auto; touch-action: none; }
.lafin-paint img, .lafin-paint canvas { position: absolute; inset: 0; width: 100%; height: 100%;
  user-select: none; }
.lafin-paint canvas { opacity: 0.6; cursor: crosshair; }
.lafin-empty { display: flex; align-items: center; justify-content: center; height: 480px;
  border: 2px dashed #bbb; border-radius: 8px; color: #666; }
"""

_EMPTY_PAINTER = (
    '<div class="lafin-empty">Open a photo (or drop one here), or click <i>Load example</i>.</div>'
)

# The painter and the keyboard. The painter is a plain 2D canvas over the preview: painting and
# sending the strokes (one small PNG) take milliseconds, where a WebGL editor on a machine without
# a GPU took seconds to export and to reload each image. Keys click the page's own buttons, so they
# do what the buttons do; typing in a field is left alone. A file dropped on the painter goes to
# "Open photos", which reads it once at full size and answers for every file it refuses.
_HEAD = """
<script>
(() => {
  const P = { box: null, ctx: null, brush: 8, erase: false, strokes: [], painted: false };
  window.lafinPainter = P;
  const setup = (box) => {
    box.dataset.ready = "1";
    const canvas = box.querySelector("canvas");
    canvas.width = +box.dataset.w; canvas.height = +box.dataset.h;
    Object.assign(P, { box, canvas, ctx: canvas.getContext("2d", { willReadFrequently: true }),
                       brush: +box.dataset.brush, strokes: [], painted: !!box.dataset.mask });
    if (box.dataset.mask) {
      const m = new Image(); m.onload = () => P.ctx.drawImage(m, 0, 0); m.src = box.dataset.mask;
    }
    let last = null;
    const at = (e) => { const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * canvas.width / r.width,
              (e.clientY - r.top) * canvas.height / r.height]; };
    const line = (a, b) => { const c = P.ctx;
      c.globalCompositeOperation = P.erase ? "destination-out" : "source-over";
      c.strokeStyle = "#ff00ff"; c.lineWidth = 2 * P.brush; c.lineCap = "round";
      c.lineJoin = "round"; c.beginPath(); c.moveTo(a[0], a[1]); c.lineTo(b[0], b[1]);
      c.stroke(); };
    canvas.addEventListener("pointerdown", (e) => {
      P.strokes.push(P.ctx.getImageData(0, 0, canvas.width, canvas.height));
      if (P.strokes.length > 30) P.strokes.shift();
      P.painted = true;
      canvas.setPointerCapture(e.pointerId); last = at(e); line(last, last); e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (last) { const p = at(e); line(last, p); last = p; } });
    const stop = () => { last = null; };
    canvas.addEventListener("pointerup", stop); canvas.addEventListener("pointercancel", stop);
    P.say();
  };
  P.say = (text) => { const s = document.querySelector("#lafin-brush-info");
    if (s) s.textContent = text || `brush ${P.brush} px${P.erase ? " (eraser)" : ""}`; };
  P.mask = () => {
    if (!P.ctx || !P.box || !P.box.isConnected || !P.painted) return "";
    const d = P.ctx.getImageData(0, 0, P.canvas.width, P.canvas.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i]) return P.canvas.toDataURL("image/png");
    return "";
  };
  P.resize = (f) => { P.brush = Math.max(1, Math.min(300,
      Math.round(P.brush * f) === P.brush ? P.brush + (f > 1 ? 1 : -1) : Math.round(P.brush * f)));
    P.say(); };
  P.toggleEraser = () => { P.erase = !P.erase; P.say(); };
  P.undoStroke = () => { if (!P.strokes.length || !P.box || !P.box.isConnected) return false;
    P.ctx.putImageData(P.strokes.pop(), 0, 0); return true; };
  P.clear = () => { if (!P.ctx) return; P.strokes.push(P.ctx.getImageData(0, 0, P.canvas.width,
    P.canvas.height)); P.ctx.clearRect(0, 0, P.canvas.width, P.canvas.height); };
  new MutationObserver(() => {
    document.querySelectorAll(".lafin-paint:not([data-ready])").forEach(setup);
  }).observe(document.documentElement, { childList: true, subtree: true });

  const press = (id) => { const b = document.getElementById(id); if (b) b.click(); return !!b; };
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  document.addEventListener("keydown", (e) => {
    if (typing(e.target)) return;
    const mod = e.ctrlKey || e.metaKey, key = e.key.toLowerCase();
    let done = true;
    if (!mod && !e.altKey && e.key === "[") P.resize(0.8);
    else if (!mod && !e.altKey && e.key === "]") P.resize(1.25);
    else if (!mod && !e.altKey && key === "e") P.toggleEraser();
    // Ctrl+Z takes back the strokes painted since the last run first, then the runs
    else if (mod && key === "z" && !e.shiftKey) done = P.undoStroke() || press("lafin-undo");
    else if (mod && (key === "y" || (key === "z" && e.shiftKey))) done = press("lafin-redo");
    else if (mod && e.key === "Enter") done = press("lafin-inpaint");
    else done = false;
    if (done) e.preventDefault();
  }, true);
  const onPainter = (e) => e.target && e.target.closest && e.target.closest("#lafin-painter");
  document.addEventListener("dragover", (e) => { if (onPainter(e)) e.preventDefault(); }, true);
  document.addEventListener("drop", (e) => {
    if (!onPainter(e)) return;
    e.preventDefault(); e.stopPropagation();
    const input = document.querySelector("#lafin-photos input[type=file]");
    if (!input || !e.dataTransfer || !e.dataTransfer.files.length) return;
    const files = new DataTransfer();
    for (const f of e.dataTransfer.files) files.items.add(f);
    input.files = files.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }, true);
})();
</script>
"""

# the Inpaint button sends the painter's strokes in place of the hidden field's value
_SEND_PAINTING = "(painted, ...rest) => [window.lafinPainter ? window.lafinPainter.mask() : '', ...rest]"


def _owned_temp_dir(work_dir: str | Path | None) -> Path:
    if work_dir is not None:
        path = Path(work_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(tempfile.mkdtemp(prefix="lafin-web-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _glibc() -> Any:
    """The C library when it is glibc (``malloc_trim``, ``mallopt``), else None."""
    global _GLIBC
    if _GLIBC is None:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            _GLIBC = libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else False
        except OSError:
            _GLIBC = False
    return _GLIBC or None


_GLIBC: Any = None
M_ARENA_MAX = -8  # glibc's mallopt parameter number
SERVER_MALLOC_ARENAS = 2


def release_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere
    nothing). A session's photos, previews and the model's buffers are freed when it ends, but
    glibc keeps freed heap memory for reuse: without the trim the server grew with every browser
    session (``benchmarks/web_sessions.py``)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _limit_malloc_arenas() -> None:
    """At most :data:`SERVER_MALLOC_ARENAS` glibc heaps: each of the server's worker threads
    would otherwise get a heap of its own (up to 8 per core), each keeping freed memory."""
    libc = _glibc()
    if libc is not None and not os.environ.get("MALLOC_ARENA_MAX"):
        libc.mallopt(M_ARENA_MAX, SERVER_MALLOC_ARENAS)


def _forget_session(demo: "gr.Blocks", handlers: DemoHandlers, session_hash: str | None) -> None:
    """A browser tab closed: delete its files and images now. Gradio alone would keep a closed
    session's state for an hour and its per-session copy of the page's config until 10,000
    sessions, which grew the server by ~10 MB per visitor."""
    holder = getattr(demo, "state_holder", None)
    if holder is None or not session_hash or session_hash not in holder:
        return
    with holder.lock:
        data = holder.session_data.pop(session_hash, None)
        holder.time_last_used.pop(session_hash, None)
    if data is not None:
        for value in data.state_data.values():
            handlers.cleanup(value)
        data.state_data.clear()
        del data
        release_memory()


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
    root = _owned_temp_dir(work_dir)
    gradio_cache = root / "gradio"
    gradio_cache.mkdir(exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_cache)
    import gradio as gr

    from lafin.restore import DEFAULT_THRESHOLD

    # the result files live in Gradio's cache folder: served from where they are written (no
    # hashed copy per file, none left behind), and removed with their session
    handlers = DemoHandlers(model, max_upload_pixels, work_dir=gradio_cache, upload_dir=gradio_cache)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        session = gr.State(
            Session(),
            time_to_live=session_ttl,
            delete_callback=lambda value: (handlers.cleanup(value), release_memory()),
        )
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column(scale=3):
                # photos come in through "Open photos" (read once at full size on the server);
                # the painter holds a reduced copy to paint on
                gr.Markdown("**Paint the hole** (brush **[** **]**, eraser **E**, undo a stroke **Ctrl+Z**)")
                editor = gr.HTML(_EMPTY_PAINTER, elem_id="lafin-painter")
                painted = gr.Textbox(visible=False)
                with gr.Row():
                    brush_smaller = gr.Button("Brush − [", size="sm", elem_id="lafin-brush-smaller")
                    brush_larger = gr.Button("Brush + ]", size="sm", elem_id="lafin-brush-larger")
                    eraser_btn = gr.Button("Eraser E", size="sm", elem_id="lafin-eraser")
                    clear_btn = gr.Button("Clear strokes", size="sm", elem_id="lafin-clear")
                    gr.HTML('<span id="lafin-brush-info"></span>')
                with gr.Row():
                    undo_btn = gr.Button("Undo (Ctrl+Z)", size="sm", elem_id="lafin-undo")
                    redo_btn = gr.Button("Redo (Ctrl+Y)", size="sm", elem_id="lafin-redo")
                    rerun_btn = gr.Button("Re-run last hole", size="sm", elem_id="lafin-rerun")
            with gr.Column(scale=1, min_width=240):
                photos = gr.File(
                    label="Open photos (one, several or a folder's worth)",
                    file_count="multiple",
                    type="filepath",
                    elem_id="lafin-photos",
                    height=120,
                )
                with gr.Row():
                    prev_btn = gr.Button("◀ Previous", size="sm", elem_id="lafin-prev")
                    next_btn = gr.Button("Next ▶", size="sm", elem_id="lafin-next")
                photo_list = gr.Dropdown(
                    choices=[], label="Photo", interactive=True, elem_id="lafin-photo-list"
                )
                mask_file = gr.File(
                    label="...or upload a mask (white = hole; used instead of the painting)",
                    type="filepath",
                    elem_id="lafin-mask-file",
                    height=100,
                )
                mode = gr.Radio(
                    list(MODES),
                    value="auto",
                    label="Mode",
                    info="crop: one face crop; photo: find the faces; auto: crop for "
                    "small images, photo for large ones",
                )
                example_btn = gr.Button("Load example", elem_id="lafin-example")
                with gr.Group():
                    detect_btn = gr.Button("Detect damage", elem_id="lafin-detect")
                    threshold = gr.Slider(
                        0.05,
                        0.95,
                        value=DEFAULT_THRESHOLD,
                        step=0.05,
                        label="Damage threshold",
                        info="lower: more is proposed as damage (scratches, "
                        "cracks, dust, tears of old photos)",
                        elem_id="lafin-threshold",
                    )
                inpaint_btn = gr.Button("Inpaint", variant="primary", elem_id="lafin-inpaint")
        status = gr.Markdown(elem_id="lafin-status")
        with gr.Row():
            view = gr.Image(
                label="What the model sees: the hole in white, the 68 landmarks "
                "(click a point, then where it should go)",
                type="numpy",
                format="jpeg",
                interactive=False,
                height=440,
                elem_id="lafin-view",
                buttons=["fullscreen"],
            )
            compare = gr.ImageSlider(
                label="Before / after (drag the slider)",
                type="filepath",
                interactive=False,
                height=440,
                elem_id="lafin-result",
                buttons=["fullscreen"],
            )
        with gr.Accordion("Edit the structure (landmarks)", open=True):
            with gr.Row():
                preset_btns = {
                    name: gr.Button(
                        name.capitalize(), size="sm", elem_id=f"lafin-preset-{name.replace(' ', '-')}"
                    )
                    for name in EXPRESSIONS
                }
            with gr.Row():
                strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Expression strength")
                reset_btn = gr.Button("Reset to predicted", size="sm")
                lm_upload = gr.UploadButton(
                    "Load landmarks (.pts/.json/.npy)",
                    size="sm",
                    file_types=[".pts", ".json", ".npy"],
                    type="filepath",
                )
                regenerate_btn = gr.Button("Regenerate", variant="primary", elem_id="lafin-regenerate")
            # beside the buttons that change it: the page's top status is out of sight here
            edit_status = gr.Markdown(elem_id="lafin-edit-status")
            table = gr.Dataframe(
                headers=TABLE_HEADERS,
                datatype=["number", "str", "number", "number"],
                type="array",
                interactive=True,
                static_columns=[0, 1],
                label="Landmarks (x, y in image pixels; edit x and y)",
                max_height=360,
                elem_id="lafin-table",
            )
        downloads = gr.File(
            label="Downloads: result, mask, landmarks (.json, .pts) and the "
            "saved result of each opened photo",
            file_count="multiple",
            interactive=False,
            elem_id="lafin-downloads",
        )

        page_outputs = [editor, compare, view, table, downloads, status, session]
        edit_outputs = [view, table, edit_status, session]
        # a run's progress (its stage) shows in the status line alone: redrawing a progress
        # overlay on every output at each stage kept the browser busy on large photos
        model_queue = {"concurrency_id": "model", "concurrency_limit": 1, "show_progress_on": [status]}
        light_queue = {"concurrency_id": "edit", "concurrency_limit": 2}

        def on_inpaint(editor_value, mask_path, mode_value, state, progress=gr.Progress()):
            return handlers.inpaint(editor_value, mask_path, mode_value, state, progress=progress)

        def on_detect(threshold_value, state, progress=gr.Progress()):
            return handlers.detect_damage(threshold_value, state, progress=progress)

        def on_rerun(mode_value, state, progress=gr.Progress()):
            return handlers.rerun(mode_value, state, progress=progress)

        def on_regenerate(rows, mode_value, state, progress=gr.Progress()):
            return handlers.regenerate(rows, mode_value, state, progress=progress)

        def on_open(paths, state):
            outputs = handlers.open_photos(paths, state)
            names = [n for n, _ in state.photos]
            return outputs + (
                None,
                gr.update(choices=names, value=names[state.photo_index] if names else None),
            )

        def on_step(delta, state):
            outputs = handlers.step_photo(delta, state)
            return outputs + (gr.update(value=state.photos[state.photo_index][0]),)

        def on_choose(name, state):
            if state.photos and name == state.photos[state.photo_index][0]:
                return (gr.skip(),) * (len(page_outputs))
            return handlers.choose_photo(name, state)

        def on_example(state):
            return (handlers.load_example(state)) + (None, gr.update(choices=[], value=None))

        def on_select(state, evt):
            return handlers.click(state, evt.index)

        def on_unload(request: gr.Request):
            _forget_session(demo, handlers, getattr(request, "session_hash", None))

        # a real annotation object: Gradio passes the click event by this type, and the
        # module's postponed (string) annotations could not name the locally imported gradio
        on_select.__annotations__["evt"] = gr.SelectData
        on_unload.__annotations__["request"] = gr.Request

        # each run shows its result first, then writes the full-size PNGs for the downloads
        runs = [
            inpaint_btn.click(
                on_inpaint,
                [painted, mask_file, mode, session],
                page_outputs,
                js=_SEND_PAINTING,
                **model_queue,
            ),
            rerun_btn.click(on_rerun, [mode, session], page_outputs, **model_queue),
            regenerate_btn.click(on_regenerate, [table, mode, session], page_outputs, **model_queue),
        ]
        for run in runs:
            run.success(handlers.write_downloads, [session], [downloads], **light_queue)
        detect_btn.click(on_detect, [threshold, session], [editor, mask_file, status, session], **model_queue)
        undo_btn.click(handlers.undo, [session], page_outputs, **light_queue)
        redo_btn.click(handlers.redo, [session], page_outputs, **light_queue)
        photos.upload(on_open, [photos, session], page_outputs + [photos, photo_list], **light_queue)
        prev_btn.click(lambda s: on_step(-1, s), [session], page_outputs + [photo_list], **light_queue)
        next_btn.click(lambda s: on_step(1, s), [session], page_outputs + [photo_list], **light_queue)
        photo_list.input(on_choose, [photo_list, session], page_outputs, **light_queue)
        example_btn.click(on_example, [session], page_outputs + [mask_file, photo_list], **light_queue)
        # painting tools work in the page alone: no trip to the server
        brush_smaller.click(None, js="() => window.lafinPainter.resize(0.8)")
        brush_larger.click(None, js="() => window.lafinPainter.resize(1.25)")
        eraser_btn.click(None, js="() => window.lafinPainter.toggleEraser()")
        clear_btn.click(None, js="() => window.lafinPainter.clear()")
        for name, btn in preset_btns.items():
            btn.click(
                lambda s, st, _name=name: handlers.apply_preset(_name, s, st),
                [strength, session],
                edit_outputs,
                **light_queue,
            )
        reset_btn.click(handlers.reset, [session], edit_outputs, **light_queue)
        lm_upload.upload(handlers.load_landmarks_file, [lm_upload, session], edit_outputs, **light_queue)
        table.input(handlers.edit_table, [table, session], [view, edit_status, session], **light_queue)
        view.select(on_select, [session], edit_outputs, **light_queue)
        demo.unload(on_unload)
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.lafin_work_dir = root  # type: ignore[attr-defined]
    demo.lafin_handlers = handlers  # type: ignore[attr-defined]
    return demo


def _patient_startup_check() -> None:
    """Gradio checks that its freshly started server answers, with HEAD requests of at most 3 s,
    and gives up at the first timeout ("When localhost is not accessible..."); on a machine busy
    with training the first page can take longer. Ask with a 30 s timeout for up to 2 minutes."""
    import httpx
    from gradio import networking

    if getattr(networking.url_ok, "lafin_patient", False):
        return

    def url_ok(url: str) -> bool:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.head(url, timeout=30).status_code in (200, 401, 301, 302, 303, 307, 308):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return False

    url_ok.lafin_patient = True  # type: ignore[attr-defined]
    networking.url_ok = url_ok


class _Stop(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl+C: Gradio closes its server, the temporary folder is removed."""


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    weights: str | Path | Sequence[str | Path] | None = None,
    device: str = "cpu",
    *,
    model: "LaFInModel | None" = None,
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
    max_file_size: str | int = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
    quiet: bool = False,
    work_dir: str | Path | None = None,
    session_ttl: float = SESSION_TTL,
    max_sessions: int = MAX_SESSIONS,
) -> "gr.Blocks":
    """Load the model (unless given) and serve the demo; offline, no share link.

    With ``block`` (the default) it serves until Ctrl+C or SIGTERM and then removes everything
    it wrote (uploads, results, Gradio's cache) before returning.

    Args:
        host, port: where to listen (default 127.0.0.1:7860, this machine only).
        weights, device: as for :class:`lafin.pipeline.LaFInModel` (ignored when ``model`` is
            given); no weights and none shipped raises ``WeightsNotFoundError``.
        max_upload_pixels: largest photo accepted (width x height).
        max_file_size: largest upload in bytes, or e.g. ``"200mb"``.
        block: serve until interrupted; False returns the running app (tests).
        work_dir: the temporary folder (default: a new one; removed when serving ends).
        session_ttl: seconds a session's work is kept after its last change.
        max_sessions: sessions kept in memory at once (the least recently used goes first).
    """
    if block:
        _limit_malloc_arenas()  # before the model and the server's threads allocate
    if model is None:
        from lafin.pipeline import LaFInModel

        model = LaFInModel(weights=weights, device=device)
    owned = work_dir is None
    root = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="lafin-web-"))
    if owned:
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    demo = build_app(model, max_upload_pixels, work_dir=root, session_ttl=session_ttl)
    _patient_startup_check()
    previous, stopped = None, []
    if block and threading.current_thread() is threading.main_thread():

        def on_sigterm(*_: Any) -> None:
            # the files go first: a supervisor may follow SIGTERM with SIGKILL within seconds
            # while Gradio is still closing its connections
            if owned:
                shutil.rmtree(root, ignore_errors=True)
            if not stopped:
                # the process is to end: neither Gradio's closing nor a worker thread still
                # finishing a request (seen after a client vanished mid-run) may keep it alive
                timer = threading.Timer(STOP_GRACE, os._exit, (0,))
                timer.daemon = True
                timer.start()
            stopped.append(True)
            raise _Stop()

        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=not block,
            quiet=quiet,
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            enable_monitoring=False,
            max_file_size=max_file_size,
            footer_links=[],
            css=_CSS,
            head=_HEAD,
            state_session_capacity=max_sessions,
        )
    except KeyboardInterrupt:
        pass  # Ctrl+C or SIGTERM while starting or serving: stop and clean up below
    finally:
        if block:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            demo.close()
            if owned:  # again: a run that was under way may have written after the first
                shutil.rmtree(root, ignore_errors=True)
    return demo


def main(argv: list[str] | None = None) -> int:
    """``python -m lafin.webapp [--host H] [--port P] [--weights W] [--device D]``."""
    parser = argparse.ArgumentParser(prog="python -m lafin.webapp", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--weights", nargs="+", help="weights file(s) (default: the shipped model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-upload-pixels", type=int, default=DEFAULT_MAX_UPLOAD_PIXELS)
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=SESSION_TTL,
        help="seconds a session's work is kept after its last change",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log each run's time in the handler (inputs, model, outputs)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from lafin.checkpoint import WeightsError
    from lafin.pipeline import WeightsNotFoundError

    weights = args.weights[0] if args.weights and len(args.weights) == 1 else args.weights
    try:
        serve(
            args.host,
            args.port,
            weights,
            args.device,
            max_upload_pixels=args.max_upload_pixels,
            session_ttl=args.session_ttl,
        )
    except (WeightsNotFoundError, WeightsError, InputError, OSError) as exc:
        # OSError: also Gradio's "Cannot find empty port" when the port is taken
        print(f"lafin: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
