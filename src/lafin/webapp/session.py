"""One browser session's state: the opened photos, the history of results, the landmarks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Step:
    """One image of a session's history: the opened photo, or the result of one run.

    Attributes:
        image: HxWx3 uint8 RGB at the photo's full resolution.
        mask: HxW uint8 (1 = hole) the run filled; None for the opened photo.
        painted: HxW uint8, the hole the user gave when Regenerate grew it over moved points
            (``mask`` is the grown one); None: ``mask`` is the user's.
        predicted: (68, 2) float32 landmarks the model placed for this run (Reset restores them).
        landmarks: (68, 2) float32 landmarks the run used (predicted or edited); None when the
            hole touched no face.
        other_faces: landmarks of the other faces the hole touched (photo mode), drawn only.
        status: the run's report, shown again when undo/redo comes back to it.
        files: the run's download files.
        preview: the image's reduced copy as (JPEG bytes, width, height, its file), made once.
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    painted: np.ndarray | None = None
    predicted: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    other_faces: list[np.ndarray] = field(default_factory=list)
    status: str = ""
    files: list[str] = field(default_factory=list)
    preview: tuple[bytes, int, int, str] | None = None


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
    def painted(self) -> np.ndarray | None:
        """The hole the user gave for the shown result (before Regenerate grew it)."""
        step = self.step
        if step is None:
            return None
        return step.mask if step.painted is None else step.painted

    @property
    def predicted(self) -> np.ndarray | None:
        return None if not self.history else self.history[self.position].predicted

    @property
    def other_faces(self) -> list[np.ndarray]:
        return [] if not self.history else self.history[self.position].other_faces

    def start(self, image: np.ndarray, name: str, preview_scale: float) -> None:
        """A new photo (or the example) in the editor: its history starts afresh."""
        self.history, self.position = [Step(image=image)], 0
        self.landmarks, self.selected, self.last_mask = None, None, None
        self.proposed = None
        self.name = name
        self.preview_scale = preview_scale
        # the brush starts at ~4% of the editor's longer side: a few strokes cover an eye
        side = max(image.shape[:2]) * preview_scale
        self.brush_size = int(max(2, round(0.04 * side)))

    def push(self, step: Step, replace: bool, limit: int) -> None:
        """Put a run's step after the shown one (dropping any redo steps), or in its place;
        at most ``limit`` results are kept (the photo always stays)."""
        keep = self.position if replace else self.position + 1
        self.history = self.history[:keep] + [step]
        if len(self.history) > limit + 1:
            self.history = self.history[:1] + self.history[-limit:]
        self.position = len(self.history) - 1

    def forget(self) -> None:
        """Drop the images (the session ended)."""
        self.history, self.last_mask, self.landmarks = [], None, None
        self.proposed = None
