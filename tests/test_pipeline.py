"""The Python API: inputs of every kind and size, known pixels kept, landmarks, bad inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import box_mask, face_like
from lafin.io import InputError, load_image, load_mask
from lafin.crop_frame import CropFrame
from lafin.options import InferenceOptions
from lafin.pipeline import InpaintResult, LaFInModel, WeightsNotFoundError


@pytest.mark.parametrize("h,w", [(64, 64), (37, 53), (120, 200), (301, 97)])
def test_known_pixels_bit_identical_any_size(tiny_model, h, w):
    image = face_like(h, w)
    mask = box_mask(h, w)
    out = tiny_model.inpaint(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    known = mask == 0
    assert np.array_equal(out[known], image[known])
    # the hole is really replaced by generated content
    assert np.abs(out[mask == 1].astype(int) - image[mask == 1]).mean() > 1


def test_pil_path_and_numpy_inputs_agree(tiny_model, tmp_path):
    image = face_like(70, 90, seed=1)
    mask = box_mask(70, 90)
    Image.fromarray(image).save(tmp_path / "face.png")
    Image.fromarray(mask * 255).save(tmp_path / "mask.png")
    from_numpy = tiny_model.inpaint(image, mask)
    from_pil = tiny_model.inpaint(Image.fromarray(image), Image.fromarray(mask * 255))
    from_path = tiny_model.inpaint(tmp_path / "face.png", str(tmp_path / "mask.png"))
    assert np.array_equal(from_numpy, from_pil)
    assert np.array_equal(from_numpy, from_path)


def test_grayscale_rgba_and_16bit_inputs(tiny_model, tmp_path):
    rgb = face_like(64, 64, seed=2)
    gray = rgb.mean(axis=2).astype(np.uint8)
    out = tiny_model.inpaint(gray, box_mask(64, 64))
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[0, 0], [gray[0, 0]] * 3)

    rgba = np.dstack([rgb, np.full((64, 64), 255, np.uint8)])
    assert np.array_equal(tiny_model.inpaint(rgba, box_mask(64, 64))[0, 0], rgb[0, 0])

    sixteen = gray.astype(np.uint16) * 257
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png")
    assert loaded.dtype == np.uint8 and np.array_equal(loaded[..., 0], gray)


def test_result_object_and_landmarks_in_input_pixels(tiny_model):
    image = face_like(80, 120)
    mask = box_mask(80, 120)
    result = tiny_model(image, mask)
    assert isinstance(result, InpaintResult)
    assert result.landmarks.shape == (68, 2) and result.landmarks.dtype == np.float32
    assert not result.landmarks_given
    assert set(result.timings) >= {"landmarks", "generate"}
    direct = tiny_model.predict_landmarks(image, mask)
    np.testing.assert_allclose(direct, result.landmarks, atol=1e-4)


def test_given_landmarks_are_used_and_change_the_output(tiny_model):
    image = face_like(64, 64)
    mask = box_mask(64, 64, 0.2, 0.2, 0.8, 0.8)
    rng = np.random.default_rng(0)
    a = rng.uniform(10, 54, (68, 2)).astype(np.float32)
    b = rng.uniform(10, 54, (68, 2)).astype(np.float32)
    ra, rb = tiny_model(image, mask, landmarks=a), tiny_model(image, mask, landmarks=b)
    assert ra.landmarks_given and np.array_equal(ra.landmarks, a)
    assert not np.array_equal(ra.image, rb.image)


def test_frame_mapping_round_trip():
    frame = CropFrame(pad_top=10, pad_left=0, side=200, size=64)
    pts = np.random.default_rng(0).uniform(0, 180, (68, 2)).astype(np.float32)
    np.testing.assert_allclose(frame.to_input(frame.to_model(pts)), pts, atol=1e-4)


def test_empty_mask_returns_image_unchanged(tiny_model, caplog):
    image = face_like(50, 50)
    with caplog.at_level(logging.WARNING):
        out = tiny_model.inpaint(image, np.zeros((50, 50), np.uint8))
    assert np.array_equal(out, image)
    assert "empty" in caplog.text


def test_full_mask_is_an_error(tiny_model):
    with pytest.raises(InputError, match="whole image"):
        tiny_model.inpaint(face_like(40, 40), np.ones((40, 40), np.uint8))


def test_mask_size_mismatch_is_an_error(tiny_model):
    with pytest.raises(InputError, match="differs from image size"):
        tiny_model.inpaint(face_like(40, 40), np.ones((30, 40), np.uint8))


def test_non_binary_jpeg_mask_is_thresholded(tmp_path, caplog):
    mask = box_mask(64, 64) * 255
    Image.fromarray(mask).save(tmp_path / "mask.jpg", quality=60)
    with caplog.at_level(logging.WARNING):
        loaded = load_mask(tmp_path / "mask.jpg", shape=(64, 64))
    assert "thresholded at 50%" in caplog.text
    assert set(np.unique(loaded)) <= {0, 1}
    assert (loaded != box_mask(64, 64)).mean() < 0.01


@pytest.mark.parametrize("content", [b"not an image at all", b""])
def test_unreadable_image_file(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not an image"):
        load_image(path)


def test_truncated_image_file(tmp_path):
    Image.fromarray(face_like(64, 64)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(tmp_path / "cut.jpg")


def test_missing_file_and_bad_landmarks(tiny_model, tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match=r"\(68, 2\)"):
        tiny_model.inpaint(face_like(40, 40), box_mask(40, 40), landmarks=np.zeros((5, 2)))


def test_no_default_weights_raises_helpful_error(monkeypatch, tmp_path):
    import lafin.pipeline as pipeline

    monkeypatch.setattr(pipeline, "default_weights_path", lambda: tmp_path / "absent.safetensors")
    with pytest.raises(WeightsNotFoundError, match="lafin train"):
        LaFInModel()


def test_load_weights_file(tiny_weights):
    model = LaFInModel(weights=tiny_weights)
    assert model.image_size == 64
    out = model.inpaint(face_like(64, 64), box_mask(64, 64))
    assert out.shape == (64, 64, 3)


def test_landmarks_are_mirror_symmetric(tiny_weights):
    """Flip averaging: the mirror image's landmarks are the mirrored landmarks, exactly."""
    from lafin.landmarks import flip_landmarks
    from lafin.pipeline import LaFInModel

    model = LaFInModel(weights=tiny_weights)
    image = face_like(64, 64, seed=4)
    points = model.predict_landmarks(image)
    mirrored = model.predict_landmarks(np.ascontiguousarray(image[:, ::-1]))
    assert np.allclose(flip_landmarks(points, 64), mirrored, atol=1e-3)
    single = model.with_options(landmark_flip_average=False).predict_landmarks(image)
    assert not np.allclose(single, points, atol=1e-3)


class _CanonicalPredictor(torch.nn.Module):
    """Always 'sees' the canonical landmarks with their box centred in its input crop (how the
    predictor's view frames an aligned face), (B, 136) normalised."""

    def __init__(self, size: int) -> None:
        super().__init__()
        from lafin.alignment import canonical_landmarks

        points = canonical_landmarks(size)
        points += (size - 1) / 2 - (points.min(axis=0) + points.max(axis=0)) / 2
        self.points = torch.from_numpy(points.astype(np.float32) / size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.points.reshape(1, -1).expand(x.shape[0], -1)


class _CentroidPredictor(_CanonicalPredictor):
    """The canonical points moved by the crop's brightness centroid: every pixel counts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weight = x.mean(1) + 1e-3
        ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        centre = torch.stack([(weight * xs).sum((1, 2)), (weight * ys).sum((1, 2))], 1)
        centre = centre / weight.sum((1, 2))[:, None]
        return (self.points[None] + (centre[:, None] - 0.5)).reshape(b, -1)


def test_landmarks_read_nothing_under_the_hole(tiny_config):
    """Crop mode resamples the input itself (here 3x the model's size): what lies under the hole
    must not reach the points, while what lies outside does."""
    tiny_model = LaFInModel.from_networks(tiny_config, None, _CentroidPredictor(tiny_config.image_size))
    rng = np.random.default_rng(3)
    image = face_like(192, 192, seed=5)
    hole = np.zeros((192, 192), np.uint8)
    hole[60:130, 40:150] = 1
    hole[rng.random((192, 192)) < 0.05] = 1  # ragged specks: many hole edges to resample
    points = tiny_model.predict_landmarks(image, hole)
    other = image.copy()
    other[hole > 0] = rng.integers(0, 256, (int(hole.sum()), 3), dtype=np.uint8)
    assert np.array_equal(tiny_model.predict_landmarks(other, hole), points)
    changed = image.copy()
    changed[hole == 0] = rng.integers(0, 256, (int((hole == 0).sum()), 3), dtype=np.uint8)
    assert not np.allclose(tiny_model.predict_landmarks(changed, hole), points, atol=1e-3)


def test_generator_flip_average_is_mirror_symmetric(tiny_weights):
    """With the generator's flip averaging the mirrored crop gives exactly the mirrored output;
    switched off, a random generator does not (so the check can fail)."""
    import torch

    from lafin.alignment import canonical_landmarks
    from lafin.landmarks import flip_landmarks

    model = LaFInModel(weights=tiny_weights)
    rng = np.random.default_rng(0)
    crop = torch.from_numpy(face_like(64, 64, seed=2)).permute(2, 0, 1)[None].float() / 255
    hole = torch.from_numpy((rng.random((64, 64)) < 0.3).astype(np.float32))[None, None]
    # whole-pixel landmarks: their rounding in the landmark map mirrors exactly
    points = np.round(canonical_landmarks(64))[None].astype(np.float32)
    mirrored = flip_landmarks(points[0], 64)[None]

    def outputs() -> tuple[np.ndarray, np.ndarray]:
        out = model.generation.generate(crop, hole, points)
        out_mirror = model.generation.generate(crop.flip(3), hole.flip(3), mirrored)
        return out, out_mirror[:, :, ::-1]

    assert model.options.generator_flip_average
    out, back = outputs()
    assert np.allclose(out, back, atol=1e-5)
    model = model.with_options(generator_flip_average=False)
    single, single_back = outputs()
    assert not np.allclose(single, single_back, atol=1e-3)
    # the average is the mean of the single pass and the mirrored single pass
    assert np.allclose(out, (single + single_back) / 2, atol=1e-5)


def test_options_are_checked_and_fixed_at_construction(tiny_config, tiny_model):
    """Switches are constructor options: a bad value is refused when made, a former attribute
    cannot be set behind the model's back, and with_options shares the networks."""
    with pytest.raises(InputError, match="landmark_refine"):
        InferenceOptions(landmark_refine="yes")
    with pytest.raises(InputError, match="seed"):
        InferenceOptions(seed=-1)
    with pytest.raises(InputError, match="options"):
        LaFInModel.from_networks(
            tiny_config, None, tiny_model.landmark_predictor, options={"landmark_refine": False}
        )
    with pytest.raises(InputError, match="with_options"):
        tiny_model.flip_average = False
    with pytest.raises(InputError, match="removed"):
        tiny_model.edge_blend = True
    with pytest.raises(InputError, match="unknown option"):
        tiny_model.with_options(edge_blend=True)
    other = tiny_model.with_options(landmark_refine=False, seed=3)
    assert other.generator is tiny_model.generator and other.photos.landmark_refine is False
    assert tiny_model.options.landmark_refine and tiny_model.options.seed == 0
    # no refiner: the generator's mirror average and the diffusion mix are on by default
    assert tiny_model.options.generator_flip_average and tiny_model.options.diffusion_mix > 0


def test_a_stage_started_twice_in_a_row_is_reported_once():
    from lafin.results import Stages

    seen = []
    stages = Stages(seen.append)
    for name in ("landmarks", "blend", "blend", "generate"):
        stages.start(name)
    timings = stages.stop()
    assert seen == ["landmarks", "blend", "generate"]
    assert set(timings) == {"landmarks", "blend", "generate"}


def test_loaded_weights_run_the_landmark_predictor_with_its_batch_norms_folded(tiny_weights):
    """A model loaded from a file folds the predictor's batch norms (inference only) and
    predicts what the file's network predicts in eval mode."""
    from lafin.checkpoint import build_from_weights, load_any

    model = LaFInModel(weights=tiny_weights)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.landmark_predictor.modules())
    _, unfolded = build_from_weights(load_any(tiny_weights), device="cpu")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.eval().modules())
    x = torch.rand(1, 3, model.landmark_size, model.landmark_size)
    with torch.no_grad():
        assert torch.allclose(model.landmark_predictor(x), unfolded(x), atol=1e-5)
