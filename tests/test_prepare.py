"""`lafin prepare`: photos to an aligned training cache, with skips reported and resumable runs."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from lafin.alignment import canonical_landmarks
from lafin.cli import main
from lafin.data.cache import load_cache
from lafin.data.prepare import PrepareOptions, prepare
from lafin.landmarks import nme, write_pts


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    src = tmp_path_factory.mktemp("photos")
    face = data.astronaut()
    Image.fromarray(face).save(src / "astronaut.png")
    rot = cv2.getRotationMatrix2D((223.0, 115.0), -12, 0.8)
    Image.fromarray(cv2.warpAffine(face, rot, (512, 512), borderMode=cv2.BORDER_REFLECT)).save(
        src / "tilted.jpg"
    )
    Image.fromarray(np.concatenate([face, face], axis=1)).save(src / "two_faces.png")
    Image.fromarray(data.coffee()).save(src / "coffee.png")  # no face
    Image.fromarray(cv2.resize(face, (64, 64))).save(src / "tiny.png")  # face too small
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")  # unreadable
    return src


def _report(out):
    with (out / "report.csv").open() as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def test_prepare_aligns_faces_and_reports_skips(photos, tmp_path):
    out = tmp_path / "set"
    report = prepare(photos, out, PrepareOptions(size=128), workers=2)
    assert report.written == 3
    rows = _report(out)
    assert rows["coffee"]["status"] == "skip" and "no face" in rows["coffee"]["detail"]
    assert rows["broken"]["status"] == "skip" and "unreadable" in rows["broken"]["detail"]
    assert rows["tiny"]["status"] == "skip"
    assert "kept the largest" in rows["two_faces"]["detail"]
    cache = load_cache(out)
    assert len(cache) == 3 and cache.images.shape[1:] == (128, 128, 3)
    # every face lands in the canonical frame, the tilted one included
    for lm in cache.landmarks:
        assert nme(lm, canonical_landmarks(128)) < 0.12


def test_prepare_resumes_without_redoing_work(photos, tmp_path):
    out = tmp_path / "set"
    prepare(photos, out, PrepareOptions(size=64), workers=1)
    first = (out / "images" / "astronaut.png").stat().st_mtime_ns
    again = prepare(photos, out, PrepareOptions(size=64), workers=1)
    assert again.written == 0 and again.already_done == 6
    assert (out / "images" / "astronaut.png").stat().st_mtime_ns == first
    assert len(_report(out)) == 6


def test_aligned_mode_keeps_the_frame_and_reads_pts(tmp_path):
    src = tmp_path / "crops"
    src.mkdir()
    crop = cv2.resize(data.astronaut()[64:181, 167:284], (128, 128))
    Image.fromarray(crop).save(src / "a.png")
    Image.fromarray(crop[:, ::-1]).save(src / "b.png")
    labelled = canonical_landmarks(128) + 1.5
    write_pts(src / "b.pts", labelled)
    out = tmp_path / "out"
    prepare(src, out, PrepareOptions(size=64, aligned=True), workers=1)
    cache = load_cache(out)
    names = [n.split(".")[0] for n in cache.names]
    b = cache.landmarks[names.index("b")]
    np.testing.assert_allclose(b, (labelled + 0.5) * 0.5 - 0.5, atol=1e-3)  # human labels, rescaled
    a = cache.landmarks[names.index("a")]
    assert nme(a, canonical_landmarks(64)) < 0.15  # dlib labels in the same, un-cropped frame
    small = np.asarray(Image.open(out / "images" / "a.png"))
    assert small.shape == (64, 64, 3)


def test_prepare_cli(photos, tmp_path, capsys):
    assert main(["prepare", str(photos), str(tmp_path / "cli"), "--size", "64", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Prepared 3 faces" in printed and "skipped coffee: no face found" in printed
    assert main(["prepare", str(tmp_path / "absent"), str(tmp_path / "x")]) == 2
