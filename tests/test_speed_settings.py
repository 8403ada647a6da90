"""The pipeline's CPU settings: threads and denormal flushing per call, restored afterwards;
channels-last networks give the same results; batching faces changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import box_mask, face_like
from lafin.pipeline import LaFInModel
from lafin.runtime import flush_denormal_enabled


def test_threads_and_denormals_set_during_a_call_and_restored(tiny_model, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    torch.set_flush_denormal(False)  # an earlier test may have left it on
    seen = {}
    predictor = tiny_model.landmark_predictor
    original_forward = predictor.forward

    def spy(x):
        seen["threads"], seen["flush"] = torch.get_num_threads(), flush_denormal_enabled()
        return original_forward(x)

    monkeypatch.setattr(predictor, "forward", spy)
    try:
        tiny_model(face_like(64, 64), box_mask(64, 64))
        assert seen == {"threads": 1, "flush": True}
        assert torch.get_num_threads() == 2 and not flush_denormal_enabled()
        two = LaFInModel.from_networks(
            tiny_model.config, tiny_model.generator, predictor, threads=2
        )  # an explicit choice is used as given
        two(face_like(64, 64), box_mask(64, 64))
        assert seen["threads"] == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's environment wins
        tiny_model(face_like(64, 64), box_mask(64, 64))
        assert seen["threads"] == 2
    finally:
        torch.set_num_threads(1)


def test_a_callers_denormal_setting_is_kept(tiny_model):
    torch.set_flush_denormal(True)
    try:
        tiny_model(face_like(64, 64), box_mask(64, 64))
        assert flush_denormal_enabled()
    finally:
        torch.set_flush_denormal(False)


def test_bad_threads_is_an_error(tiny_weights):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        LaFInModel(weights=tiny_weights, threads=0)


def test_channels_last_networks_give_the_same_result(tiny_weights):
    loaded = LaFInModel(weights=tiny_weights)  # compact architecture: channels-last on the CPU
    assert loaded.landmark_predictor.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = LaFInModel.from_networks(loaded.config, *_fresh_networks(tiny_weights))
    image, mask = face_like(70, 90, seed=4), box_mask(70, 90)
    a, b = loaded(image, mask), plain(image, mask)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1


def _fresh_networks(path):
    from lafin.checkpoint import build_from_weights, load_any

    return build_from_weights(load_any(path))


def test_faces_batched_together_equal_faces_one_by_one(tiny_model):
    """render_faces runs all faces of a photo as one batch; the result per face is the same."""
    from lafin.alignment import canonical_landmarks, similarity_transform
    from lafin.photo import FaceFrame

    image = np.concatenate([face_like(200, 200, seed=1), face_like(200, 200, seed=2)], axis=1)
    hole = np.zeros(image.shape[:2], np.uint8)
    hole[110:150, 60:140] = 1
    hole[110:150, 260:340] = 1
    frames = []
    for dx in (0, 200):
        pts = canonical_landmarks(180) + [10 + dx, 10]
        frames.append(
            FaceFrame(
                similarity_transform(pts, canonical_landmarks(64)),
                64,
                "given-landmarks",
                (dx, 0, dx + 200, 200),
                pts,
            )
        )
    together = image.copy()
    tiny_model.render_faces(image, hole, together, frames, given=True)
    apart = image.copy()
    for frame in frames:
        tiny_model.render_faces(image, hole, apart, [frame], given=True)
    assert np.abs(together.astype(int) - apart.astype(int)).max() <= 1
    assert (together[hole == 1] != image[hole == 1]).any()
