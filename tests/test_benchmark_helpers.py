"""The landmark benchmark's geometry helpers (benchmarks/landmarks_nme.py), on known answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from lafin.alignment import canonical_landmarks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def landmarks_nme():
    spec = importlib.util.spec_from_file_location("landmarks_nme", ROOT / "benchmarks" / "landmarks_nme.py")
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
        "helen_trainset_partial,a_1,helen/a.jpg,800,600,10,20,1024,256,0.25\n"
    )
    assert landmarks_nme.read_scales(tmp_path / "afw") == {"a_1": 0.5}
    assert landmarks_nme.read_scales(tmp_path / "missing" / "afw") == {}


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ibug_folder(folder: Path, count: int) -> None:
    """``count`` synthetic 256-px 'photos' with canonical landmarks, as NAME.jpg + NAME.pts."""
    import cv2

    from conftest import face_like
    from lafin.landmarks import write_pts

    for i in range(count):
        photo = face_like(256, 256, seed=i)
        cv2.imwrite(str(folder / f"face{i}.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        write_pts(folder / f"face{i}.pts", canonical_landmarks(128) + 64)


def test_real_photos_runs_end_to_end_and_reports_by_path(tmp_path, capsys):
    """benchmarks/real_photos.py on two synthetic 'photos' with the shipped weights: both modes
    run, every photo gets landmarks, and photo mode's NME is broken down by detection path."""
    import json

    real_photos = _benchmark("real_photos")
    _ibug_folder(tmp_path, 2)
    out = tmp_path / "out.json"
    assert real_photos.main(["--faces", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["photos"] == 2
    assert report["results"]["photo mode"]["faces_with_landmarks"] == 2
    assert sum(report["paths"].values()) >= 2
    assert set(report["nme_by_path"]) <= set(report["paths"]) and report["nme_by_path"]
    assert all(np.isfinite(v) and v > 0 for v in report["nme_by_path"].values())
    assert "by how it found the face" in capsys.readouterr().out


def test_loose_crops_aligned_side_keeps_the_face_size_and_the_list_filters(tmp_path):
    spec = importlib.util.spec_from_file_location("loose_crops", ROOT / "benchmarks" / "loose_crops.py")
    loose_crops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loose_crops)
    assert loose_crops.native_side(canonical_landmarks(256)) == 256
    # a face half the canonical size (a loose crop's) keeps its pixels in a 128-px aligned crop
    assert loose_crops.native_side(canonical_landmarks(256) * 0.5 + 40) == 128
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.jpg").write_bytes(b"")
        (tmp_path / f"{name}.pts").write_text("")
    (tmp_path / "names.txt").write_text("a.jpg\nc\n")
    files = loose_crops.face_files(tmp_path, 10, 0, tmp_path / "names.txt")
    assert [p.name for p in files] == ["a.jpg", "c.jpg"]


def test_photo_holes_reports_fidelity_and_draws_from_the_names(tmp_path, tiny_weights, capsys):
    """benchmarks/photo_holes.py on three synthetic 'photos', two of them listed: every column,
    the fidelity judged by the first file's predictor (the same file twice: equal numbers)."""
    import json

    photo_holes = _benchmark("photo_holes")
    _ibug_folder(tmp_path, 3)
    names, out = tmp_path / "names.txt", tmp_path / "out.json"
    names.write_text("face0 face2.jpg")
    argv = ["--afw", str(tmp_path), "--names", str(names), "--faces", "5", "--json", str(out)]
    assert photo_holes.main([*argv, "--weights", str(tiny_weights), str(tiny_weights)]) == 0
    report = json.loads(out.read_text())
    assert report["faces"] == 2
    first, second = (report[k] for k in report if k != "faces")
    assert first == second
    assert np.isfinite(first["fidelity_nme_percent"]) and first["fidelity_nme_percent"] > 0
    assert 0 < first["detail_ratio"] and first["colour_error"] >= 0
    assert "fidelity NME (%)" in capsys.readouterr().out


def test_photo_holes_soften_and_blur_make_the_photos_soft(tmp_path, tiny_weights, capsys):
    """--soften resamples down and back (the same size, less fine detail, a flat image kept);
    --soften and --blur reach the report's first line; values below their floor exit."""
    photo_holes = _benchmark("photo_holes")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    soft = photo_holes.soften(image, 2.0)
    assert soft.shape == image.shape and soft.dtype == np.uint8
    lap = lambda x: cv2.Laplacian(x.astype(np.float32), cv2.CV_32F).var()  # noqa: E731
    assert lap(soft) < 0.5 * lap(image)
    assert photo_holes.soften(image, 1.0) is image
    flat = np.full((30, 30, 3), 77, np.uint8)
    assert np.array_equal(photo_holes.soften(flat, 3.0), flat)
    _ibug_folder(tmp_path, 2)
    argv = ["--afw", str(tmp_path), "--faces", "2", "--weights", str(tiny_weights)]
    assert photo_holes.main([*argv, "--soften", "2", "--blur", "1"]) == 0
    assert "softened 2x, blurred (sigma 1 px)" in capsys.readouterr().out
    for bad in (["--soften", "0.5"], ["--blur", "-1"]):
        with pytest.raises(SystemExit, match="must be at least"):
            photo_holes.main([*argv, *bad])


@pytest.fixture(scope="module")
def kid_sensitivity():
    spec = importlib.util.spec_from_file_location(
        "kid_sensitivity", ROOT / "benchmarks" / "kid_sensitivity.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kid_sensitivity_changes(kid_sensitivity):
    """The KID benchmark's changes: a grid is noise in 2x2 blocks (steps only between blocks),
    noise is per pixel, both of the asked spread; bad specs are errors."""
    from lafin.evaluation.realism import grid_contrasts

    flat = np.full((2, 32, 32, 3), 128, np.uint8)
    assert kid_sensitivity.changed(flat, "none", 0) is flat
    assert np.array_equal(kid_sensitivity.changed(flat, "blur:1", 0), flat)
    grid = kid_sensitivity.changed(flat, "grid:0:6", 0).astype(float)
    noise = kid_sensitivity.changed(flat, "noise:0:6", 0).astype(float)
    assert np.array_equal(grid[:, 0::2, 0::2], grid[:, 1::2, 1::2])  # 2x2 blocks
    assert np.array_equal(grid[..., 0], grid[..., 2])  # grey
    assert 5.0 < grid.std() < 7.0 and 5.0 < noise.std() < 7.0
    hole = np.ones((32, 32), np.uint8)
    assert grid_contrasts(grid[0], noise[0], hole, erode=0)[0] > 1.5  # all steps between blocks
    assert grid_contrasts(grid[0], noise[0], hole, erode=0)[1] < 0.3
    for bad in ("grid:1", "blur", "noise:a:2", "sharpen:1"):
        with pytest.raises(ValueError):
            kid_sensitivity.changed(flat, bad, 0)
