"""Photo mode on group photos: every face a hole touches is found however the hole's search
regions merge, a covered face in a row of faces is generated (not smeared as background), and the
parts of the hole that touch no face are reported one by one.

The photos are drawn (conftest.face_like faces) and dlib is replaced by stand-ins that read the
drawing: "HOG" finds a face whose eyes and mouth are visible, the "CNN" one whose eyes are."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import face_like
from lafin.alignment import CANONICAL_LANDMARKS
from lafin.face import FaceBox

EYE, MOUTH = np.array([40, 30, 30]), np.array([150, 60, 60])


def _blobs(image: np.ndarray, colour: np.ndarray, min_area: int) -> list[tuple[float, float, float]]:
    """(x, y, area) of the blobs of ``colour`` (the drawn eyes or mouths)."""
    near = (np.abs(image.astype(int) - colour).max(axis=2) < 30).astype(np.uint8)
    n, _, stats, centres = cv2.connectedComponentsWithStats(near)
    return [(centres[i][0], centres[i][1], stats[i, 4]) for i in range(1, n) if stats[i, 4] >= min_area]


def _drawn_faces(image: np.ndarray, need_mouth: bool, min_side: float) -> list[FaceBox]:
    """Faces as face_like draws them (square): two eyes 0.28 of the face's side apart at 0.4 of
    its height, each about 0.0077 of its area (and the mouth at 0.72 of its height)."""
    eyes = _blobs(image, EYE, 3)
    mouths = _blobs(image, MOUTH, 3)
    faces = []
    for i, (x1, y1, a1) in enumerate(eyes):
        for x2, y2, a2 in eyes[i + 1 :]:
            side = abs(x2 - x1) / 0.28
            expected = 0.0077 * side**2
            if (
                side < 12
                or abs(y2 - y1) > 0.05 * side
                or not all(0.4 * expected < a < 2.5 * expected for a in (a1, a2))
            ):
                continue
            cx, top = (x1 + x2) / 2, (y1 + y2) / 2 - 0.4 * side
            if need_mouth and not any(
                abs(mx - cx) < 0.1 * side and abs(my - top - 0.72 * side) < 0.1 * side for mx, my, _ in mouths
            ):
                continue
            if 0.7 * side < min_side:
                continue
            faces.append(
                FaceBox(cx - 0.35 * side, top + 0.05 * side, cx + 0.35 * side, top + 0.95 * side, 1.0)
            )
    return faces


@pytest.fixture
def drawn_detectors(monkeypatch):
    import lafin.face

    # like dlib's: HOG's window is 80 px (40 upsampled once); the CNN finds smaller faces
    monkeypatch.setattr(
        lafin.face,
        "detect_faces",
        lambda image, upsample=0, min_score=0.0: _drawn_faces(image, True, 80 / 2**upsample),
    )

    def cnn(image, upsample=0, max_side=640):
        scale = min(1.0, max_side / max(image.shape[:2]))
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return [
            FaceBox(f.left / scale, f.top / scale, f.right / scale, f.bottom / scale, 1.0)
            for f in _drawn_faces(small, False, 40)
        ]

    monkeypatch.setattr(lafin.face, "detect_faces_cnn", cnn)

    def annotate(image, box):  # the mean face's points in the box
        lo, hi = CANONICAL_LANDMARKS.min(axis=0), CANONICAL_LANDMARKS.max(axis=0)
        unit = (CANONICAL_LANDMARKS - lo) / (hi - lo)
        return (unit * [box.right - box.left, box.bottom - box.top] + [box.left, box.top]).astype(np.float32)

    monkeypatch.setattr(lafin.face, "annotate", annotate)


def _group(rows: int, cols: int, side: int, gap: int, seed: int = 0):
    """A photo of rows x cols drawn faces; returns it and each face's (left, top, right, bottom)."""
    h, w = rows * (side + gap) + gap, cols * (side + gap) + gap
    photo = np.full((h, w, 3), (90, 120, 100), np.uint8)
    boxes = []
    for r in range(rows):
        for c in range(cols):
            left, top = gap + c * (side + gap), gap + r * (side + gap)
            photo[top : top + side, left : left + side] = face_like(side, side, seed=seed + r * cols + c)
            boxes.append((left, top, left + side, top + side))
    return photo, boxes


def _mouth(box, part: float = 1.0) -> tuple[slice, slice]:
    """The hole over a face's mouth (``part`` < 1: only its left share of the mouth)."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    x0 = left + int(0.3 * w)
    return (slice(top + int(0.62 * h), top + int(0.82 * h)), slice(x0, x0 + int(part * 0.4 * w)))


def _centre_in(frame, box) -> bool:
    cx, cy = (frame.box[0] + frame.box[2]) / 2, (frame.box[1] + frame.box[3]) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def test_a_face_found_near_one_part_of_the_hole_does_not_hide_the_next_face(drawn_detectors):
    """Three faces side by side, two mouths hidden: the search regions of the two parts merge;
    the first face is found (part of its mouth shows), the second must be searched for too."""
    from lafin.photo import find_faces, hole_regions

    photo, boxes = _group(1, 3, 120, 60)
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[_mouth(boxes[0], part=0.25)] = 1  # a corner of the mouth: "HOG" still sees the face
    hole[_mouth(boxes[1])] = 1  # the whole mouth: only the "CNN" finds it
    assert len(hole_regions(hole, grow=2.0, min_side=384)) == 1  # the regions merge
    frames = find_faces(photo, hole, 64)
    assert len(frames) == 2
    assert _centre_in(frames[0], boxes[0]) and frames[0].path == "detected"
    assert _centre_in(frames[1], boxes[1]) and frames[1].path == "detected-cnn"


def test_both_hidden_faces_are_generated_and_no_hole_pixel_is_left(tiny_model, drawn_detectors):
    photo, boxes = _group(1, 3, 120, 60)
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[_mouth(boxes[0], part=0.25)] = 1
    hole[_mouth(boxes[1])] = 1
    result = tiny_model(photo, hole, mode="photo")
    assert len(result.faces) == 2 and result.background_pixels == 0
    assert result.background_regions == []
    assert sum(f.hole_pixels for f in result.faces) == hole.sum()
    assert np.array_equal(result.image[hole == 0], photo[hole == 0])


def test_covered_face_in_a_group_is_generated_and_a_background_hole_is_not(tiny_model, drawn_detectors):
    """15 small faces; a brush dab hides the middle face's eyes and mouth, so no detector finds
    it: lying in the row of the other faces, it is generated in a crop of their size (not the
    neighbours' faces). A hole on the backdrop below the rows stays background, reported."""
    from lafin.photo import find_faces

    photo, boxes = _group(3, 5, 60, 90)  # 840 px wide: all one region, faces too small for
    # HOG until it is upsampled, and for the CNN at the region's scale
    photo = np.pad(photo, ((0, 120), (0, 0), (0, 0)), mode="edge")  # backdrop below the rows
    hidden = boxes[7]
    hole = np.zeros(photo.shape[:2], np.uint8)
    cx, cy = (hidden[0] + hidden[2]) // 2, (hidden[1] + hidden[3]) // 2 + 8
    cv2.ellipse(hole, (cx, cy), (36, 30), 0, 0, 360, 1, -1)  # eyes and mouth
    background = (slice(photo.shape[0] - 70, photo.shape[0] - 40), slice(100, 160))
    hole[background] = 1
    frames = find_faces(photo, hole, 64)
    assert [f.path for f in frames] == ["hole-surroundings"]
    assert _centre_in(frames[0], hidden)
    left, top, right, bottom = frames[0].box
    assert 0.7 * 60 < right - left < 1.4 * 60  # the neighbours' size, not the dab's
    for other in boxes[:7] + boxes[8:]:
        assert not _centre_in(frames[0], other)

    result = tiny_model(photo, hole, mode="photo")
    assert [f.path for f in result.faces] == ["hole-surroundings"]
    assert result.faces[0].hole_pixels == hole.sum() - 30 * 60
    assert result.background_pixels == 30 * 60
    [part] = result.background_regions
    assert part.box == (100, photo.shape[0] - 70, 160, photo.shape[0] - 40)
    assert part.pixels == 30 * 60


def test_faceless_parts_are_reported_one_by_one(tiny_model, drawn_detectors):
    photo, boxes = _group(1, 2, 80, 40)
    photo = np.pad(photo, ((0, 300), (0, 200), (0, 0)), mode="edge")
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[_mouth(boxes[0])] = 1
    hole[250:270, 30:70] = 1
    hole[300:330, 250:290] = 1
    result = tiny_model(photo, hole, mode="photo")
    assert len(result.faces) == 1 and result.faces[0].path.startswith("detected")
    assert sorted((r.box, r.pixels) for r in result.background_regions) == [
        ((30, 250, 70, 270), 800),
        ((250, 300, 290, 330), 1200),
    ]
    assert result.background_pixels == 2000


def test_cli_reports_each_faceless_part(tiny_weights, drawn_detectors, tmp_path, capsys):
    from PIL import Image

    from lafin.cli import main

    photo, boxes = _group(1, 2, 80, 40)
    photo = np.pad(photo, ((0, 300), (0, 200), (0, 0)), mode="edge")
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[_mouth(boxes[0])] = 1
    hole[250:270, 30:70] = 1
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(hole * 255).save(tmp_path / "hole.png")
    code = main(
        [
            "inpaint",
            str(tmp_path / "photo.png"),
            str(tmp_path / "hole.png"),
            "-o",
            str(tmp_path / "out.png"),
            "--weights",
            str(tiny_weights),
            "--mode",
            "photo",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "no face at (30, 250)-(70, 270): 800 hole pixels filled by OpenCV" in printed


def test_a_faceless_hole_beside_a_single_face_stays_background(drawn_detectors):
    """Beside one face, a hole at its height is as likely a wall as a head: no face is made up
    there; with two faces in the row it is taken as a hidden face."""
    from lafin.photo import find_faces

    for faces, expected in ((2, []), (3, ["hole-surroundings"])):
        photo, boxes = _group(1, faces, 60, 90)
        hidden = boxes[-1]
        hole = np.zeros(photo.shape[:2], np.uint8)
        cx, cy = (hidden[0] + hidden[2]) // 2, (hidden[1] + hidden[3]) // 2 + 8
        cv2.ellipse(hole, (cx, cy), (36, 30), 0, 0, 360, 1, -1)
        assert [f.path for f in find_faces(photo, hole, 64)] == expected, faces


def test_stroke_edges_past_a_found_face_are_not_searched(drawn_detectors, monkeypatch):
    """A stroke over a face's mouth that reaches a little past its box: the face is found, and
    the thin remnant beyond the box is not searched for another face (a CNN pass costs ~1 s)."""
    import lafin.photo

    photo, boxes = _group(1, 1, 120, 200)
    hole = np.zeros(photo.shape[:2], np.uint8)
    left, top, right, bottom = boxes[0]
    hole[top + 86 : top + 90, left + 40 : right + 40] = 1  # through the mouth, 40 px past the face
    searches = []
    original = lafin.photo.search_region
    monkeypatch.setattr(
        lafin.photo, "search_region", lambda *a, **k: searches.append(a[2]) or original(*a, **k)
    )
    frames = lafin.photo.find_faces(photo, hole, 64)
    assert [f.path for f in frames] == ["detected"] and searches == []


def test_a_scratch_past_a_face_in_a_row_is_not_taken_for_a_hidden_face(drawn_detectors):
    """In a row of faces, a scratch through one face's mouth reaches past its box at the row's
    height: the face is found and the scratch's end is not made a face of its own."""
    from lafin.photo import find_faces

    photo, boxes = _group(1, 4, 60, 90)
    left, top, right, bottom = boxes[1]
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[top + 43 : top + 47, left + 20 : right + 45] = 1  # the mouth, then 45 px of backdrop
    frames = find_faces(photo, hole, 64)
    assert [f.path for f in frames] == ["detected-upsampled"]


def test_a_thick_stroke_running_on_from_a_face_in_a_row_is_background(drawn_detectors):
    """A broad stroke over one face's chin that runs on into the gap beside it: the face is
    found, and the rest of the stroke is that face's hole running on, not a hidden face."""
    from lafin.photo import find_faces

    photo, boxes = _group(1, 4, 60, 90)
    left, top, right, bottom = boxes[1]
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[top + 46 : top + 60, left + 15 : right + 70] = 1  # 14 px thick, 70 px past the face
    assert [f.path for f in find_faces(photo, hole, 64)] == ["detected-upsampled"]
