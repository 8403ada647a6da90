"""The landmark benchmark's geometry helpers (benchmarks/landmarks_nme.py), on known answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lafin.alignment import canonical_landmarks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def landmarks_nme():
    spec = importlib.util.spec_from_file_location("landmarks_nme",
                                                  ROOT / "benchmarks" / "landmarks_nme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    return points @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]).T


@pytest.mark.parametrize("degrees", [0.0, 30.0, -100.0])
def test_face_frame_error_follows_the_face_not_the_image(landmarks_nme, degrees):
    face = canonical_landmarks(128).astype(np.float64)
    eyes = np.linalg.norm(face[45] - face[36])
    # a shift of 0.1 eye distances towards point 46 and 0.05 towards the chin, in the face's frame
    shifted = face + np.array([0.1, 0.05]) * eyes
    truth, pred = _rotate(face, degrees) + 40.0, _rotate(shifted, degrees) + 40.0
    np.testing.assert_allclose(landmarks_nme.face_frame_error(pred, truth), [0.1, 0.05], atol=1e-9)


def test_loose_scale_is_the_scale_loose_crop_applies(landmarks_nme):
    rng = np.random.default_rng(0)
    points = canonical_landmarks(200).astype(np.float64) * 0.7 + 30
    image = rng.integers(0, 255, (240, 240, 3), dtype=np.uint8)
    _, moved = landmarks_nme.loose_crop(image, points, 256)
    spread = np.linalg.norm(moved[45] - moved[36]) / np.linalg.norm(points[45] - points[36])
    assert landmarks_nme.loose_scale(points, 256) == pytest.approx(spread, rel=1e-9)


def test_read_scales_reads_the_ibug_manifest_of_its_split(landmarks_nme, tmp_path):
    (tmp_path / "afw").mkdir()
    (tmp_path / "manifest.csv").write_text(
        "split,name,source_path_in_repo,orig_w,orig_h,crop_left,crop_top,crop_side,out_size,scale\n"
        "afw,a_1,afw/a.jpg,800,600,10,20,512,256,0.5\n"
        "helen_trainset_partial,a_1,helen/a.jpg,800,600,10,20,1024,256,0.25\n")
    assert landmarks_nme.read_scales(tmp_path / "afw") == {"a_1": 0.5}
    assert landmarks_nme.read_scales(tmp_path / "missing" / "afw") == {}
