"""A soft photo's fill softened to the photo (lafin.blend.match_softness): the softness read off
the known pixels around the hole, a sharp photo left alone, known pixels never touched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import box_mask, face_like
from lafin.blend import SOFTNESS_FACTORS, match_softness, photo_softness, resample_soften


def _texture(size: int = 160, seed: int = 0) -> np.ndarray:
    """A sharp photo-like texture (HxWx3 uint8): noise at scales from 1 px to 8 px, the finer
    the fainter, as in a photo."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 128.0)
    for sigma, amplitude in ((0.0, 6), (1.0, 10), (2.0, 14), (4.0, 20), (8.0, 30)):
        noise = rng.normal(0, 1, image.shape)
        noise = cv2.GaussianBlur(noise, (0, 0), sigma) if sigma else noise
        image += amplitude * noise / noise.std()
    return np.clip(image, 0, 255).astype(np.uint8)


def _soft(image: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(np.round(resample_soften(image, factor)), 0, 255).astype(np.uint8)


def _hole(size: int = 160) -> np.ndarray:
    return box_mask(size, size, 0.35, 0.35, 0.65, 0.65)


def _energy(image: np.ndarray, region: np.ndarray) -> float:
    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[region].var())


def test_resample_soften_keeps_a_flat_image_and_factor_one_copies():
    flat = np.full((40, 50, 3), 90, np.uint8)
    assert np.allclose(resample_soften(flat, 2.5), 90, atol=1e-3)
    image = _texture(40)
    same = resample_soften(image, 1.0)
    assert same.dtype == np.float32 and np.array_equal(same, image.astype(np.float32))


def test_softness_is_one_for_a_sharp_photo_and_grows_with_how_soft_it_is():
    image, hole = _texture(), _hole()
    assert photo_softness(image, hole) == 1.0
    found = [photo_softness(_soft(image, f), hole) for f in (2.0, 3.0)]
    # never more than the truth (the fill is never softened beyond the photo), and ordered
    assert 1.0 < found[0] <= 2.0 and 2.0 <= found[1] <= 3.0, found
    assert found[0] < found[1]
    # a Gaussian blur (an out-of-focus scan) reads as soft too
    assert photo_softness(cv2.GaussianBlur(image, (0, 0), 1.5), hole) >= 2.0


def test_softness_is_one_when_there_is_nothing_to_judge():
    image = _texture()
    assert photo_softness(image, np.zeros((160, 160), np.uint8)) == 1.0  # no hole
    assert photo_softness(image, np.ones((160, 160), np.uint8)) == 1.0  # no known pixel
    assert photo_softness(np.full((160, 160, 3), 128, np.uint8), _hole()) == 1.0  # flat
    assert SOFTNESS_FACTORS == tuple(sorted(SOFTNESS_FACTORS))


def test_softness_is_judged_near_the_hole_only():
    """A sharp band far from the hole does not make a soft photo's surroundings sharp."""
    soft = _soft(_texture(), 3.0)
    soft[:, :12] = _texture()[:, :12]
    assert photo_softness(soft, _hole()) >= 2.5


def test_a_soft_photos_grainy_fill_is_softened_inside_the_hole_only():
    photo = _soft(_texture(seed=1), 3.0)
    hole = _hole().astype(bool)
    filled = photo.copy()
    filled[hole] = _texture(seed=2)[hole]  # a fill as sharp as a sharp photo's
    out, factor = match_softness(photo, filled, hole)
    assert factor > 1.5
    assert np.array_equal(out[~hole], photo[~hole])  # known pixels bit for bit
    inner = cv2.erode(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    # the fill's detail against what the photo would hold there (the same texture, as soft):
    # from over ten times it to within a few times it (SOFTNESS_SHARE leaves a little more)
    truth = _energy(_soft(_texture(seed=2), 3.0), inner)
    assert _energy(filled, inner) > 10 * truth
    assert truth < _energy(out, inner) < 4 * truth


def test_a_sharp_photos_fill_is_returned_as_it_is():
    photo = _texture(seed=3)
    hole = _hole()
    filled = photo.copy()
    filled[hole > 0] = _texture(seed=4)[hole > 0]
    out, factor = match_softness(photo, filled, hole)
    assert factor == 1.0 and out is filled


def test_the_pipeline_softens_a_soft_photos_fill_unless_told_not_to(tiny_model):
    """Crop mode on a soft crop: the option changes hole pixels only; off, the fill is the
    model's own (the same as a sharp run's treatment); a bad value is refused."""
    face = _soft(face_like(128, 128, seed=5), 3.0)
    hole = box_mask(128, 128)
    softened = tiny_model.inpaint(face, hole, mode="crop")
    raw = tiny_model.with_options(match_softness=False).inpaint(face, hole, mode="crop")
    assert np.array_equal(softened[hole == 0], face[hole == 0])
    assert np.array_equal(raw[hole == 0], face[hole == 0])
    expected, factor = match_softness(face, raw, hole)
    assert factor > 1 and np.array_equal(softened, expected)
    with pytest.raises(ValueError, match="match_softness"):
        tiny_model.with_options(match_softness="yes")


def test_cli_no_match_softness_reaches_the_model(tiny_weights, tmp_path):
    from PIL import Image

    from lafin.cli import main
    from lafin.pipeline import LaFInModel

    face = _soft(face_like(128, 128, seed=6), 3.0)
    image, mask = tmp_path / "face.png", tmp_path / "mask.png"
    Image.fromarray(face).save(image)
    Image.fromarray(box_mask(128, 128) * 255).save(mask)
    out = tmp_path / "out.png"
    argv = ["inpaint", str(image), str(mask), "-o", str(out), "--weights", str(tiny_weights), "-q"]
    assert main([*argv, "--mode", "crop", "--no-match-softness"]) == 0
    model = LaFInModel(weights=tiny_weights).with_options(match_softness=False)
    expected = model.inpaint(face, box_mask(128, 128), mode="crop")
    assert np.array_equal(np.asarray(Image.open(out)), expected)
