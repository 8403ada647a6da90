"""A landmark predictor with its own input size (``landmarks.input_size``): config, the pipeline's
coordinate mapping in crop and photo mode, training, export."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import box_mask, face_like
from lafin.alignment import transform_points
from lafin.checkpoint import load_any, save_weights
from lafin.config import LandmarkConfig, ModelConfig, get_preset
from lafin.networks import build_generator, build_landmark_predictor
from lafin.pipeline import LaFInModel
from lafin.options import InferenceOptions


def _tiny(input_size: int, head: str = "pooled") -> ModelConfig:
    tiny = get_preset("tiny")
    return dataclasses.replace(
        tiny, landmarks=dataclasses.replace(tiny.landmarks, input_size=input_size, head=head)
    )


@pytest.mark.parametrize("shape", [(6, 6), (3, 3), (5, 7), (8, 8), (4, 4)])
def test_grid_pool_is_adaptive_average_pooling(shape):
    """The spatial head's 4x4 grid: a 192-px input leaves a 6x6 map, which adaptive pooling
    covers with overlapping windows (ONNX has no such op); grid_pool must be the same."""
    from lafin.networks.landmark_predictor import grid_pool

    x = torch.randn(2, 3, *shape)
    want = torch.nn.functional.adaptive_avg_pool2d(x, 4)
    assert torch.allclose(grid_pool(x, 4), want, atol=1e-6)
    assert torch.allclose(grid_pool(x.contiguous(memory_format=torch.channels_last), 4), want, atol=1e-6)


class _BlobPredictor(torch.nn.Module):
    """Finds the brightest blob (soft-argmax of the brightness) and answers it for all 68 points,
    as fractions of the crop side (fraction * side = pixel-centre coordinate, the predictor's
    convention). It records the sides it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.sides: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        self.sides.append(w)
        weight = torch.softmax(60 * x.mean(1).reshape(b, -1), dim=1).reshape(b, h, w)
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        centre = torch.stack([(weight * xs).sum((1, 2)) / w, (weight * ys).sum((1, 2)) / h], 1)
        return centre[:, None].expand(b, 68, 2).reshape(b, -1)


def _blob_image(h: int, w: int, x: float, y: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.repeat((20 + 220 * blob)[..., None], 3, axis=2).round().astype(np.uint8)


def test_input_size_is_validated_and_stored(tmp_path):
    assert get_preset("compact").landmark_size == 128  # 0: the generator's size
    assert _tiny(96).landmark_size == 96
    with pytest.raises(ValueError, match="multiple of 32"):
        LandmarkConfig(input_size=100)
    config = _tiny(96)
    path = tmp_path / "w.safetensors"
    save_weights(path, config, landmark_predictor=build_landmark_predictor(config))
    assert load_any(path).config.landmark_size == 96
    # files written before input_size existed have no such key: they mean the image size
    old = config.to_dict()
    del old["landmarks"]["input_size"]
    assert ModelConfig.from_dict(old).landmark_size == 64


@pytest.mark.parametrize("input_size", [64, 128, 32])
@pytest.mark.parametrize("shape", [(90, 120), (150, 100)])
@pytest.mark.parametrize("flip", [False, True])
def test_crop_mode_points_land_where_the_face_is(input_size, shape, flip):
    """Whatever the predictor's input size (the generator's, larger or smaller) and the input's
    shape, a predictor that finds a blob puts the points on the blob, in the input's pixels."""
    predictor = _BlobPredictor()
    model = LaFInModel.from_networks(
        _tiny(input_size), None, predictor, options=InferenceOptions(landmark_flip_average=flip)
    )
    h, w = shape
    x, y = 0.37 * w, 0.61 * h
    points = model.predict_landmarks(_blob_image(h, w, x, y, sigma=0.06 * max(h, w)))
    assert points.shape == (68, 2) and points.dtype == np.float32
    # a quarter of a predictor pixel (the soft-argmax is that exact on a sampled blob)
    assert np.abs(points - [x, y]).max() < 0.25 * max(1.0, max(h, w) / input_size)
    assert set(predictor.sides) == {input_size}  # built at its size, not resized from 64


@pytest.mark.parametrize("input_size", [64, 128])
def test_photo_mode_view_maps_points_into_the_face_crop(input_size):
    """Photo mode frames a face by a similarity matrix (photo -> generator crop); the
    predictor's own view of it, at its size, must give points in that crop's pixels."""
    model = LaFInModel.from_networks(_tiny(input_size), None, _BlobPredictor())
    x, y = 140.0, 95.0
    photo = _blob_image(240, 300, x, y, sigma=6)
    angle, scale = np.radians(12), 0.55
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    matrix = np.array([[c, -s, 32 - (c * x - s * y) + 5], [s, c, 32 - (s * x + c * y) - 3]])
    got = model.locator.predict_in(photo, np.zeros(photo.shape[:2], np.uint8), [matrix])
    want = transform_points(np.array([[x, y]]), matrix)[0]
    assert got.shape == (1, 68, 2)
    assert np.abs(got[0] - want).max() < 0.05


@pytest.mark.parametrize("input_size", [64, 128])
def test_photo_mode_view_centres_an_aligned_face(input_size):
    """The aligned crop puts the face low (the canonical layout); the predictor trained on faces
    centred within +-8% sees aligned faces with their landmark box centred, and a
    hole-surroundings guess (``aligned=False``) in which it finds no face as framed. Points come
    back in crop pixels."""
    from lafin.alignment import canonical_landmarks, invert_affine

    predictor = _BlobPredictor()
    answers: list[torch.Tensor] = []
    predictor.register_forward_hook(lambda m, i, out: answers.append(out.reshape(-1, 68, 2)[:, 0]))
    model = LaFInModel.from_networks(
        _tiny(input_size), None, predictor, options=InferenceOptions(landmark_flip_average=False)
    )
    s = model.image_size
    box = canonical_landmarks(s)
    box_centre = (box.min(axis=0) + box.max(axis=0)) / 2
    matrix = np.array([[0.5, 0.0, -30.0], [0.0, 0.5, -25.0]])  # photo -> crop
    x, y = transform_points(box_centre[None], invert_affine(matrix))[0]
    photo = _blob_image(260, 240, x, y, sigma=8)
    hole = np.zeros(photo.shape[:2], np.uint8)
    for aligned in (True, False):
        answers.clear()
        got = model.locator.predict_in(photo, hole, [matrix], aligned=[aligned])
        assert np.abs(got[0] - box_centre).max() < 0.05  # crop pixels either way
        seen = answers[-1][0].numpy() * input_size  # where the predictor saw the blob
        view_centre = (input_size - 1) / 2
        if aligned:
            assert np.abs(seen - view_centre).max() < 0.05
        else:  # as the crop has it: 8% of a side below the centre
            want = (box_centre + 0.5) * input_size / s - 0.5
            assert np.abs(seen - want).max() < 0.05 and seen[1] - view_centre > 0.07 * input_size


class _ThreeBlobFace(torch.nn.Module):
    """A 'face' is three dark discs: the eye centres and the mouth centre. Finding all three in
    its view, it answers the canonical 68 points fitted to them (a similarity); otherwise every
    point at the view's centre."""

    def __init__(self) -> None:
        super().__init__()
        from lafin.alignment import CANONICAL_LANDMARKS

        c = CANONICAL_LANDMARKS.astype(np.float64)
        self.canonical = c
        self.anchors = np.stack([c[36:42].mean(0), c[42:48].mean(0), c[48:68].mean(0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import cv2

        from lafin.alignment import similarity_transform

        out = []
        for view in x.mean(1).numpy():
            n, _, stats, centroids = cv2.connectedComponentsWithStats((view < 0.3).astype(np.uint8))
            blobs = [centroids[k] for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= 4]
            points = np.full((68, 2), 0.5 * view.shape[0] - 0.5)
            if len(blobs) == 3:
                blobs.sort(key=lambda b: b[1])  # two eyes above the mouth
                eyes = sorted(blobs[:2], key=lambda b: b[0])
                m = similarity_transform(self.anchors, np.stack([*eyes, blobs[2]]))
                points = self.canonical @ m[:, :2].T + m[:, 2]
            out.append(points / view.shape[0])  # fraction * side = pixel coordinate
        return torch.from_numpy(np.stack(out)).float().reshape(len(out), -1)


@pytest.mark.parametrize("input_size", [64, 128])
def test_a_guessed_frame_finds_the_face_first(input_size):
    """No face found: photo mode's guess is the square around the hole (here a hole over the
    nose: a crop that shows neither eye nor the mouth). The predictor first looks at twice that
    area, the face is aligned on what it finds, and the points come from that view."""
    from lafin.alignment import CANONICAL_LANDMARKS, similarity_transform
    from lafin.photo import surroundings_frame

    model = LaFInModel.from_networks(
        _tiny(input_size), None, _ThreeBlobFace(), options=InferenceOptions(landmark_flip_average=False)
    )
    angle, scale, centre = np.radians(10), 150.0, np.array([150.0, 140.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    truth = (CANONICAL_LANDMARKS - 0.5) @ rot.T + centre  # the face in photo pixels
    photo = np.full((300, 300, 3), 170, np.uint8)
    import cv2

    for group in (truth[36:42], truth[42:48], truth[48:68]):
        cx, cy = group.mean(0)
        cv2.circle(photo, (round(cx), round(cy)), 6, (20, 20, 20), -1)
    hole = np.zeros((300, 300), np.uint8)
    nose = truth[29:36]
    (x0, y0), (x1, y1) = nose.min(0).astype(int), nose.max(0).astype(int)
    hole[y0 - 2 : y1 + 3, x0 - 2 : x1 + 3] = 1
    guess = surroundings_frame(hole, (0, 0, 300, 300), model.image_size)
    got = model.locator.predict_in(photo, hole, [guess.matrix], aligned=[False])[0]
    found = transform_points(got, np.linalg.inv(np.vstack([guess.matrix, [0, 0, 1]]))[:2])
    assert np.abs(found - truth).max() < 1.5
    # the guess alone shows no face: the predictor's answer there is nowhere near it
    blind = model.locator.predict_views(photo, hole, [guess.matrix])[0]
    blind = transform_points(blind, np.linalg.inv(np.vstack([guess.matrix, [0, 0, 1]]))[:2])
    assert np.abs(blind - truth).max() > 20
    assert np.abs(similarity_transform(found, truth)[:, :2] - np.eye(2)).max() < 0.02


def test_larger_input_runs_the_whole_pipeline():
    """A real (random) predictor at 128 px beside a 64-px generator: crop and photo mode
    inpaint, keep the known pixels and report landmarks in the input's pixels."""
    torch.manual_seed(0)
    config = _tiny(128)
    model = LaFInModel.from_networks(config, build_generator(config), build_landmark_predictor(config))
    image, mask = face_like(100, 120), box_mask(100, 120)
    result = model(image, mask)
    assert result.landmarks.shape == (68, 2)
    assert np.array_equal(result.image[mask == 0], image[mask == 0])
    photo, hole = face_like(300, 300, seed=2), box_mask(300, 300, 0.45, 0.35, 0.7, 0.65)
    from lafin.alignment import canonical_landmarks

    given = canonical_landmarks(160) + 70
    out = model(photo, hole, landmarks=given, mode="photo")
    assert np.array_equal(out.image[hole == 0], photo[hole == 0])


def test_onnx_export_uses_the_predictors_size(tmp_path):
    pytest.importorskip("onnxruntime")
    from lafin.onnx_backend import export_onnx, load_onnx_folder

    torch.manual_seed(0)
    config = _tiny(96, head="spatial")  # a 3x3 map pooled to the 4x4 grid
    weights = tmp_path / "w.safetensors"
    predictor = build_landmark_predictor(config).eval()
    save_weights(weights, config, generator=build_generator(config), landmark_predictor=predictor)
    export_onnx(weights, tmp_path / "onnx")
    loaded, _, onnx_predictor = load_onnx_folder(tmp_path / "onnx")
    assert loaded.landmark_size == 96
    x = torch.rand(2, 3, 96, 96)
    with torch.inference_mode():
        want = predictor(x)
    np.testing.assert_allclose(onnx_predictor(x).numpy(), want.numpy(), atol=1e-3)
    image = face_like(80, 80)
    np.testing.assert_allclose(
        LaFInModel(weights=tmp_path / "onnx", backend="onnx").predict_landmarks(image),
        LaFInModel(weights=weights).predict_landmarks(image),
        atol=1e-2,
    )


def test_predictor_crops_of_another_size_are_refused():
    """Crops for the predictor are cut at its own size; a crop of the generator's size given
    by mistake is an error, not a silently rescaled guess."""
    model = LaFInModel.from_networks(_tiny(128), None, _BlobPredictor())
    with pytest.raises(ValueError, match="128x128"):
        model.locator.predict(torch.rand(1, 3, 64, 64))
