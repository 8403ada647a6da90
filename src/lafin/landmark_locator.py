"""Placing the 68 landmarks: the landmark predictor on masked views of a face crop or of a
photo's faces, mirror-averaged, with the re-framing passes that put each face where the
predictor knows it best. Nothing under the hole is ever read."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import cv2
import numpy as np
import torch

from lafin.alignment import (
    canonical_landmarks,
    cut_for_crop,
    invert_affine,
    rescale_points,
    similarity_transform,
    transform_points,
    warp_to_crop,
)
from lafin.crop_frame import CropFrame
from lafin.landmarks import FLIP_PERMUTATION, NUM_POINTS
from lafin.runtime import Runtime, cpu_call


def hole_points(hole: np.ndarray) -> np.ndarray:
    """(N, 2) float64 x, y of the hole's pixels."""
    ys, xs = np.nonzero(hole)
    return np.stack([xs, ys], 1).astype(np.float64)


def inside_crop(points: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(N,) bool: which photo points (N, 2) the ``size`` crop of ``matrix`` contains."""
    q = points @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]
    return ((q >= 0) & (q <= size - 1)).all(axis=1)


def keeps_hole(hole_xy: np.ndarray, old: np.ndarray, new: np.ndarray, size: int) -> bool:
    """Does the crop of ``new`` hold 99% of the hole pixels (N, 2) the crop of ``old`` held?
    (A re-framed face must not move away from the hole it is there to fill.)"""
    held = inside_crop(hole_xy, old, size)
    return bool((inside_crop(hole_xy, new, size) & held).sum() >= 0.99 * held.sum())


def per_view(value: np.ndarray | Sequence[np.ndarray], matrices: Sequence) -> list[np.ndarray]:
    """One photo (or its hole) per view: ``value`` itself for every view, or the given list."""
    if isinstance(value, np.ndarray):
        return [value] * len(matrices)
    if len(value) != len(matrices):
        raise ValueError(f"{len(value)} photos for {len(matrices)} views")
    return list(value)


class LandmarkLocator:
    """The landmark predictor and the views it is given.

    Args:
        predictor: the landmark network, (B, 3, L, L) in [0, 1] -> (B, 136) coordinates / L.
        image_size: side S of the generator's crops; points are returned in their pixels.
        landmark_size: side L of the predictor's own input, cut from the input's pixels.
        runtime: device and CPU settings.
        flip_average: average each prediction with that of the mirror image.
        channels_last: feed the predictor channels-last tensors.
    """

    def __init__(
        self,
        predictor: torch.nn.Module,
        image_size: int,
        landmark_size: int,
        runtime: Runtime,
        flip_average: bool = True,
        channels_last: bool = False,
    ) -> None:
        self.predictor = predictor
        self.image_size = image_size
        self.landmark_size = landmark_size
        self.runtime = runtime
        self.flip_average = flip_average
        self.channels_last = channels_last

    @classmethod
    def for_config(
        cls, predictor: torch.nn.Module, config, runtime: Runtime, options, channels_last: bool = False
    ) -> "LandmarkLocator":
        """The locator of a predictor of ``config`` (a :class:`lafin.config.ModelConfig`) under
        ``options`` (:class:`lafin.options.InferenceOptions`)."""
        return cls(
            predictor,
            config.image_size,
            config.landmark_size,
            runtime,
            options.landmark_flip_average,
            channels_last,
        )

    @cpu_call
    @torch.inference_mode()
    def predict(self, masked: torch.Tensor, flip: bool | None = None) -> np.ndarray:
        """(B, 3, L, L) masked crops at the predictor's ``landmark_size`` L -> (B, 68, 2) float32
        landmarks in crop pixels. ``flip`` (default: ``flip_average``) averages with the mirror
        image's prediction."""
        return self._predict(masked, self.flip_average if flip is None else flip, check=False)[0]

    @cpu_call
    @torch.inference_mode()
    def predict_with_mirror_check(
        self, masked: torch.Tensor, flip: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict`'s (B, 68, 2) landmarks and (B,) their mirror disagreement
        (:func:`lafin.face_check.mirror_disagreement` of the crop's and its mirror image's
        prediction). The mirror pass is the one the flip average makes anyway; without the flip
        average it is run for the check only."""
        return self._predict(masked, self.flip_average if flip is None else flip, check=True)

    def _predict(self, masked: torch.Tensor, flip: bool, check: bool) -> tuple[np.ndarray, np.ndarray | None]:
        from lafin.face_check import mirror_disagreement

        size = self.landmark_size
        if masked.shape[-2:] != (size, size):
            raise ValueError(
                f"the landmark predictor takes {size}x{size} crops, not {tuple(masked.shape[-2:])}"
            )
        if self.channels_last:
            masked = masked.contiguous(memory_format=torch.channels_last)
        if not flip:
            points = (self.predictor(masked).reshape(-1, NUM_POINTS, 2) * size).float().cpu().numpy()
            if not check:
                return points, None
            mirror = self.predictor(masked.flip(3)).reshape(-1, NUM_POINTS, 2).float() * size
            return points, mirror_disagreement(points, self._mirrored_back(mirror).cpu().numpy())
        # the mean of the crop's and its mirror image's prediction (mirrored back): exactly
        # mirror-symmetric, and the predictor's left/right bias cancels
        n = masked.shape[0]
        both = torch.cat([masked, masked.flip(3)])
        out = self.predictor(both).reshape(2, n, NUM_POINTS, 2).float() * size
        mirrored = self._mirrored_back(out[1])
        points = ((out[0] + mirrored) / 2).cpu().numpy()
        if not check:
            return points, None
        return points, mirror_disagreement(out[0].cpu().numpy(), mirrored.cpu().numpy())

    def _mirrored_back(self, points: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) points predicted on mirror images, as points of the crops themselves."""
        mirrored = points[:, FLIP_PERMUTATION].clone()
        mirrored[..., 0] = self.landmark_size - 1 - mirrored[..., 0]
        return mirrored

    def locate(
        self,
        img: np.ndarray,
        hole: np.ndarray,
        frame: CropFrame,
        img_t: torch.Tensor | None = None,
        hole_t: torch.Tensor | None = None,
    ) -> np.ndarray:
        """Crop mode: the face's 68 landmarks, (68, 2) float32 in the pixels of ``frame``'s
        model square. ``img_t``, ``hole_t``: the frame's tensors, if already made."""
        return self._locate(img, hole, frame, img_t, hole_t, check=False)[0]

    def locate_in_input(self, img: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """Crop mode's landmarks of a face crop (HxWx3 uint8, hole HxW, nonzero = hole) as
        (68, 2) float32 x, y in its own pixels: for a small face in the crop
        (:func:`lafin.crop_frame.is_small_face`), those of :meth:`realigned`."""
        frame = CropFrame.around(img.shape[:2], self.image_size)
        return self.crop_points_in_input(img, hole, frame, self.locate(img, hole, frame))

    def crop_points_in_input(
        self, img: np.ndarray, hole: np.ndarray, frame: CropFrame, points: np.ndarray
    ) -> np.ndarray:
        """Crop mode's first-pass ``points`` (``frame``'s model square) as (68, 2) float32 in
        the input's pixels; a small face's (:func:`lafin.crop_frame.is_small_face`) are those
        of :meth:`realigned`."""
        from lafin.crop_frame import is_small_face

        found = frame.to_input(points).astype(np.float32)
        return self.realigned(img, hole, found) if is_small_face(points, self.image_size) else found

    def realigned(self, img: np.ndarray, hole: np.ndarray, points: np.ndarray) -> np.ndarray:
        """A second pass on the face aligned by a first pass's ``points`` ((68, 2) x, y in
        ``img``'s pixels): (68, 2) float32 in ``img``'s pixels. For a crop whose face is small
        (the first pass sees it at a fraction of the predictor's input; docs/MODEL_CARD.md,
        "Pipeline choices, measured"). Faces of the right size that are turned or off-centre keep their
        first pass (no gain there). The second pass is kept even where its face's crop leaves
        part of the hole out (aligned photo-style, those parts get OpenCV's fill): under a large
        hole the first pass can misplace the whole face, and the second is then the one to trust."""
        from lafin.photo import robust_alignment

        def alignment(pts: np.ndarray) -> np.ndarray:
            h, w = img.shape[:2]
            xy = np.clip(np.round(pts).astype(int), 0, [w - 1, h - 1])
            visible = hole[xy[:, 1], xy[:, 0]] == 0
            return robust_alignment(np.asarray(pts, np.float32), visible, self.image_size)

        matrix = alignment(points)
        crop_points = self.predict_in(img, hole, [matrix])[0]
        return transform_points(crop_points, invert_affine(matrix)).astype(np.float32)

    def locate_with_mirror_check(
        self,
        img: np.ndarray,
        hole: np.ndarray,
        frame: CropFrame,
        img_t: torch.Tensor | None = None,
        hole_t: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, float]:
        """:meth:`locate`'s landmarks and their mirror disagreement (crop mode's face check,
        :mod:`lafin.face_check`)."""
        points, disagreement = self._locate(img, hole, frame, img_t, hole_t, check=True)
        return points, float(disagreement)

    def _locate(
        self, img, hole, frame: CropFrame, img_t, hole_t, check: bool
    ) -> tuple[np.ndarray, float | None]:
        def run(masked: torch.Tensor) -> tuple[np.ndarray, float | None]:
            if not check:
                return self.predict(masked)[0], None
            points, disagreement = self.predict_with_mirror_check(masked)
            return points[0], float(disagreement[0])

        if self.landmark_size == frame.size:
            if img_t is None or hole_t is None:
                img_t, hole_t = frame.tensors(img, hole, self.runtime.device)
            points, disagreement = run(img_t * (1 - hole_t) + hole_t)
            return points.astype(np.float32), disagreement
        # the predictor's own crop of the input, at its size (not the generator's, upscaled)
        big = CropFrame.around(img.shape[:2], self.landmark_size)
        big_img, big_hole = big.tensors(img, hole, self.runtime.device)
        big_points, disagreement = run(big_img * (1 - big_hole) + big_hole)
        return frame.to_model(big.to_input(big_points)).astype(np.float32), disagreement

    def view(
        self,
        img: np.ndarray | Sequence[np.ndarray],
        hole: np.ndarray | Sequence[np.ndarray],
        matrices: list[np.ndarray],
    ) -> torch.Tensor:
        """(B, 3, L, L) masked crops of ``img`` by each photo -> crop matrix (L: the predictor's
        ``landmark_size``). ``img`` and ``hole`` may also be one per matrix (faces of several
        photos, e.g. video frames, in one batch).

        The hole is painted white before resampling, so nothing under it is read. A crop pixel
        is hole where the hole covers most of it (its white share is in the colour already):
        the "any" rule of the generator's crops grows thin holes at every resampling, and the
        predictor then loses points it could see.
        """
        s = self.landmark_size
        crops = []
        for im, ho, matrix in zip(per_view(img, matrices), per_view(hole, matrices), matrices):
            im, ho, matrix = cut_for_crop(im, ho, matrix, s)
            crop = warp_to_crop(np.where(ho[..., None] > 0, np.uint8(255), im), matrix, s)
            crop[warp_to_crop(ho.astype(np.float32), matrix, s, border=cv2.BORDER_CONSTANT) > 0.5] = 255
            crops.append(crop)
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255).to(self.runtime.device)

    def predict_views(
        self,
        img: np.ndarray | Sequence[np.ndarray],
        hole: np.ndarray | Sequence[np.ndarray],
        matrices: list[np.ndarray],
        flip: bool | None = None,
        centred: Sequence[bool] | None = None,
    ) -> np.ndarray:
        """The predictor on the views of ``matrices`` (photo -> ``image_size`` crop) at its own
        ``landmark_size``; (B, 68, 2) float32 points in the crops' pixels.

        ``centred`` (default: none) marks aligned crops, whose view is moved so the canonical
        landmark box is at its centre: an aligned crop sits the face 8% of a side low, the edge
        of the shifts the predictor trained on (``GeometryAugment``: box centred +-8%).
        """
        views, shifts = self._views(matrices, centred)
        points = self.predict(self.view(img, hole, views), flip=flip)
        r = self.landmark_size / self.image_size
        return (rescale_points(points, 1 / r) - shifts[:, None]).astype(np.float32)

    def _views(
        self, matrices: Sequence[np.ndarray], centred: Sequence[bool] | None
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """(photo -> predictor-view matrices, (B, 2) shifts in crop pixels) of ``matrices``
        (photo -> ``image_size`` crop), as :meth:`predict_views` describes."""
        s = self.image_size
        r = self.landmark_size / s
        box = canonical_landmarks(s)
        shifts = np.zeros((len(matrices), 2))
        if centred is not None:
            shifts[np.asarray(centred, bool)] = (s - 1) / 2 - (box.min(axis=0) + box.max(axis=0)) / 2
        views = []  # crop pixel p -> predictor-view pixel (p + shift + 0.5) * r - 0.5
        for matrix, shift in zip(matrices, shifts):
            view = np.asarray(matrix, np.float64) * r
            view[:, 2] += r * shift + 0.5 * (r - 1)
            views.append(view)
        return views, shifts

    def aligned_mirror_check(self, img: np.ndarray, hole: np.ndarray, points: np.ndarray) -> float:
        """The mirror disagreement of the predictor on the face of ``points`` ((68, 2) x, y in
        ``img``'s pixels) aligned to the canonical frame, as photo mode views a face: crop mode's
        face check asks this second view before it warns (:mod:`lafin.face_check`)."""
        matrix = similarity_transform(np.asarray(points, np.float64), canonical_landmarks(self.image_size))
        views, _ = self._views([matrix], [True])
        return float(self.predict_with_mirror_check(self.view(img, hole, views))[1][0])

    def predict_in(
        self,
        img: np.ndarray | Sequence[np.ndarray],
        hole: np.ndarray | Sequence[np.ndarray],
        matrices: list[np.ndarray],
        flip: bool | None = None,
        aligned: Sequence[bool] | None = None,
    ) -> np.ndarray:
        """Landmarks of the faces framed by ``matrices`` (photo pixels -> ``image_size`` crop),
        (B, 68, 2) float32 in those crops' pixels, predicted on crops resampled from the photo
        at the predictor's own ``landmark_size`` (``img``, ``hole``: one photo, or one per matrix).

        ``aligned`` (default: all) marks the frames that put a face on the canonical layout
        (found or given faces). The others are guesses around a hole where no face was found
        ("hole-surroundings": 1.6 times the hole, a nose-sized crop for a hole over the nose):
        the predictor first looks at twice that area, and the face is re-aligned on what it
        finds before the pass that gives the points.
        """
        s = self.image_size
        frames = [np.asarray(m, np.float64) for m in matrices]
        centred = [True] * len(frames) if aligned is None else [bool(a) for a in aligned]
        guessed = [i for i, a in enumerate(centred) if not a]
        if guessed:
            imgs, holes = per_view(img, matrices), per_view(hole, matrices)
            c = (s - 1) / 2  # twice the area around the crop's centre: p -> p / 2 + c / 2
            wide = [
                np.concatenate([frames[i][:, :2] / 2, frames[i][:, 2:] / 2 + c / 2], axis=1) for i in guessed
            ]
            rough = self.predict_views(
                [imgs[i] for i in guessed], [holes[i] for i in guessed], wide, flip=False
            )
            for i, view, points in zip(guessed, wide, rough):
                hole_xy = hole_points(holes[i])
                found = transform_points(points, invert_affine(view)).astype(np.float64)
                # kept if its landmark box spans 10%-400% of the guessed crop and it keeps the
                # hole (not a neighbour's face caught by the wide view)
                side = s / np.sqrt(abs(np.linalg.det(frames[i][:, :2])))  # in photo pixels
                face = similarity_transform(found, canonical_landmarks(s))
                if 0.1 * side <= float(
                    (found.max(axis=0) - found.min(axis=0)).max()
                ) <= 4 * side and keeps_hole(hole_xy, frames[i], face, s):
                    frames[i], centred[i] = face, True
        points = self.predict_views(img, hole, frames, flip=flip, centred=centred)
        for i in guessed:  # back into the guessed crop's pixels
            photo = transform_points(points[i], invert_affine(frames[i]))
            points[i] = transform_points(photo, np.asarray(matrices[i], np.float64))
        return points

    def refine_frames(
        self, img: np.ndarray, hole: np.ndarray, frames: list, first: np.ndarray
    ) -> tuple[list, np.ndarray]:
        """Photo mode's second landmark pass: each face re-aligned by the first pass's points
        (B, 68, 2 crop pixels) instead of the detector's, which the hole can pull astray. A face
        keeps its frame when no detector found it, or when the new frame is implausible: scaled
        by more than 1/0.8, turned by more than 20 degrees, or losing more than 1% of the hole
        pixels the old crop held (a confused first pass must not move the face away).
        Returns the frames and the second pass's (B, 68, 2) points in their crops."""
        from lafin.photo import robust_alignment

        s = self.image_size
        hole_xy = hole_points(hole)
        refined = []
        for f, points in zip(frames, first):
            if f.path != "hole-surroundings":
                # all 68 points (lafin's own, made for hidden ones), outliers down-weighted
                found = transform_points(points, invert_affine(f.matrix)).astype(np.float64)
                matrix = robust_alignment(found, None, s)
                change = matrix[:, :2] @ np.linalg.inv(f.matrix[:, :2])  # old crop -> new crop
                scale = float(np.sqrt(abs(np.linalg.det(change))))
                angle = float(np.degrees(np.arctan2(change[1, 0], change[0, 0])))
                if 0.8 <= scale <= 1 / 0.8 and abs(angle) <= 20 and keeps_hole(hole_xy, f.matrix, matrix, s):
                    f = replace(f, matrix=matrix)
            refined.append(f)
        return refined, self.predict_in(
            img, hole, [f.matrix for f in refined], aligned=[f.path != "hole-surroundings" for f in refined]
        )
