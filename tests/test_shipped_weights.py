"""The weights that ship inside the package: they load, they are small, and they inpaint.

The quality checks use the built-in example face (scikit-image's astronaut) with synthetic holes:
in every case the generated hole must be closer to the true pixels than a flat fill with the
mean colour of the known pixels. A broken or random generator fails this; it is no golden number.
"""

from __future__ import annotations

import numpy as np
import pytest

from lafin.examples import example_face, example_mask
from lafin.masks import block_mask, center_block_mask, irregular_mask
from lafin.pipeline import LaFInModel, default_weights_path

pytestmark = pytest.mark.skipif(
    not default_weights_path().is_file(), reason=f"no shipped weights at {default_weights_path()}"
)


@pytest.fixture(scope="module")
def model() -> LaFInModel:
    return LaFInModel()


def _cases(size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "nose and mouth": example_mask(size),
        "centre block": center_block_mask(size),
        "irregular 30-40%": irregular_mask(size, rng, (0.3, 0.4)),
        "irregular 50-60%": irregular_mask(size, rng, (0.5, 0.6)),
        "random block": block_mask(size, rng, (0.2, 0.3)),
    }


def test_shipped_weights_load_and_are_small(model):
    from lafin.config import get_preset

    # the shipped file's config is a named preset, field for field
    assert model.config == get_preset(model.config.name) == get_preset("compact-wider")
    assert model.image_size == 128 and model.output_size == 256
    assert model.generator is not None and model.landmark_predictor is not None
    assert default_weights_path().stat().st_size < 25 * 2**20


@pytest.mark.parametrize("case", list(_cases(128)))
def test_hole_is_closer_to_the_truth_than_a_flat_fill(model, case):
    face = example_face(model.image_size)
    hole = _cases(model.image_size)[case].astype(bool)
    result = model.inpaint(face, hole)
    truth = face[hole].astype(np.float64)
    flat = face[~hole].mean(axis=0)
    model_error = np.abs(result[hole] - truth).mean()
    flat_error = np.abs(flat - truth).mean()
    assert np.array_equal(result[~hole], face[~hole])
    assert model_error < 0.8 * flat_error, (case, model_error, flat_error)


def test_landmarks_of_the_example_sit_on_the_face(model):
    """Eyes above the nose above the mouth, inside the crop, on the unoccluded example."""
    face = example_face(model.image_size)
    points = model.predict_landmarks(face)
    assert points.shape == (68, 2)
    assert np.all((points > 0) & (points < model.image_size))
    eyes_y = points[36:48, 1].mean()
    nose_y = points[30, 1]
    mouth_y = points[48:68, 1].mean()
    assert eyes_y < nose_y < mouth_y
    assert points[36:42, 0].mean() < points[42:48, 0].mean()  # image-left eye is the person's right


# The shipped file's PSNR (dB) on the built-in example (nose and mouth hidden, crop mode), pinned
# when the file was shipped: a change of the weights or of the pipeline that costs half a decibel
# here fails (a gain is welcome: update the pinned value with the new file). The generator
# trained for realism (2026-12-06) gave up 0.6 dB here for sharper, more faithful faces; its
# widened successor without the hole L1 (compact-wider) gained 0.3 dB back; its style-term
# continuation gave 0.55 dB of it up again for about 1.5 times the detail in the hole; 4,000
# steps more of it and a refiner with a deep perceptual term (2026-12-07) gained 0.3 dB, that
# refiner 1,250 steps further 0.06-0.07 dB, 1,500 steps more 0.04 dB, 1,500 more 0.03 dB; the
# edge colour match on narrow means (no step at the hole's edge) 0.05-0.11 dB.
EXPECTED_EXAMPLE_PSNR = {128: 27.92, 256: 27.86}


@pytest.mark.parametrize("size", sorted(EXPECTED_EXAMPLE_PSNR))
def test_shipped_weights_keep_their_quality_on_the_example(model, size):
    from lafin.evaluation.metrics import psnr

    face, hole = example_face(size), example_mask(size).astype(bool)
    result = model.inpaint(face, hole, mode="crop")
    assert np.array_equal(result[~hole], face[~hole])
    assert psnr(result, face) > EXPECTED_EXAMPLE_PSNR[size] - 0.5


def test_cli_refiner_noise_reaches_the_model(model, tmp_path, capsys):
    """``--refiner-noise 0`` gives the API's ``refiner_noise=0`` result: no refiner grain."""
    from PIL import Image

    from lafin.cli import main

    default, smooth = tmp_path / "default.png", tmp_path / "smooth.png"
    assert main(["inpaint", "--example", "-o", str(default), "-q"]) == 0
    assert main(["inpaint", "--example", "-o", str(smooth), "-q", "--refiner-noise", "0"]) == 0
    expected = model.with_options(refiner_noise=0)(example_face(), example_mask()).image
    assert np.array_equal(np.asarray(Image.open(smooth)), expected)
    assert not np.array_equal(np.asarray(Image.open(default)), expected)
    with pytest.raises(SystemExit) as info:  # argparse's exit: one usage line
        main(["inpaint", "--example", "-o", str(tmp_path / "x.png"), "--refiner-noise", "3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--refiner-noise" in err and "out of range" in err


@pytest.mark.parametrize("angle,scale,shift", [(20, 1.0, (10, -5)), (10, 1.1, (15, 12))])
def test_loose_crop_landmarks_are_predicted_again_on_the_aligned_face(model, angle, scale, shift):
    """A small, turned face in a 256-px crop: crop mode's first pass on the whole crop only
    aligns the face; the landmarks it reports and generates with come from a second pass on
    that aligned face, and are closer to the face's own."""
    import cv2

    from lafin.alignment import transform_points
    from lafin.crop_frame import CropFrame, is_loose
    from lafin.landmarks import nme
    from lafin.masks import part_mask

    face = example_face()  # 128 px, aligned
    own = model.predict_landmarks(face)
    matrix = cv2.getRotationMatrix2D((64, 64), angle, scale)
    matrix[:, 2] += (64 + shift[0], 64 + shift[1])
    loose = cv2.warpAffine(face, matrix, (256, 256), borderMode=cv2.BORDER_REFLECT)
    truth = transform_points(own, matrix)
    hole = part_mask(256, truth, "eyes")
    frame = CropFrame.around(loose.shape[:2], model.image_size)
    first_model = model.locator.locate(loose, hole, frame)
    assert is_loose(first_model, model.image_size)
    first = frame.to_input(first_model)
    again = model.predict_landmarks(loose, hole * 255)
    assert nme(again, truth) < 0.03 < nme(first, truth)
    np.testing.assert_allclose(model(loose, hole * 255, mode="crop").landmarks, again, atol=1e-3)


@pytest.mark.parametrize("seed", [0, 4])
def test_the_second_pass_is_kept_under_a_hole_spread_over_the_crop(model, seed):
    """Half of a loose crop hidden by free-form strokes, also over the background: the first
    pass misplaces the face; the second, on the face aligned by it, is kept although its crop
    leaves part of the hole out (that part gets OpenCV's fill)."""
    import cv2

    from lafin.alignment import transform_points
    from lafin.crop_frame import CropFrame
    from lafin.landmarks import nme
    from lafin.masks import irregular_mask

    face = example_face()
    own = model.predict_landmarks(face)
    matrix = cv2.getRotationMatrix2D((64, 64), 0, 1.2)
    matrix[:, 2] += (64, 70)
    loose = cv2.warpAffine(face, matrix, (256, 256), borderMode=cv2.BORDER_REFLECT)
    truth = transform_points(own, matrix)
    hole = irregular_mask(256, np.random.default_rng(seed), (0.45, 0.55))
    frame = CropFrame.around(loose.shape[:2], model.image_size)
    first = frame.to_input(model.locator.locate(loose, hole, frame))
    again = model.predict_landmarks(loose, hole)
    assert nme(again, truth) < 0.04 and nme(first, truth) > 0.06
