"""Finding the faces a hole touches in an ordinary photo, and framing each for the models.

Only faces near the hole matter, so detection runs on regions of interest around the hole's
connected parts (a small face in a huge photo stays detectable and cheap). Each face is tried in
five ways, and the way that worked is reported:

1. ``detected``: dlib's HOG detector finds it in the photo with the hole filled by OpenCV;
2. ``detected-upsampled``: it finds it after upsampling (small faces);
3. ``detected-confirmed``: HOG scored it below the acceptance threshold (a face whose nose and
   mouth are hidden scores low) but it covers most of the hole, and dlib's CNN detector confirms
   it on a small crop around it (~0.1 s, where searching the hole's surroundings costs ~1 s;
   weak HOG boxes are often not faces, so none is taken unconfirmed);
4. ``detected-cnn``: dlib's CNN detector finds it (turned or partly hidden faces; slower);
5. ``hole-surroundings``: no face found near a part of the hole; the square around that part
   (grown to show context) is treated as the face crop, when the photo has no face at all, or
   when the part lies in a row of detected faces of a matching size (a group photo: the crop then
   takes their size). Otherwise the part is background.

Parts of the hole that the faces found so far do not hold are searched again on their own (in
rounds), so a face found near one part never keeps another part's face from being searched for,
however their search regions overlap or merge.

Detected faces are annotated with dlib's 68 points on the filled photo; the similarity transform
to the canonical crop is fitted on the points outside the hole only (points inside the hole are
guesses on filled-in pixels), robustly (iteratively down-weighting outliers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from lafin.alignment import canonical_landmarks, similarity_transform, transform_points

log = logging.getLogger(__name__)

DETECT_MAX_SIDE = 1024  # regions are downscaled to this for detection
# The whole-photo pass tries a smaller copy first: large faces are found at a fraction of the
# cost, and only when none of them touches the hole is the photo searched at full size.
QUICK_MAX_SIDE = 640
# Regions up to this side are also searched upsampled (faces smaller than HOG's 80-px window).
UPSAMPLE_MAX_SIDE = 512
# The CNN detector runs on a hole's surroundings, where the face fills a good part of the
# region: it can work on a smaller image, which is most of its cost (1.8 s -> 0.5 s at 734 px).
CNN_MAX_SIDE = 512
# HOG detections down to this score are kept as candidates for faces that the hole hides in part
# (benchmarks/speed.py's photo: the face scores -0.32 with its nose and mouth hidden; the CNN
# detector that finds it instead costs ~1.3 s). dlib reports nothing below -0.5 anyway.
WEAK_MIN_SCORE = -0.5
# ... and are tried when they cover at least this fraction of the hole's part, best score first,
# at most this many (each costs one CNN run on a crop where the face is CONFIRM_FACE_SIDE px;
# the CNN finds faces from about 80 px up).
WEAK_HOLE_COVER = 0.5
WEAK_MAX_TRIES = 2
CONFIRM_FACE_SIDE = 80
# Parts of the hole still held by no face are searched again, their own regions, this many times.
MAX_ROUNDS = 3
# A part of the hole left beside the faces found, with fewer pixels than this share of the
# smallest one's box, is a remnant, not searched (a hidden mouth has ~10% of its face's box).
REMNANT_AREA = 0.03
# A region up to this area is searched upsampled, last, even when its side exceeds
# UPSAMPLE_MAX_SIDE (a group photo of small faces, ~900x560 px, is all one region).
UPSAMPLE_MAX_AREA = 1024 * 640
# A faceless part of the hole within this fraction of a face's side from a detected face's height
# lies in its row (a group photo), and hides a face of that size.
ROW_TOLERANCE = 0.75
# ... when at least this many faces make the row (beside a single face, a faceless hole at its
# height is as likely a wall as a head).
ROW_MIN_FACES = 2
# The canonical crop's side over dlib's face-box side.
CROP_PER_BOX = 1.6


@dataclass
class FaceFrame:
    """One face to inpaint and how it maps to the model's square crop.

    Attributes:
        matrix: (2, 3) photo -> crop affine (similarity) matrix.
        size: crop side in pixels.
        path: how the face was found (see module docstring).
        box: (left, top, right, bottom) of the face in photo pixels.
        landmarks: (68, 2) dlib landmarks in photo pixels (None for ``hole-surroundings``).
    """

    matrix: np.ndarray
    size: int
    path: str
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def hole_regions(hole: np.ndarray, grow: float = 1.0, min_side: int = 96) -> list[tuple[int, int, int, int]]:
    """Boxes (left, top, right, bottom) around the hole's connected parts, each grown by
    ``grow`` times its size on every side (at least ``min_side`` wide); overlapping boxes merge."""
    h, w = hole.shape
    n, _, stats, (cut_x, cut_y) = _components(hole.astype(np.uint8))
    boxes = []
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        x, y = x + cut_x, y + cut_y
        side = max(bw, bh, min_side // 2)
        g = int(round(grow * side))
        boxes.append([max(0, x - g), max(0, y - g), min(w, x + bw + g), min(h, y + bh + g)])
    merged = True
    while merged:  # merge overlapping boxes until stable
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [tuple(int(v) for v in b) for b in boxes]  # type: ignore[misc]


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, tuple[int, int]]:
    """``cv2.connectedComponentsWithStats`` (8-connected) of a uint8 mask, run on the box around
    its nonzero pixels only (a small hole in a large photo): (count, labels, stats, (x, y)), the
    labels and stats in the box's coordinates, (x, y) its top-left corner in the mask's."""
    x, y, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        x, y, bw, bh = 0, 0, 1, 1
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask[y : y + bh, x : x + bw], connectivity=8)
    return n, labels, stats, (x, y)


def _detect_in_region(
    filled: np.ndarray,
    region: tuple[int, int, int, int],
    upsample: int,
    min_score: float,
    cnn: bool = False,
    max_side: int = DETECT_MAX_SIDE,
) -> list[tuple[float, float, float, float, float]]:
    from lafin.face import detect_faces, detect_faces_cnn

    left, top, right, bottom = region
    roi = filled[top:bottom, left:right]
    scale = min(1.0, min(max_side, CNN_MAX_SIDE if cnn else max_side) / max(roi.shape[:2]))
    if scale < 1.0:
        roi = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    faces = detect_faces_cnn(roi) if cnn else detect_faces(roi, upsample=upsample, min_score=min_score)
    return [
        (left + f.left / scale, top + f.top / scale, left + f.right / scale, top + f.bottom / scale, f.score)
        for f in faces
    ]


def _confirm_weak(
    filled: np.ndarray, hole: np.ndarray, weak: list, region: tuple[int, int, int, int]
) -> list[tuple[tuple[float, float, float, float, float], str]]:
    """The first weak HOG box covering most of the hole's part in ``region`` that the CNN
    detector confirms on a crop around it; the CNN's box is returned (it fits the face better)."""
    from lafin.face import detect_faces_cnn

    h, w = hole.shape
    covering = sorted((b for b in weak if _covers(b, hole, region) >= WEAK_HOLE_COVER), key=lambda b: -b[4])
    tried: list = []
    for box in covering:
        if len(tried) == WEAK_MAX_TRIES:
            break
        if any(_overlap(box, t) > 0.5 for t in tried):
            continue  # the same face at another scale
        tried.append(box)
        side = max(box[2] - box[0], box[3] - box[1])
        grow = 0.3 * side  # context for the CNN: 0.4 -> 0.3 saves ~25 ms, confidence 0.97 -> ~0.9
        left, top = int(max(0, box[0] - grow)), int(max(0, box[1] - grow))
        right, bottom = int(min(w, box[2] + grow)), int(min(h, box[3] + grow))
        if right - left < 8 or bottom - top < 8 or side <= 0:
            continue  # (almost) entirely outside the photo
        scale = CONFIRM_FACE_SIDE / side
        crop = cv2.resize(
            filled[top:bottom, left:right],
            None,
            fx=scale,
            fy=scale,
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        for f in detect_faces_cnn(crop, max_side=max(crop.shape[:2])):
            found = (
                left + f.left / scale,
                top + f.top / scale,
                left + f.right / scale,
                top + f.bottom / scale,
                f.score,
            )
            cx, cy = (found[0] + found[2]) / 2, (found[1] + found[3]) / 2
            if box[0] <= cx <= box[2] and box[1] <= cy <= box[3] and _touches(found, hole):
                return [(found, "detected-confirmed")]
    return []


def _overlap(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _shared(a, b) -> float:
    """The share of box ``a``'s area that box ``b`` overlaps."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return ix * iy / area if area > 0 else 0.0


def _covers(box, hole: np.ndarray, region: tuple[int, int, int, int]) -> float:
    """The fraction of the hole's pixels inside ``region`` that lie inside ``box``."""
    left, top, right, bottom = region
    part = hole[top:bottom, left:right] > 0
    total = int(part.sum())
    if total == 0:
        return 0.0
    l, t = int(max(left, box[0])), int(max(top, box[1]))
    r, b = int(min(right, box[2])), int(min(bottom, box[3]))
    if r <= l or b <= t:
        return 0.0
    return float(part[t - top : b - top, l - left : r - left].sum()) / total


def _grown(box, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of ``box`` grown by ``margin`` of its size, clipped to ``shape``."""
    h, w = shape
    bw, bh = box[2] - box[0], box[3] - box[1]
    return (
        int(max(0, box[0] - margin * bw)),
        int(max(0, box[1] - margin * bh)),
        int(min(w, box[2] + margin * bw)),
        int(min(h, box[3] + margin * bh)),
    )


def _holds_hole(boxes: list, hole: np.ndarray, margin: float = 0.2) -> bool:
    """Do these face boxes (grown by ``margin``) contain every hole pixel?"""
    if not boxes:
        return False
    rest = hole > 0
    for box, _ in boxes:
        l, t, r, b = _grown(box, hole.shape, margin)
        rest[t:b, l:r] = False
    return not rest.any()


def _touches(box, hole: np.ndarray, margin: float = 0.2) -> bool:
    l, t, r, b = _grown(box, hole.shape, margin)
    return bool(hole[t:b, l:r].any())


def robust_alignment(
    landmarks: np.ndarray, visible: np.ndarray | None, size: int, iterations: int = 3
) -> np.ndarray:
    """Photo -> crop similarity from the visible landmarks (None: all of them, as for given
    landmarks or lafin's own, made for hidden points; a detector's count only where visible),
    down-weighting outliers (Huber-like reweighting on the residuals in crop pixels). Falls
    back to all points if < 8 are visible."""
    target = canonical_landmarks(size)
    weights = np.ones(len(landmarks)) if visible is None else np.asarray(visible, np.float64)
    if weights.sum() < 8:
        weights = np.ones(len(landmarks))
    matrix = similarity_transform(landmarks, target, weights)
    for _ in range(iterations):
        residual = np.linalg.norm(transform_points(landmarks, matrix) - target, axis=1)
        scale = 1.5 * max(np.median(residual[weights > 0]), 0.02 * size)
        robust = np.minimum(1.0, scale / np.maximum(residual, 1e-6))
        matrix = similarity_transform(landmarks, target, weights * robust)
    return matrix


def fill_regions(image: np.ndarray, hole: np.ndarray, radius: int = 5) -> np.ndarray:
    """OpenCV (Telea) fill of the hole, computed only around the hole's parts (fast on big
    photos). Returns a new HxWx3 uint8 image; pixels outside the hole are unchanged.

    The hole is painted white first: OpenCV's fill reads a little of what lies under the hole
    (its first ring), and nothing of that may reach the result."""
    out = image.copy()
    for left, top, right, bottom in hole_regions(hole, grow=0.25, min_side=4 * radius):
        roi_hole = hole[top:bottom, left:right].astype(np.uint8)
        source = np.where(roi_hole[..., None] > 0, np.uint8(255), image[top:bottom, left:right])
        out[top:bottom, left:right] = cv2.inpaint(source, roi_hole, radius, cv2.INPAINT_TELEA)
    return out


def find_faces(
    image: np.ndarray, hole: np.ndarray, size: int, min_score: float = 0.0, filled: np.ndarray | None = None
) -> list[FaceFrame]:
    """Frames of the faces that the hole touches (see the module docstring).

    Every part of the hole that the faces found so far do not hold is searched on its own, in
    rounds, so a face found near one part never hides another part's face (their search regions
    may overlap or merge). A part where no detector finds a face is a hidden face's surroundings
    when the photo has no face at all, or when it lies in a row of detected faces of a matching
    size (a group photo: the frame then takes their size); otherwise it is background.

    Args:
        image: HxWx3 uint8 photo.
        hole: HxW uint8, 1 = hole.
        size: the model's crop side.
        filled: the photo with the hole already filled by :func:`fill_regions`, if at hand.
    """
    h, w = hole.shape
    if filled is None:
        filled = fill_regions(image, hole)
    # one pass over the whole photo finds the large faces; small ones are searched for near the
    # hole only, at full resolution and upsampled
    weakest = min(min_score, WEAK_MIN_SCORE)
    everywhere, weak = [], []
    if max(h, w) > QUICK_MAX_SIDE:
        everywhere = _detect_in_region(filled, (0, 0, w, h), 0, weakest, max_side=QUICK_MAX_SIDE)
        weak += [b for b in everywhere if b[4] < min_score]
        everywhere = [b for b in everywhere if b[4] >= min_score]
    boxes: list[tuple[tuple[float, float, float, float, float], str]] = []
    if weak and not any(_touches(b, hole) for b in everywhere):
        # a large face that the hole hides in part: confirming it is cheaper than the full-size pass
        boxes = _confirm_weak(filled, hole, weak, (0, 0, w, h))
    if not any(_touches(b, hole) for b in everywhere) and not _holds_hole(boxes, hole):
        everywhere = _detect_in_region(filled, (0, 0, w, h), 0, weakest)
        weak += [b for b in everywhere if b[4] < min_score]
        everywhere = [b for b in everywhere if b[4] >= min_score]
    seen = list(everywhere)  # every face detected anywhere: the scale of a group photo's faces
    boxes += [
        (b, "detected")
        for b in everywhere
        if _touches(b, hole) and all(_overlap(b, other) < 0.3 for other, _ in boxes)
    ]
    searched: list[tuple[int, int, int, int]] = []
    rest = _unheld(hole, boxes)
    for _ in range(MAX_ROUNDS):
        # a region must hold the whole face even when the hole covers only its mouth or an eye
        regions = [
            r
            for r in hole_regions(_without_remnants(rest, boxes), grow=2.0, min_side=384)
            if r not in searched
        ]
        if not regions:
            break
        for region in regions:
            searched.append(region)
            found = search_region(filled, rest, region, weak, seen, min_score, weakest)
            for b, p in found:
                if all(_overlap(b, other) < 0.3 for other, _ in boxes):
                    boxes.append((b, p))
        rest = _unheld(hole, boxes)
    frames = [detected_frame(filled, hole, box, path, size) for box, path in boxes]
    if rest.any():
        if not boxes and not seen:
            # No face anywhere: the hole probably hides the face, so its surroundings are the crop.
            frames += [
                surroundings_frame(rest, region, size)
                for region in hole_regions(rest, grow=2.0, min_side=384)
            ]
        else:
            found = [b for b, _ in boxes]  # a face found twice (in two passes) counts once
            faces = found + [b for b in seen if all(_overlap(b, f) < 0.3 for f in found)]
            frames += _hidden_in_group(_without_remnants(rest, boxes), faces, size, (hole > 0) & (rest == 0))
    log.info("faces for inpainting: %s", [f.path for f in frames])
    return frames


def box_area(box) -> float:
    """The area of a (left, top, right, bottom, ...) box: photo mode's main face is the largest."""
    return float((box[2] - box[0]) * (box[3] - box[1]))


def detected_frame(
    filled: np.ndarray, hole: np.ndarray, box: tuple[float, float, float, float, float], path: str, size: int
) -> FaceFrame:
    """The frame of a detector's face ``box`` (left, top, right, bottom, score): dlib's 68
    points on ``filled`` (the photo, its hole pre-filled), aligned on those outside the hole."""
    from lafin.face import FaceBox, annotate

    h, w = hole.shape
    left, top, right, bottom, score = box
    landmarks = annotate(filled, FaceBox(left, top, right, bottom, score))
    xy = np.round(landmarks).astype(int)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    visible = inside.copy()
    visible[inside] = hole[xy[inside, 1], xy[inside, 0]] == 0
    return FaceFrame(
        robust_alignment(landmarks, visible, size),
        size,
        path,
        (float(left), float(top), float(right), float(bottom)),
        landmarks,
        [f"{int(visible.sum())} of 68 points visible"],
    )


def all_faces(image: np.ndarray, size: int, min_score: float = 0.0) -> list[FaceFrame]:
    """Frames of every face the detector finds anywhere in a photo without a hole (e.g. to edit
    the expression of a face no hole touches). A large photo is searched at
    :data:`QUICK_MAX_SIDE` px first, then, when that finds nothing, at full resolution."""
    h, w = image.shape[:2]
    whole = (0, 0, w, h)
    boxes = []
    if max(h, w) > QUICK_MAX_SIDE:
        boxes = _detect_in_region(image, whole, 0, min_score, max_side=QUICK_MAX_SIDE)
    if not boxes:
        boxes = _detect_in_region(image, whole, 0, min_score)
    hole = np.zeros((h, w), np.uint8)
    return [detected_frame(image, hole, box, "detected", size) for box in boxes]


def _without_remnants(rest: np.ndarray, boxes: list) -> np.ndarray:
    """``rest`` without its remnants: parts narrower than a quarter of the smallest face found,
    or with fewer pixels than REMNANT_AREA of its box. The edges of a stroke or scratch that reach
    past a face's box (its crop holds most of them; the rest is left to OpenCV) are not worth a
    search (the CNN pass costs ~1 s); a hidden neighbour's mouth or eyes are."""
    if not boxes:
        return rest
    least = min(max(b[2] - b[0], b[3] - b[1]) for b, _ in boxes)
    n, labels, stats, (x, y) = _components(rest)
    small = [
        i
        for i in range(1, n)
        if max(stats[i, 2], stats[i, 3]) < 0.25 * least or stats[i, 4] < REMNANT_AREA * least**2
    ]
    if not small:
        return rest
    out = rest.astype(np.uint8)  # a copy
    cut = out[y : y + labels.shape[0], x : x + labels.shape[1]]
    cut[np.isin(labels, small)] = 0
    return out


def _unheld(hole: np.ndarray, boxes: list) -> np.ndarray:
    """The hole's pixels that no face box (grown as in :func:`_holds_hole`) holds (uint8)."""
    rest = hole.astype(np.uint8).copy()
    for box, _ in boxes:
        l, t, r, b = _grown(box, hole.shape, 0.2)
        rest[t:b, l:r] = 0
    return rest


def search_region(
    filled: np.ndarray,
    rest: np.ndarray,
    region: tuple[int, int, int, int],
    weak: list,
    seen: list,
    min_score: float,
    weakest: float,
) -> list[tuple[tuple[float, float, float, float, float], str]]:
    """The faces touching ``rest`` (the hole not yet held by a face) in ``region``, by the first
    detector that finds one (module docstring, paths 1-4). Faces found that do not touch it are
    added to ``seen``, weak HOG boxes to ``weak``."""
    h, w = rest.shape
    found: list[tuple[tuple[float, float, float, float, float], str]] = []
    rw, rh = region[2] - region[0], region[3] - region[1]
    if max(rw, rh) * 2 < max(h, w):  # smaller than the photo: look closer
        near = _detect_in_region(filled, region, 0, weakest)
        weak += [b for b in near if b[4] < min_score]
        found = [(b, "detected") for b in near if b[4] >= min_score]
    # upsampling finds faces under HOG's 80 px; a region that large holds a larger face (and
    # upsampling it costs ~1 s)
    if not any(_touches(b, rest) for b, _ in found) and max(rw, rh) <= UPSAMPLE_MAX_SIDE:
        found = [(b, "detected-upsampled") for b in _detect_in_region(filled, region, 1, max(min_score, 0.3))]
    _note_seen(seen, found, rest)
    if not any(_touches(b, rest) for b, _ in found):
        found = _confirm_weak(filled, rest, weak, region)
    if not any(_touches(b, rest) for b, _ in found):
        found = [(b, "detected-cnn") for b in _detect_in_region(filled, region, 0, min_score, cnn=True)]
    if (
        not any(_touches(b, rest) for b, _ in found)
        and max(rw, rh) > UPSAMPLE_MAX_SIDE
        and rw * rh <= UPSAMPLE_MAX_AREA
    ):
        # nothing found in a photo small enough to be all region: it may be a group photo of
        # faces too small for the passes so far, and only its faces tell a face that the hole
        # hides from background (see _hidden_in_group)
        found = [(b, "detected-upsampled") for b in _detect_in_region(filled, region, 1, max(min_score, 0.3))]
        _note_seen(seen, found, rest)
    return [(b, p) for b, p in found if _touches(b, rest)]


def _note_seen(seen: list, found: list, rest: np.ndarray) -> None:
    """Add the faces of ``found`` that do not touch ``rest`` to ``seen`` (once each)."""
    seen += [b for b, _ in found if not _touches(b, rest) and all(_overlap(b, other) < 0.3 for other in seen)]


def _hidden_in_group(rest: np.ndarray, faces: list, size: int, held: np.ndarray) -> list[FaceFrame]:
    """Frames for the parts of ``rest`` (hole that no face holds) that hide a face in a group
    photo: a part lying in a row of at least ROW_MIN_FACES detected ``faces`` (centre within
    ROW_TOLERANCE of a face's side from their height) whose size fits theirs (a hole of 0.25 to 2
    face sides, at least 0.2 of one wide, with a tenth of a face box's pixels), and not on one
    of them nor running on from the ``held`` hole pixels (a stroke over a found face that goes
    on past it is that face's hole, not another face's). The frame is a face crop of their median
    size around the part; the landmark pass then finds the face in it. Other parts are background."""
    frames = []
    for left, top, right, bottom in hole_regions(rest, grow=0.25, min_side=8):
        part = rest[top:bottom, left:right]
        ys, xs = np.nonzero(part)
        if len(xs) == 0:
            continue
        x0, x1, y0, y1 = left + xs.min(), left + xs.max() + 1, top + ys.min(), top + ys.max() + 1
        l, t = max(0, left - 2), max(0, top - 2)
        near = cv2.dilate(rest[t : bottom + 2, l : right + 2], np.ones((5, 5), np.uint8))
        if (near.astype(bool) & held[t : bottom + 2, l : right + 2]).any():
            continue
        cx, cy, extent = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
        width, pixels = min(x1 - x0, y1 - y0), len(xs)
        sides = []
        for f in faces:
            side = max(f[2] - f[0], f[3] - f[1])
            fx, fy = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2
            # a hole that hides a face from every detector is a blob that covers a good part of
            # one (a brush dab), not a scratch
            if (
                abs(cy - fy) <= ROW_TOLERANCE * side
                and abs(cx - fx) >= 0.75 * side
                and 0.25 * side <= extent <= 2.0 * side
                and width >= 0.2 * side
                and pixels >= 0.1 * side**2
            ):
                sides.append(side)
        if len(sides) < ROW_MIN_FACES:
            continue
        side = float(np.median(sides))
        guess = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        if any(_shared(guess, f) > 0.2 for f in faces):
            continue  # a detected face is there: this part lies on it, not on a hidden one
        # the canonical crop spans about 1.6 face-box sides; it must also hold the whole part
        crop_side = max(CROP_PER_BOX * side, 1.2 * extent)
        scale = size / crop_side
        matrix = np.array(
            [
                [scale, 0, size / 2 - cx * scale - 0.5 + 0.5 * scale],
                [0, scale, size / 2 - cy * scale - 0.5 + 0.5 * scale],
            ]
        )
        frames.append(
            FaceFrame(
                matrix,
                size,
                "hole-surroundings",
                guess,
                None,
                [
                    f"no face found on this part of the hole; taken as a face the size of the "
                    f"{len(sides)} face(s) in its row"
                ],
            )
        )
    return frames


def _inside(box, region) -> bool:
    """Does the face box overlap the region?"""
    return box[0] < region[2] and region[0] < box[2] and box[1] < region[3] and region[1] < box[3]


def surroundings_frame(hole: np.ndarray, region: tuple[int, int, int, int], size: int) -> FaceFrame:
    """Treat the square around a part of the hole as the face crop (no face was found)."""
    sub = hole[region[1] : region[3], region[0] : region[2]]
    ys, xs = np.nonzero(sub)
    cx = region[0] + (xs.min() + xs.max()) / 2
    cy = region[1] + (ys.min() + ys.max()) / 2
    side = 1.6 * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1, 16)
    scale = size / side
    matrix = np.array(
        [
            [scale, 0, size / 2 - cx * scale - 0.5 + 0.5 * scale],
            [0, scale, size / 2 - cy * scale - 0.5 + 0.5 * scale],
        ]
    )
    box = (float(cx - side / 2), float(cy - side / 2), float(cx + side / 2), float(cy + side / 2))
    return FaceFrame(
        matrix,
        size,
        "hole-surroundings",
        box,
        None,
        ["no face found near this part of the hole; its surroundings were used"],
    )
