"""Old-photo restoration: detection (tiled), the API on LaFInModel, tone keeping, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import face_like
from lafin import restore as restore_module
from lafin.io import InputError
from lafin.networks.damage_detector import DamageDetector, DamageDetectorConfig, save_damage_detector
from lafin.restore import damage_probability, grow_mask, keep_tone, photo_tone


@pytest.fixture
def tiny_detector_weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "det.safetensors"
    save_damage_detector(path, DamageDetector(DamageDetectorConfig((2, 2, 2, 2))).eval())
    return path


def _line_damage(monkeypatch, rows=(20,)):
    """Make the detector 'find' horizontal scratches at ``rows`` (the restore logic under test,
    not the random tiny network's guesses)."""

    def fake(detector, image, **kwargs):
        prob = np.zeros(image.shape[:2], np.float32)
        for r in rows:
            prob[r, 5:-5] = 0.9
        return prob

    monkeypatch.setattr(restore_module, "damage_probability", fake)


class _Identity(torch.nn.Module):
    """A 'detector' whose logit is the red channel: tiling must reproduce the one-pass map."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[:, :1] * 8 - 4


def test_tiles_cover_every_pixel_once():
    img = (np.random.default_rng(0).random((70, 93, 3)) * 255).astype(np.uint8)
    whole = damage_probability(_Identity(), img, tile=200)
    tiled = damage_probability(_Identity(), img, tile=40, overlap=6)
    assert np.array_equal(whole, tiled)
    with pytest.raises(InputError, match="tile"):
        damage_probability(_Identity(), img, tile=10, overlap=6)


def test_restore_runs_the_faster_inference_form_of_the_file(tiny_model, tiny_detector_weights):
    from lafin.networks.damage_detector import InferenceDamageDetector, load_damage_detector

    detector = restore_module.damage_detector_for(tiny_model, tiny_detector_weights)
    assert isinstance(detector, InferenceDamageDetector)
    assert restore_module.damage_detector_for(tiny_model, tiny_detector_weights) is detector
    img = face_like(45, 61)
    reference, _ = load_damage_detector(tiny_detector_weights)
    with torch.no_grad():
        want = torch.sigmoid(reference(torch.from_numpy(img).permute(2, 0, 1)[None] / 255.0))
    np.testing.assert_allclose(damage_probability(detector, img), want[0, 0].numpy(), atol=1e-5)


def test_detect_damage_on_the_model(tiny_model, tiny_detector_weights):
    img = face_like(45, 61)
    mask = restore_module.detect_damage(tiny_model, img, threshold=0.5, weights=tiny_detector_weights)
    assert mask.shape == (45, 61) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    low = restore_module.detect_damage(tiny_model, img, threshold=1e-6, weights=tiny_detector_weights)
    assert (low >= mask).all() and low.all()
    for bad in (0, 1, 1.5, "0.5", True):
        with pytest.raises(InputError, match="threshold"):
            restore_module.detect_damage(tiny_model, img, threshold=bad, weights=tiny_detector_weights)


def test_model_methods_delegate(tiny_model, tiny_detector_weights, monkeypatch):
    monkeypatch.setattr(restore_module, "default_damage_weights_path", lambda: tiny_detector_weights)
    img = face_like(40, 40)
    mask = tiny_model.detect_damage(img, threshold=1e-6)
    assert mask.shape == (40, 40) and mask.all()
    _line_damage(monkeypatch)
    result = tiny_model.restore(img, dilate=1)
    assert result.mask[19:22, 10:30].all() and not result.mask[:18].any()


def test_restore_keeps_known_pixels(tiny_model, tiny_detector_weights, monkeypatch):
    _line_damage(monkeypatch, rows=(12, 30))
    img = face_like(48, 48, seed=2)
    stages = []
    result = restore_module.restore(
        tiny_model, img, dilate=2, progress=stages.append, weights=tiny_detector_weights
    )
    hole = result.mask > 0
    assert np.array_equal(result.image[~hole], img[~hole])
    assert (result.damage > 0).sum() < hole.sum()  # grown
    assert stages[0] == "damage" and stages[-1] == "blend" and "generate" in stages
    assert {"damage", "generate", "blend"} <= set(result.timings)
    assert result.mode == "crop"


def test_restore_without_damage_returns_the_photo(tiny_model, tiny_detector_weights, monkeypatch):
    _line_damage(monkeypatch, rows=())
    img = face_like(32, 32)
    result = restore_module.restore(tiny_model, img, weights=tiny_detector_weights)
    assert np.array_equal(result.image, img) and not result.mask.any() and result.mode == "none"


def test_restore_rejects_bad_options(tiny_model, tiny_detector_weights):
    img = face_like(32, 32)
    with pytest.raises(InputError, match="dilate"):
        restore_module.restore(tiny_model, img, dilate=-1, weights=tiny_detector_weights)
    with pytest.raises(InputError, match="mode"):
        restore_module.restore(tiny_model, img, mode="face", weights=tiny_detector_weights)
    with pytest.raises(InputError, match="not found"):
        restore_module.restore(tiny_model, img, weights="missing.safetensors")


def test_grey_in_grey_out(tiny_model, tiny_detector_weights, monkeypatch):
    _line_damage(monkeypatch, rows=(10, 25))
    grey = face_like(40, 40).mean(axis=2).astype(np.uint8)
    img = np.repeat(grey[..., None], 3, axis=2)
    result = restore_module.restore(tiny_model, img, weights=tiny_detector_weights)
    assert result.tone == "grey"
    out = result.image
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert not np.array_equal(out, img)  # the hole was filled


def test_sepia_stays_sepia(tiny_model, tiny_detector_weights, monkeypatch):
    _line_damage(monkeypatch, rows=(15,))
    lum = face_like(40, 40).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    sepia = np.clip(lum[..., None] * [1.1, 0.95, 0.75] + [10, 8, 5], 0, 255).round().astype(np.uint8)
    assert photo_tone(sepia)[0] == "tinted"
    result = restore_module.restore(tiny_model, sepia, weights=tiny_detector_weights)
    assert result.tone == "tinted"
    hole = result.mask > 0
    # the filled pixels follow the photo's own channel-vs-luminance relation
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    known = sepia[~hole].astype(np.float32)
    design = np.stack([known @ luma, np.ones(len(known))], 1)
    relation = np.linalg.lstsq(design, known, rcond=None)[0]
    filled = result.image[hole].astype(np.float32)
    y = filled @ luma
    expected = np.stack([y, np.ones_like(y)], 1) @ relation
    assert np.abs(filled - expected)[y < 230].max() < 2
    assert not np.allclose(filled[:, 0], filled[:, 2], atol=3)  # tinted, not grey


def test_colour_photos_keep_their_fill():
    img = face_like(32, 32)
    filled = img.copy()
    filled[10:12] = [200, 50, 50]
    hole = np.zeros((32, 32), np.uint8)
    hole[10:12] = 1
    out, tone = keep_tone(img, filled, hole)
    assert tone == "colour" and np.array_equal(out, filled)


def test_grow_mask():
    mask = np.zeros((9, 9), np.uint8)
    mask[4, 4] = 1
    assert grow_mask(mask, 0).sum() == 255
    assert grow_mask(mask, 2)[4, 2:7].all() and not grow_mask(mask, 2)[0, 0]
    with pytest.raises(InputError):
        grow_mask(mask, 1.5)


# ---------------------------------------------------------------------- CLI


def _run(argv) -> int:
    from lafin.cli import main

    return main([str(a) for a in argv])


def test_cli_restore_one_photo(tmp_path, tiny_weights, tiny_detector_weights, monkeypatch, capsys):
    _line_damage(monkeypatch, rows=(20,))
    photo = tmp_path / "old.png"
    Image.fromarray(face_like(48, 48)).save(photo)
    out, mask = tmp_path / "fixed.png", tmp_path / "mask.png"
    assert (
        _run(
            [
                "restore",
                photo,
                "-o",
                out,
                "--damage-out",
                mask,
                "--weights",
                tiny_weights,
                "--damage-weights",
                tiny_detector_weights,
                "--dilate",
                "1",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "Detecting damage..." in text and "Done! Wrote" in text
    written = np.asarray(Image.open(mask))
    assert written.shape == (48, 48) and written[20, 10:30].all()
    assert np.asarray(Image.open(out)).shape == (48, 48, 3)


def test_cli_restore_folders(tmp_path, tiny_weights, tiny_detector_weights, monkeypatch, capsys):
    _line_damage(monkeypatch, rows=(20,))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(face_like(40, 40, i)).save(photos / f"p{i}.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert (
        _run(
            [
                "restore",
                photos,
                "-o",
                out,
                "--damage-out",
                tmp_path / "masks",
                "--weights",
                tiny_weights,
                "--damage-weights",
                tiny_detector_weights,
                "-q",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["p0.png", "p1.png"]


@pytest.mark.parametrize("case", ["overwrite", "threshold", "dilate", "missing", "into-input"])
def test_cli_restore_bad_input_is_one_line(tmp_path, tiny_weights, tiny_detector_weights, case, capsys):
    photo = tmp_path / "old.png"
    Image.fromarray(face_like(32, 32)).save(photo)
    before = photo.read_bytes()
    args = {
        "overwrite": [photo, "-o", photo],
        "threshold": [photo, "-o", tmp_path / "o.png", "--threshold", "1.5"],
        "dilate": [photo, "-o", tmp_path / "o.png", "--dilate", "-2"],
        "missing": [tmp_path / "nope.png", "-o", tmp_path / "o.png"],
        "into-input": [tmp_path, "-o", tmp_path],
    }[case]
    code = _run(["restore", *args, "--weights", tiny_weights, "--damage-weights", tiny_detector_weights])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lafin: error:") and err.count("\n") == 1
    assert photo.read_bytes() == before


def test_harmonize_fill_near_the_hole_equals_the_fill_of_everything():
    """harmonize() fills only near the hole (fast for scattered scratches): the same values."""
    import cv2

    from lafin.blend import harmonize
    from lafin.damage import HELD_OUT, make_damaged

    sample = make_damaged(face_like(120, 120, 4), np.random.default_rng(2), HELD_OUT)
    hole = (grow_mask(sample.mask, 2) > 0).astype(np.uint8)
    generated = cv2.GaussianBlur(sample.clean.astype(np.float32), (0, 0), 3) + 5
    ring = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) & (1 - hole)
    diff = sample.damaged.astype(np.float32) - generated
    expected = generated.copy()
    for c in range(3):
        channel = np.where(ring > 0, diff[..., c], 0).astype(np.float32)
        expected[..., c] += np.where(hole > 0, cv2.inpaint(channel, 1 - ring, 5, cv2.INPAINT_TELEA), 0)
    got = harmonize(sample.damaged, generated, hole)
    assert np.abs(got - expected).max() < 1e-3
