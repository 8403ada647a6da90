"""Crop mode's non-face warning: the mirror signal, the decision, and how the warning reaches the
result, the log, the CLI and the web demo (tiny random-weight models, no data sets)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

import lafin.face_check as face_check
from conftest import box_mask, face_like
from lafin.alignment import canonical_landmarks
from lafin.errors import OptionError
from lafin.landmark_locator import LandmarkLocator
from lafin.landmarks import flip_landmarks
from lafin.options import InferenceOptions
from lafin.runtime import Runtime

L = 64


class FixedPredictor(torch.nn.Module):
    """Predicts the same points for every crop, its mirror image too: (68, 2) pixels of an L crop."""

    def __init__(self, points: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("points", torch.from_numpy(np.asarray(points, np.float32) / L).reshape(1, -1))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.points.expand(x.shape[0], -1)


def symmetric_shape() -> np.ndarray:
    """A mirror-symmetric face shape in an L crop: the canonical one averaged with its mirror."""
    shape = canonical_landmarks(L).astype(np.float64)
    return (shape + flip_landmarks(shape, L)) / 2


def locator(points: np.ndarray, flip_average: bool = True) -> LandmarkLocator:
    return LandmarkLocator(FixedPredictor(points), L, L, Runtime("cpu"), flip_average)


@pytest.mark.parametrize("flip_average", [True, False])
def test_mirror_disagreement_measures_how_far_the_mirror_pass_lands(flip_average):
    shape = symmetric_shape()
    eyes = float(np.linalg.norm(shape[36] - shape[45]))
    crops = torch.rand(2, 3, L, L)
    # a symmetric shape agrees with itself mirrored; shifted by d px, the mirror pass lands 2d away
    _, agree = locator(shape, flip_average).predict_with_mirror_check(crops)
    np.testing.assert_allclose(agree, 0, atol=1e-4)
    shifted = shape + [3.0, 0.0]
    loc = locator(shifted, flip_average)
    points, disagree = loc.predict_with_mirror_check(crops)
    np.testing.assert_allclose(disagree, [6.0 / eyes] * 2, rtol=1e-4)
    # the check does not change the landmarks: the flip average of +3 and -3 px is the shape
    np.testing.assert_allclose(points, loc.predict(crops), atol=1e-5)
    np.testing.assert_allclose(points[0], shape if flip_average else shifted, atol=1e-3)


def test_mirror_pass_runs_for_the_check_only_when_flip_averaging_is_off():
    loc = locator(symmetric_shape(), flip_average=False)
    crops = torch.rand(1, 3, L, L)
    loc.predict(crops)
    assert loc.predictor.calls == 1
    loc.predict_with_mirror_check(crops)
    assert loc.predictor.calls == 3


def test_the_middle_hidden_share_of_a_hole():
    hole = np.zeros((100, 100), np.uint8)
    hole[25:75, 25:50] = 1  # half of the central half
    assert face_check.centre_hidden(hole) == pytest.approx(0.5)
    assert face_check.centre_hidden(np.zeros((40, 200), np.uint8)) == 0.0
    wide = np.ones((40, 200), np.uint8)  # padded to 200 x 200: the middle is 40 of 100 rows
    assert face_check.centre_hidden(wide) == pytest.approx(0.4)


def test_the_warning_needs_disagreement_a_visible_middle_and_no_detected_face(monkeypatch):
    image = face_like(96, 96)
    corner = box_mask(96, 96, 0.0, 0.0, 0.3, 0.3)
    middle = box_mask(96, 96, 0.2, 0.2, 0.8, 0.8)
    monkeypatch.setattr(face_check, "detector_sees_face", lambda img, hole: False)
    limit = face_check.MIRROR_DISAGREEMENT_LIMIT
    warned = face_check.crop_face_warnings(image, corner, 2 * limit, limit)
    assert len(warned) == 1 and "does not look like a face" in warned[0]
    assert face_check.crop_face_warnings(image, corner, limit, limit) == []  # not over it
    assert face_check.crop_face_warnings(image, middle, 2 * limit, limit) == []  # cannot tell
    assert face_check.crop_face_warnings(image, corner, 2 * limit, None) == []  # check off
    # the second view, asked only over the limit with the middle visible, can silence it
    asked = []
    second = lambda value: lambda: asked.append(value) or value
    assert face_check.crop_face_warnings(image, corner, 2 * limit, limit, second(limit / 2)) == []
    assert len(face_check.crop_face_warnings(image, corner, 2 * limit, limit, second(3 * limit))) == 1
    assert face_check.crop_face_warnings(image, corner, limit / 2, limit, second(3 * limit)) == []
    assert face_check.crop_face_warnings(image, middle, 2 * limit, limit, second(3 * limit)) == []
    assert asked == [limit / 2, 3 * limit]
    monkeypatch.setattr(face_check, "detector_sees_face", lambda img, hole: True)
    assert face_check.crop_face_warnings(image, corner, 2 * limit, limit) == []  # a face after all


def test_the_second_view_is_the_face_realigned_by_its_landmarks():
    shape = symmetric_shape()
    image = np.random.default_rng(0).integers(0, 256, (L, L, 3), dtype=np.uint8)
    hole = np.zeros((L, L), np.uint8)
    # a predictor that always finds the same symmetric face agrees with itself in any view
    assert locator(shape).aligned_mirror_check(image, hole, shape) == pytest.approx(0, abs=1e-4)
    shifted = locator(shape + [3.0, 0.0])
    assert shifted.aligned_mirror_check(image, hole, shape) > 0.05


def test_the_detector_sees_a_real_face_and_not_noise():
    from skimage import data

    face = np.ascontiguousarray(data.astronaut()[0:256, 100:356])
    hole = np.zeros(face.shape[:2], np.uint8)
    assert face_check.detector_sees_face(face, hole)
    noise = np.random.default_rng(0).integers(0, 256, face.shape, dtype=np.uint8)
    assert not face_check.detector_sees_face(noise, hole)


def test_face_check_limit_is_a_checked_option(tiny_model):
    assert InferenceOptions().face_check_limit == face_check.MIRROR_DISAGREEMENT_LIMIT
    for bad in (0, -0.1, "0.1", True, float("nan")):
        with pytest.raises(OptionError, match="face_check_limit"):
            InferenceOptions(face_check_limit=bad)
    assert tiny_model.with_options(face_check_limit=None).options.face_check_limit is None


@pytest.fixture
def disagreeing(monkeypatch):
    """Every crop disagrees with its mirror (far over the limit), and no face is detected."""
    monkeypatch.setattr(face_check, "mirror_disagreement", lambda a, b: np.full(len(a), 0.5))
    monkeypatch.setattr(face_check, "detector_sees_face", lambda img, hole: False)


def test_crop_mode_warns_fills_anyway_and_the_check_can_be_off(tiny_model, disagreeing, caplog):
    image, hole = face_like(96, 80), box_mask(96, 80, 0.05, 0.05, 0.25, 0.3)
    with caplog.at_level(logging.WARNING, logger="lafin.face_check"):
        result = tiny_model(image, hole, mode="crop")
    assert len(result.warnings) == 1 and "50.0%" in result.warnings[0]
    assert [r.getMessage() for r in caplog.records if r.name == "lafin.face_check"] == result.warnings
    assert not np.array_equal(result.image[hole == 1], image[hole == 1])  # filled all the same
    assert np.array_equal(result.image[hole == 0], image[hole == 0])
    quiet = tiny_model.with_options(face_check_limit=None)(image, hole, mode="crop")
    assert quiet.warnings == [] and np.array_equal(quiet.image, result.image)
    given = tiny_model(image, hole, landmarks=result.landmarks, mode="crop")
    assert given.warnings == []  # the caller's landmarks vouch for the face


def _write_inputs(folder, name="face"):
    Image.fromarray(face_like(96, 80)).save(folder / f"{name}.png")
    Image.fromarray(box_mask(96, 80, 0.05, 0.05, 0.25, 0.3) * 255).save(folder / f"{name}-mask.png")
    return folder / f"{name}.png", folder / f"{name}-mask.png"


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_prints_the_warning_once(tiny_weights, tmp_path, disagreeing, capsys, caplog, quiet):
    from lafin.cli import main

    face, mask = _write_inputs(tmp_path)
    argv = ["inpaint", str(face), str(mask), "-o", str(tmp_path / "o.png"), "--weights", str(tiny_weights)]
    with caplog.at_level(logging.WARNING):
        assert main(argv + ["--mode", "crop"] + (["-q"] if quiet else [])) == 0
    out = capsys.readouterr().out
    logged = [r for r in caplog.records if r.name == "lafin.face_check"]
    if quiet:  # no output of its own: the log line says it
        assert out == "" and len(logged) == 1
    else:  # the CLI's own line, and not the log line too
        assert out.count("Warning: the image does not look like a face") == 1 and logged == []
    assert (tmp_path / "o.png").is_file()


def test_cli_folder_mode_names_the_warned_images(tiny_weights, tmp_path, disagreeing, capsys):
    from lafin.cli import main

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        face, mask = _write_inputs(tmp_path, name)
        face.rename(images / f"{name}.png")
        mask.rename(masks / f"{name}.png")
    out = tmp_path / "out"
    code = main(["inpaint", str(images), str(masks), "-o", str(out), "--weights", str(tiny_weights)])
    assert code == 0
    text = capsys.readouterr().out
    assert "warning for a.png: the image does not look like a face" in text
    assert "warning for b.png" in text


def test_web_demo_shows_the_warning(tiny_model, tmp_path, disagreeing):
    pytest.importorskip("gradio", reason="the web demo needs the 'web' extra (gradio)")
    from lafin.webapp import DemoHandlers, Session

    face, mask = _write_inputs(tmp_path)
    handlers = DemoHandlers(tiny_model, work_dir=tmp_path / "work")
    session = Session()
    handlers.photos.open([str(face)], session)
    status = handlers.inpainting.inpaint("", str(mask), "crop", session)[-2]
    assert "**Warning:** the image does not look like a face" in status


# --- the known pixels' signs: they judge also where the hole hides the crop's middle


def _middle_hole(n: int) -> np.ndarray:
    """A hole over the middle 60% x 60% of an n x n crop: the landmark check cannot judge it."""
    hole = box_mask(n, n, 0.2, 0.2, 0.8, 0.8)
    assert face_check.centre_hidden(hole) >= face_check.CENTRE_HIDDEN_LIMIT
    return hole


def _noise(n: int = 128) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, n, 3), dtype=np.uint8)


def _landscape(n: int = 128) -> np.ndarray:
    """A smooth synthetic landscape: a sky gradient above a wavy horizon and green ground."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = np.array([90.0, 140, 220]) + yy[..., None] * np.array([80.0, 60, 20])
    ground = yy > 0.5 + 0.08 * np.sin(4 * np.pi * xx)
    img[ground] = np.array([70.0, 140, 50]) * (0.8 + 0.4 * yy[ground][:, None])
    img += np.random.default_rng(1).normal(0, 3, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def _gradient(n: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / n
    ramp = np.array([200.0, 60, 40]) * (1 - xx[..., None]) + np.array([30.0, 90, 230]) * yy[..., None]
    return ramp.clip(0, 255).astype(np.uint8)


def _astronaut_face() -> np.ndarray:
    """A real photographed face (scikit-image's sample), 256 px, with its coloured background."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[0:256, 100:356])


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1).astype(np.uint8)


def _sepia(image: np.ndarray) -> np.ndarray:
    tone = image.mean(axis=-1, keepdims=True) / 255 * np.array([255.0, 215, 170])
    return tone.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("where", ["middle", "corner"])
def test_known_pixel_signs_of_noise_a_gradient_and_a_landscape(where):
    hole = _middle_hole(128) if where == "middle" else box_mask(128, 128, 0.0, 0.0, 0.33, 0.33)
    assert face_check.known_pixel_sign(_noise(), hole) == "look like noise"
    assert face_check.known_pixel_sign(_gradient(), hole) == "are a smooth gradient"
    landscape = face_check.known_pixel_sign(_landscape(), hole)
    assert landscape == "look like sky above vegetation, with no skin colour"
    # a face, also grey or sepia, shows none of them, wherever the hole is
    face = _astronaut_face()
    face_hole = _middle_hole(256) if where == "middle" else box_mask(256, 256, 0.0, 0.0, 0.33, 0.33)
    for image in (face, _grey(face), _sepia(face)):
        assert face_check.known_pixel_sign(image, face_hole) is None
    assert face_check.known_pixel_sign(face_like(96, 96), box_mask(96, 96, 0.2, 0.2, 0.8, 0.8)) is None
    # too little known to judge
    assert face_check.known_pixel_sign(_noise(), box_mask(128, 128, 0.0, 0.0, 0.98, 1.0)) is None


def test_a_sign_warns_where_the_middle_is_hidden_unless_a_face_is_detected(monkeypatch):
    hole = _middle_hole(128)
    limit = face_check.MIRROR_DISAGREEMENT_LIMIT
    asked = []
    second = lambda: asked.append(1) or 3 * limit
    # the landmarks agree, or cannot judge: the sign alone warns, the second view is not asked
    for disagreement in (0.0, 2 * limit):
        warned = face_check.crop_face_warnings(_noise(), hole, disagreement, limit, second)
        assert len(warned) == 1 and "its known pixels look like noise" in warned[0]
    assert asked == []
    assert face_check.crop_face_warnings(_noise(), hole, 0.0, None) == []  # check off
    monkeypatch.setattr(face_check, "detector_sees_face", lambda img, hole: True)
    assert face_check.crop_face_warnings(_noise(), hole, 0.0, limit) == []  # a face after all


@pytest.mark.parametrize("picture", ["noise", "landscape"])
def test_crop_mode_warns_on_a_non_face_whose_hole_hides_the_middle(tiny_model, picture):
    image = _noise() if picture == "noise" else _landscape()
    result = tiny_model(image, _middle_hole(128), mode="crop")
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("the image does not look like a face (its known pixels ")
    assert np.array_equal(result.image[_middle_hole(128) == 0], image[_middle_hole(128) == 0])


def test_crop_mode_does_not_warn_on_a_photographed_face_whose_hole_hides_the_middle(tiny_model):
    face = _astronaut_face()
    for image in (face, _grey(face), _sepia(face)):
        assert tiny_model(image, _middle_hole(256), mode="crop").warnings == []


def test_cli_prints_the_noise_warning_once_and_still_writes_the_fill(tiny_weights, tmp_path, capsys):
    from lafin.cli import main

    Image.fromarray(_noise()).save(tmp_path / "noise.png")
    Image.fromarray(_middle_hole(128) * 255).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    argv = ["inpaint", str(tmp_path / "noise.png"), str(tmp_path / "mask.png"), "-o", str(out)]
    assert main(argv + ["--weights", str(tiny_weights), "--mode", "crop"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "Warning" in line]
    assert len(lines) == 1
    assert "Warning: the image does not look like a face (its known pixels look like noise" in lines[0]
    assert out.is_file()
