"""Photo mode: find the faces the hole touches, align each, run them through the landmark
locator and the generator runner as one batch, and warp them back into the photo; hole pixels
outside every face keep OpenCV's fill. :mod:`lafin.video` reuses it frame by frame."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import cv2
import numpy as np
import torch

from lafin.alignment import invert_affine, scale_crop_matrix, transform_points
from lafin.crop_frame import face_view, warp_back
from lafin.generator_runner import GeneratorRunner
from lafin.landmark_locator import LandmarkLocator
from lafin.landmarks import NUM_POINTS
from lafin.results import BackgroundRegion, FaceReport, InpaintResult, Stages, log_result_warning
from lafin.runtime import cpu_call

if TYPE_CHECKING:
    from lafin.photo import FaceFrame

log = logging.getLogger(__name__)


@dataclass
class FramedPhoto:
    """A photo and the frames of its faces, for :meth:`PhotoInpainter.render_photos`.

    Attributes:
        image: HxWx3 uint8 photo; hole: HxW uint8 (1 = hole).
        content: HxWx3 uint8, updated in place inside the hole (pre-filled by OpenCV).
        frames: :class:`lafin.photo.FaceFrame` list.
        covered: HxW bool, if given: set (in place) where a face's generated crop filled the hole.
    """

    image: np.ndarray
    hole: np.ndarray
    content: np.ndarray
    frames: list
    covered: np.ndarray | None = None


def background_regions(rest: np.ndarray) -> list[BackgroundRegion]:
    """The parts of the HxW bool ``rest`` (hole pixels no face took), nearby pieces together
    (the slivers one brush stroke leaves around a face are one part), largest first."""
    from lafin.photo import hole_regions

    regions = []
    for left, top, right, bottom in hole_regions(rest.astype(np.uint8), grow=0.25, min_side=8):
        x, y, w, h = cv2.boundingRect(rest[top:bottom, left:right].astype(np.uint8))
        if w and h:  # the pieces' own box, not the grown one they were grouped by
            regions.append(
                BackgroundRegion(
                    (left + x, top + y, left + x + w, top + y + h), int(rest[top:bottom, left:right].sum())
                )
            )
    return sorted(regions, key=lambda r: -r.pixels)


class PhotoInpainter:
    """Inpaints the faces of whole photos.

    Args:
        locator: places the landmarks.
        runner: generates (and refines) the faces.
        landmark_refine: re-align each face on a first landmark pass, then predict again.
    """

    def __init__(
        self, locator: LandmarkLocator, runner: GeneratorRunner, landmark_refine: bool = True
    ) -> None:
        self.locator = locator
        self.runner = runner
        self.runtime = runner.runtime
        self.image_size = runner.image_size
        self.landmark_refine = landmark_refine

    def inpaint(
        self,
        img: np.ndarray,
        hole: np.ndarray,
        landmarks: np.ndarray | None = None,
        stages: Stages | None = None,
    ) -> InpaintResult:
        """Find/align every face the hole touches (or the one face of ``landmarks``), generate
        them as one batch, warp back, harmonise at the hole's edge; other hole pixels are filled
        by OpenCV. ``img``, ``hole`` as checked by the input layer (1 = hole)."""
        from lafin.photo import FaceFrame, box_area, fill_regions, find_faces, robust_alignment

        stages = stages or Stages()
        s = self.image_size
        stages.start("background")
        # the output: the hole pre-filled by OpenCV (what background pixels keep); faces overwrite
        content = fill_regions(img, hole)
        stages.start("detect")
        if landmarks is not None:
            lm = np.asarray(landmarks, np.float32)
            # all 68 points, also those under the hole: given or lafin's own (made for hidden
            # points), unlike a detector's; the face is then framed as in training
            lo, hi = lm.min(axis=0), lm.max(axis=0)
            frames = [
                FaceFrame(
                    robust_alignment(lm, None, s),
                    s,
                    "given-landmarks",
                    (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
                    lm,
                )
            ]
        else:
            frames = find_faces(img, hole, s, filled=content)
        covered = np.zeros(hole.shape, bool)
        reports = self.render_faces(
            img, hole, content, frames, stages, given=landmarks is not None, covered=covered
        )
        unfound = sum(r.path == "hole-surroundings" for r in reports)
        warnings = []
        if unfound:
            # a landscape or a texture gets a face-like fill: say so rather than pass it off
            text = (
                f"no face found near {unfound} part(s) of the hole: filled from the surroundings "
                "by the face generator anyway (lafin is made for faces; the result may look "
                "wrong on other images)"
            )
            warnings.append(log_result_warning(log, text))
        stages.start("blend")  # a soft photo's softness and its tone (grey, sepia) kept in the fill
        out, tone = self.runner.finish(img, content, hole)  # outside the hole: the input, bit for bit
        timings = stages.stop()
        regions = background_regions(hole.astype(bool) & ~covered)
        background = sum(r.pixels for r in regions)
        if background:
            log.info(
                "%d hole pixels lie outside every face: filled by OpenCV (Telea): %s",
                background,
                ", ".join(f"{r.pixels} px at {r.box[:2]}" for r in regions),
            )
        main = max(reports, key=lambda r: box_area(r.box), default=None)
        return InpaintResult(
            out,
            None if main is None else main.landmarks,
            hole,
            landmarks is not None,
            timings,
            "photo",
            reports,
            background,
            regions,
            tone,
            warnings,
        )

    def inpaint_loose_crop(
        self,
        img: np.ndarray,
        hole: np.ndarray,
        landmarks: np.ndarray,
        given: np.ndarray | None,
        stages: Stages | None = None,
        warnings: Sequence[str] = (),
    ) -> InpaintResult:
        """Crop mode's path for a loose, off-centre or tilted face crop: aligned on its
        ``landmarks`` (input pixels) and inpainted the photo way (hole parts outside that face
        get OpenCV's fill); reported as crop mode, with the caller's ``given`` landmarks if
        any and crop mode's ``warnings`` first."""
        result = self.inpaint(img, hole, landmarks, stages)
        result.mode, result.landmarks_given = "crop", given is not None
        result.landmarks = landmarks if given is None else np.asarray(given, np.float32)
        result.warnings[:0] = warnings
        return result

    def render_faces(
        self,
        img: np.ndarray,
        hole: np.ndarray,
        content: np.ndarray,
        frames: list,
        stages: Stages | None = None,
        given: bool = False,
        point_filter: Callable[[int, np.ndarray], np.ndarray] | None = None,
        refine: bool | None = None,
        covered: np.ndarray | None = None,
    ) -> list[FaceReport]:
        """Generate the faces of ``frames`` as one batch and write them into ``content``.

        Args:
            img: HxWx3 uint8 photo; hole: HxW uint8 (1 = hole).
            content: HxWx3 uint8, updated in place inside the hole (pre-filled by OpenCV).
            frames: :class:`lafin.photo.FaceFrame` list (alignment of each face).
            given: use each frame's ``landmarks`` for generation instead of predicting them.
            point_filter: ``f(index_in_frames, landmarks_in_photo_pixels) -> landmarks``, applied
                to predicted landmarks before generation.
            refine: re-align each face on a first landmark pass (default: ``landmark_refine``).
            covered: HxW bool, if given: set (in place) where a face's generated crop filled
                the hole.

        Returns:
            One report per face whose crop contains part of the hole; overlapping faces do not
            count a hole pixel twice.
        """
        flt = None if point_filter is None else (lambda _, i, points: point_filter(i, points))
        return self.render_photos(
            [FramedPhoto(img, hole, content, frames, covered)], stages, given, flt, refine
        )[0]

    @cpu_call
    def locate_faces(self, img: np.ndarray, hole: np.ndarray) -> list[tuple[FaceFrame, np.ndarray]]:
        """Photo mode's landmarks without generating anything: the faces :meth:`inpaint` would
        generate (those whose crop holds part of the hole) or, when the hole is empty, every
        face the detector finds (:func:`lafin.photo.all_faces`). Returns (frame, landmarks)
        pairs: the :class:`lafin.photo.FaceFrame` (after the second landmark pass) and the
        (68, 2) float32 points, in photo pixels, that the face would be generated from; an
        empty list when there is no face."""
        from lafin.photo import all_faces, find_faces

        s = self.image_size
        frames = find_faces(img, hole, s) if hole.any() else all_faces(img, s)
        # as render_photos: a face whose crop misses the hole is not generated (no hole: all kept)
        photos = [FramedPhoto(img, hole, img, frames)]
        used, owner, _, img_t, hole_t = self._face_batch(photos, hole.any())
        if not used:
            return []
        points = self._locate_faces(photos, used, owner, img_t, hole_t, self.landmark_refine)
        to_photo = [transform_points(q, invert_affine(f.matrix)) for f, q in zip(used, points)]
        return [(f, q.astype(np.float32)) for f, q in zip(used, to_photo)]

    def _face_batch(
        self, photos: Sequence[FramedPhoto], hole_only: bool = True
    ) -> tuple[list, list[int], list[int], torch.Tensor, torch.Tensor]:
        """The faces of ``photos`` as one batch of aligned crops: (frames, owning photo's index,
        face index within its photo, (B, 3, S, S) crops in [0, 1], (B, 1, S, S) holes), on the
        runtime's device. With ``hole_only`` a face whose crop holds no hole is left out (it
        would not change); empty tensors when no face is left."""
        s = self.image_size
        crops, holes, used, owner, index = [], [], [], [], []
        for p, photo in enumerate(photos):
            for i, f in enumerate(photo.frames):
                crop, crop_hole = face_view(photo.image, photo.hole, f.matrix, s)
                if crop_hole.any() or not hole_only:
                    crops.append(crop)
                    holes.append(crop_hole)
                    used.append(f)
                    owner.append(p)
                    index.append(i)
        if not used:
            return [], [], [], torch.zeros(0, 3, s, s), torch.zeros(0, 1, s, s)
        device = self.runtime.device
        img_t = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255).to(device)
        hole_t = torch.from_numpy(np.stack(holes)[:, None].astype(np.float32)).to(device)
        return used, owner, index, img_t, hole_t

    @cpu_call
    def predict_face_landmarks(self, img: np.ndarray, hole: np.ndarray, frames: list) -> np.ndarray:
        """(B, 68, 2) float32 landmarks, in photo pixels, of the faces of ``frames`` (photo mode's
        first pass: no re-alignment); e.g. to smooth them over a video's frames before
        :meth:`render_photos` with ``given=True``."""
        if not frames:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        points = self.locator.predict_in(
            img, hole, [f.matrix for f in frames], aligned=[f.path != "hole-surroundings" for f in frames]
        )
        return np.stack(
            [transform_points(p, invert_affine(f.matrix)) for p, f in zip(points, frames)]
        ).astype(np.float32)

    @cpu_call
    def render_photos(
        self,
        photos: Sequence[FramedPhoto],
        stages: Stages | None = None,
        given: bool = False,
        point_filter: Callable[[int, int, np.ndarray], np.ndarray] | None = None,
        refine: bool | None = None,
    ) -> list[list[FaceReport]]:
        """:meth:`render_faces` for several photos (e.g. video frames): all their faces go through
        the networks as one batch. ``point_filter(photo_index, face_index, landmarks)`` is called
        in photo order, then face order (video smooths landmarks over time with it). Returns
        each photo's reports."""
        stages = stages or Stages()
        s = self.image_size
        device = self.runtime.device
        used, owner, index, img_t, hole_t = self._face_batch(photos)
        if not used:
            return [[] for _ in photos]
        if given:  # nothing to predict: no landmark stage to report
            points = np.stack([transform_points(f.landmarks, f.matrix) for f in used])
        else:
            stages.start("landmarks")
            points = self._locate_faces(
                photos, used, owner, img_t, hole_t, self.landmark_refine if refine is None else refine
            )
            if point_filter is not None:
                points = np.stack(
                    [
                        transform_points(
                            point_filter(p, i, transform_points(q, invert_affine(f.matrix))), f.matrix
                        )
                        for p, i, f, q in zip(owner, index, used, points)
                    ]
                )
        points = points.astype(np.float32)
        stages.start("generate")
        generated = self.runner.structure(img_t, hole_t, points)
        matrices = [f.matrix for f in used]
        if self.runner.refiner is not None:
            stages.start("refine")
            size = self.runner.output_size
            matrices = [scale_crop_matrix(m, size / s) for m in matrices]
            views = [face_view(photos[p].image, photos[p].hole, m, size) for p, m in zip(owner, matrices)]
            crops_r = torch.from_numpy(np.stack([v[0] for v in views])).permute(0, 3, 1, 2)
            holes_r = torch.from_numpy(np.stack([v[1] for v in views])[:, None].astype(np.float32))
            generated = self.runner.refine(
                crops_r.float().div(255).to(device), holes_r.to(device), generated, points, faces=index
            )
        stages.start("blend")
        covered = [np.zeros(ph.hole.shape, bool) if ph.covered is None else ph.covered for ph in photos]
        reports: list[list[FaceReport]] = [[] for _ in photos]
        for p, f, matrix, gen, pts in zip(owner, used, matrices, generated, points):
            ph = photos[p]
            face_hole = warp_back(ph.hole, ph.content, gen * 255.0, matrix) & ~covered[p]
            covered[p] |= face_hole
            reports[p].append(
                FaceReport(
                    f.path,
                    f.box,
                    transform_points(pts, invert_affine(f.matrix)).astype(np.float32),
                    int(face_hole.sum()),
                    list(f.notes),
                )
            )
        return reports

    def _locate_faces(
        self,
        photos: Sequence[FramedPhoto],
        used: list,
        owner: list[int],
        img_t: torch.Tensor,
        hole_t: torch.Tensor,
        refine: bool,
    ) -> np.ndarray:
        """(B, 68, 2) landmarks of the ``used`` frames in their crops' pixels; with ``refine``
        the frames are re-aligned (``used``, ``img_t`` and ``hole_t`` updated in place)."""
        s = self.image_size
        flip = False if refine else None
        if self.locator.landmark_size == s:  # the generator's crops serve the predictor too
            points = self.locator.predict(img_t * (1 - hole_t) + hole_t, flip=flip)
        else:
            points = self.locator.predict_in(
                [photos[p].image for p in owner],
                [photos[p].hole for p in owner],
                [f.matrix for f in used],
                flip=flip,
                aligned=[f.path != "hole-surroundings" for f in used],
            )
        if not refine:
            return points
        moved = list(used)
        for p in sorted(set(owner)):  # each photo's faces re-aligned on that photo
            mine = [j for j, o in enumerate(owner) if o == p]
            refined, second = self.locator.refine_frames(
                photos[p].image, photos[p].hole, [used[j] for j in mine], points[mine]
            )
            for j, f, q in zip(mine, refined, second):
                used[j], points[j] = f, q
        for j, (f, before) in enumerate(zip(used, moved)):
            if f is not before:  # the generator sees the re-aligned crop too
                crop, crop_hole = face_view(photos[owner[j]].image, photos[owner[j]].hole, f.matrix, s)
                img_t[j] = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)
                hole_t[j, 0] = torch.from_numpy(crop_hole.astype(np.float32))
        return points
