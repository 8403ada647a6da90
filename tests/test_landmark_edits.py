"""``lafin.landmarks.edit_expression``: each expression moves only its point groups, in the
face's own frame (the web demo's expression buttons are these: tests/test_webapp.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lafin.alignment import CANONICAL_LANDMARKS
from lafin.landmarks import EXPRESSION_NAMES, edit_expression

MOUTH_AND_JAW = {48, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 4, 5, 6, 7, 8, 9, 10, 11, 12}
LOWER_LIDS, UPPER_LIDS = {40, 41, 46, 47}, {37, 38, 43, 44}
MOVED = {
    "open mouth": MOUTH_AND_JAW,
    "close mouth": MOUTH_AND_JAW,
    "smile": {48, 54, 60, 64, 49, 59, 53, 55, 61, 67, 63, 65} | LOWER_LIDS,
    "raise eyebrows": set(range(17, 27)) | UPPER_LIDS,
    "frown": set(range(17, 27)),
    "close eyes": UPPER_LIDS | LOWER_LIDS,
    "widen eyes": UPPER_LIDS | LOWER_LIDS,
}


def face(size: float = 128.0) -> np.ndarray:
    return CANONICAL_LANDMARKS.astype(np.float64) * size


def _opened() -> np.ndarray:
    return edit_expression(face(), "open mouth").astype(np.float64)


def _moved(before: np.ndarray, after: np.ndarray) -> set[int]:
    return {int(i) for i in np.nonzero(np.linalg.norm(after - before, axis=1) > 1e-4)[0]}


@pytest.mark.parametrize("name", EXPRESSION_NAMES)
def test_each_expression_moves_only_its_points(name):
    start = _opened() if name == "close mouth" else face()
    assert _moved(start, edit_expression(start, name)) == MOVED[name]
    np.testing.assert_allclose(edit_expression(start, name, 0.0), start, atol=1e-4)


def test_the_moves_go_the_intended_way():
    p = face()
    iod = np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0))
    gap = lambda q: q[[65, 66, 67], 1].mean() - q[[61, 62, 63], 1].mean()  # noqa: E731
    opened = edit_expression(p, "open mouth")
    assert gap(opened) > gap(p) + 0.25 * iod and opened[8, 1] > p[8, 1] + 0.25 * iod
    closed = edit_expression(opened, "close mouth")
    assert abs(gap(closed)) < 1e-3 * iod
    half = edit_expression(opened, "close mouth", 0.5)
    assert gap(half) == pytest.approx(gap(opened) / 2, rel=1e-3)
    np.testing.assert_allclose(edit_expression(closed, "close mouth"), closed, atol=1e-4)  # stays shut
    smile = edit_expression(p, "smile")
    assert smile[48, 0] < p[48, 0] and smile[54, 0] > p[54, 0]  # corners outwards
    assert smile[48, 1] < p[48, 1] and smile[54, 1] < p[54, 1]  # and up
    brows = edit_expression(p, "raise eyebrows")
    assert (brows[17:27, 1] < p[17:27, 1]).all()
    frown = edit_expression(p, "frown")
    assert (frown[17:27, 1] > p[17:27, 1]).all()
    assert frown[22, 0] - frown[21, 0] < p[22, 0] - p[21, 0]  # inner ends knit
    closed = edit_expression(p, "close eyes")
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        np.testing.assert_allclose(closed[upper], closed[lower], atol=1e-4)
    wide = edit_expression(p, "widen eyes")
    assert (wide[[37, 38, 43, 44], 1] < p[[37, 38, 43, 44], 1]).all()
    assert (wide[[40, 41, 46, 47], 1] > p[[40, 41, 46, 47], 1]).all()
    assert edit_expression(p, "smile", 2.0)[54, 0] - p[54, 0] == pytest.approx(
        2 * (smile[54, 0] - p[54, 0]), rel=1e-5
    )


@pytest.mark.parametrize("name", EXPRESSION_NAMES)
def test_expressions_follow_a_rotated_scaled_face(name):
    angle = np.deg2rad(-25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    start = _opened() if name == "close mouth" else face()
    turned = (start - 64) @ rot.T * 1.7 + [200, 90]
    expected = (edit_expression(start, name).astype(np.float64) - 64) @ rot.T * 1.7 + [200, 90]
    np.testing.assert_allclose(edit_expression(turned, name), expected, atol=1e-3)


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="unknown expression"):
        edit_expression(face(), "wink")
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        edit_expression(face()[:60], "smile")
    with pytest.raises(ValueError, match="degenerate"):
        edit_expression(np.zeros((68, 2)), "smile")


def test_edit_region_is_the_grown_box_over_the_moved_points():
    from lafin.landmarks import edit_region

    before = face()
    after = before.copy()
    after[57] += (0.0, 20.0)  # one point, 20 px down
    (x, y) = before[57]
    region = edit_region(before, after, (128, 100))
    # a zero-width box: grown by at least 4% of the width / height, clipped to the image
    top, bottom = int(np.floor(y - 0.04 * 128)), int(np.ceil(y + 20 + 0.25 * 20))
    left, right = int(np.floor(x - 0.04 * 100)), int(np.ceil(x + 0.04 * 100))
    expected = np.zeros((128, 100), bool)
    expected[top:bottom, left:right] = True
    assert region.shape == (128, 100) and (region == expected).all()
    # an edit covers all its moved points, old and new places
    opened = edit_expression(before, "open mouth")
    region = edit_region(before, opened, (160, 160))  # the opened jaw reaches below 128 px
    for p in np.concatenate([before, opened])[list(MOUTH_AND_JAW) + [i + 68 for i in MOUTH_AND_JAW]]:
        assert region[int(p[1]), int(p[0])]
    assert not region[int(before[36, 1]), int(before[36, 0])]  # the eyes stay known
    assert not edit_region(before, before + 0.3, (128, 128)).any()  # nothing moved
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        edit_region(before[:60], after[:60], (128, 128))


def test_edit_region_least_growth_in_pixels():
    """``min_margin_px`` replaces the image-relative least growth (a small face in a large
    photo); without it the box is the one training draws."""
    from lafin.landmarks import edit_region

    before = face()
    after = before.copy()
    after[57] += (0.0, 20.0)
    (x, y) = before[57]
    region = edit_region(before, after, (128, 100), min_margin_px=3.0)
    expected = np.zeros((128, 100), bool)
    # 5 px up and down (a quarter of the box's height), 3 px left and right (the least growth)
    top, bottom = int(np.floor(y - 0.25 * 20)), int(np.ceil(y + 20 + 0.25 * 20))
    expected[top:bottom, int(np.floor(x - 3.0)) : int(np.ceil(x + 3.0))] = True
    assert (region == expected).all()
    assert region.sum() < edit_region(before, after, (128, 100)).sum()
    with pytest.raises(ValueError, match="min_margin_px"):
        edit_region(before, after, (128, 100), min_margin_px=-1.0)


def test_mask_with_edit_joins_the_products_edit_hole_to_the_hole():
    """The benchmarks measure edits on the hole the product makes for them (CLI, web demo)."""
    from lafin.edit_hole import hole_over_edit
    from lafin.evaluation.realism import mask_with_edit

    before = face()
    opened = edit_expression(before, "open mouth")
    mask = np.zeros((128, 128), np.uint8)
    mask[10:30, 10:40] = 1
    joined = mask_with_edit(mask, before, opened)
    assert joined.dtype == np.uint8 and set(np.unique(joined)) == {0, 255}
    assert ((joined > 0) == (hole_over_edit(mask, before, opened) > 0)).all()
    assert (joined[mask > 0] > 0).all() and (joined > 0).sum() > (mask > 0).sum()
    # the open mouth's points lie in the joined hole
    mouth = np.round(opened[48:68]).astype(int)
    assert (joined[mouth[:, 1], mouth[:, 0]] > 0).all()
    with pytest.raises(ValueError, match="HxW"):
        mask_with_edit(np.zeros((128, 128, 3)), before, opened)


def test_hole_over_edit_refuses_a_mask_that_is_not_hxw():
    from lafin.edit_hole import hole_over_edit

    with pytest.raises(ValueError, match="HxW"):
        hole_over_edit(np.zeros((128, 128, 3)), face(), edit_expression(face(), "smile"))


def test_the_grown_hole_stays_in_the_face_crop():
    """A face exactly in the canonical frame of an 80-px square at (10, 20) of a 120x150 image:
    its footprint is that square, and an open mouth's box (which reaches below the chin) is cut
    at its edge."""
    from lafin.edit_hole import face_footprint, hole_over_edit
    from lafin.landmarks import edit_region

    points = face(80.0) + (10.0, 20.0)
    footprint = face_footprint(points, (150, 120))
    square = np.zeros((150, 120), bool)
    square[20:100, 10:90] = True
    assert (footprint != square).sum() <= 2 * 80  # up to one row or column of rounding
    opened = edit_expression(points, "open mouth", 1.5)
    box = edit_region(points, opened, (150, 120), min_margin_px=0.04 * 80)
    assert box[101:].any()  # the box alone reaches below the crop
    grown = hole_over_edit(np.zeros((150, 120), np.uint8), points, opened) > 0
    assert grown.any() and (grown <= (box & footprint)).all() and not grown[101:].any()


@pytest.mark.parametrize("name", ["smile", "raise eyebrows"])
def test_the_grown_hole_leaves_eyes_whose_lids_barely_move(name):
    """A smile narrows the lower eyelids by under 1% of the face, raised eyebrows lift the upper
    ones: the eyes stay out of the grown hole (their pixels, glasses, gaze stay the user's),
    while training's box and the benchmarks' (edit_region, every moved point) hold them."""
    from lafin.edit_hole import hole_over_edit
    from lafin.landmarks import edit_region

    points = face(256.0)
    edited = edit_expression(points, name)
    grown = hole_over_edit(np.zeros((256, 256), np.uint8), points, edited) > 0
    eyes = np.round(points[36:48]).astype(int)
    assert grown.any() and not grown[eyes[:, 1], eyes[:, 0]].any()
    assert edit_region(points, edited, (256, 256))[eyes[:, 1], eyes[:, 0]].all()
    widened = edit_expression(points, "widen eyes")  # the upper lids move by 1.9%: the eyes count
    assert (hole_over_edit(np.zeros((256, 256), np.uint8), points, widened) > 0)[eyes[:, 1], eyes[:, 0]].all()
