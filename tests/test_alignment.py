"""Resampling a face into the model's crop: the same geometry as cv2.warpAffine, without aliasing
when a large photo is shrunk, and without losing thin holes."""

import cv2
import numpy as np
import pytest

from lafin.alignment import (
    crop_source_box,
    offset_matrix,
    similarity_transform,
    transform_points,
    warp_to_crop,
)


def _matrix(scale: float, angle_deg: float, centre: tuple[float, float], size: int) -> np.ndarray:
    """Image -> crop matrix: rotate and scale about ``centre``, which lands on the crop's centre."""
    m = cv2.getRotationMatrix2D(centre, angle_deg, scale)
    m[:, 2] += np.array([(size - 1) / 2, (size - 1) / 2]) - np.array(centre)
    return m


@pytest.mark.parametrize("scale,angle", [(0.25, 0.0), (0.3, 17.0), (0.45, -30.0)])
def test_shrinking_warp_keeps_the_geometry(scale, angle):
    """A smooth image (where aliasing cannot matter) comes out as cv2.warpAffine puts it."""
    size = 64
    yy, xx = np.mgrid[0:600, 0:500].astype(np.float32)
    image = np.stack(
        [np.sin(xx / 40) * 100 + 128, np.cos(yy / 55) * 100 + 128, (xx + yy) / 1100 * 255], axis=-1
    ).astype(np.float32)
    m = _matrix(scale, angle, (260.0, 300.0), size)
    ours = warp_to_crop(image, m, size)
    reference = cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    assert ours.shape == (size, size, 3) and ours.dtype == np.float32
    # the area reduction averages a little; a misplaced frame would be off by tens of levels
    assert np.abs(ours - reference)[4:-4, 4:-4].mean() < 1.5


def test_shrinking_warp_does_not_alias_fine_detail():
    """A 1-px checkerboard shrunk 4x is flat grey; point sampling returns black and white."""
    size = 64
    board = ((np.indices((512, 512)).sum(0) % 2) * 255).astype(np.uint8)
    m = _matrix(0.26, 3.0, (255.5, 255.5), size)  # off the pixel grid, as a real face is
    ours = warp_to_crop(board, m, size)
    plain = cv2.warpAffine(board, m, (size, size), flags=cv2.INTER_LINEAR)
    assert plain.std() > 30  # the moire warpAffine shows (it ignores INTER_AREA)
    assert ours.std() < 3 and abs(float(ours.mean()) - 127.5) < 3


def test_thin_hole_in_a_large_photo_reaches_the_crop():
    """1-px scratches in a 2000-px photo: every one must appear in a 128-px crop of it."""
    size = 128
    hole = np.zeros((2000, 2000), np.float32)
    for x in range(300, 1700, 97):
        hole[300:1700, x] = 1  # vertical scratches, ~97 px apart: ~6 crop px apart
    m = _matrix(0.09, 0.0, (1000.0, 1000.0), size)
    ours = warp_to_crop(hole, m, size, border=cv2.BORDER_CONSTANT) > 0
    columns = ours[size // 2]
    expected = {round(transform_points(np.array([[x, 1000.0]]), m)[0, 0]) for x in range(300, 1700, 97)}
    found = {c for c in expected if columns[max(0, c - 1) : c + 2].any()}
    assert found == expected
    plain = cv2.warpAffine(hole, m, (size, size), flags=cv2.INTER_LINEAR) > 0
    assert plain[size // 2].sum() < len(expected)  # what point sampling loses


def test_enlarging_warp_is_warp_affine():
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)
    pts = np.array([[5.0, 5.0], [30.0, 8.0], [18.0, 33.0]])
    m = similarity_transform(pts, pts * 2.5 + 3)
    ours = warp_to_crop(image, m, 100, interpolation=cv2.INTER_CUBIC)
    reference = cv2.warpAffine(image, m, (100, 100), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("border", [cv2.BORDER_REFLECT_101, cv2.BORDER_CONSTANT])
@pytest.mark.parametrize("interpolation", [cv2.INTER_CUBIC, cv2.INTER_LINEAR])
def test_a_crop_warped_from_its_source_box_is_the_crop_of_the_whole_image(interpolation, border):
    """Cutting a photo to crop_source_box first gives the same crop (OpenCV's fixed-point
    rounding of the shifted translation may move a value by one level): crops inside the image,
    shrunk ones, rotated ones, and crops reaching past an edge, whose outside pixels reflect."""
    rng = np.random.default_rng(0)
    cut_smaller = 0
    for _ in range(120):
        h, w = (int(v) for v in rng.integers(40, 600, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        size = int(rng.choice([128, 256]))
        scale = float(np.exp(rng.uniform(np.log(0.1), np.log(4.0))))
        centre = (float(rng.uniform(-0.3 * w, 1.3 * w)), float(rng.uniform(-0.3 * h, 1.3 * h)))
        m = _matrix(scale, float(rng.uniform(-35, 35)), centre, size)
        whole = warp_to_crop(image, m, size, interpolation=interpolation, border=border)
        left, top, right, bottom = crop_source_box(image.shape, m, size)
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        cut = warp_to_crop(
            image[top:bottom, left:right],
            offset_matrix(m, left, top),
            size,
            interpolation=interpolation,
            border=border,
        )
        difference = np.abs(whole.astype(int) - cut)
        assert difference.max() <= 1
        assert (difference > 0).mean() < 0.01
        cut_smaller += (right - left) * (bottom - top) < h * w
    assert cut_smaller > 60  # the point of it: most crops read a part of the image


def test_source_box_of_a_small_face_in_a_large_photo_is_small():
    m = _matrix(1.5, 10.0, (1500.0, 900.0), 256)
    left, top, right, bottom = crop_source_box((2000, 3000, 3), m, 256)
    assert right - left < 260 and bottom - top < 260
    assert left < 1500 - 85 and right > 1500 + 85 and top < 900 - 85 and bottom > 900 + 85
