"""The damage generator, the mask metrics, the detector network and its weights file, training."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import face_like
from lafin.damage import CLEAN_OLD, HELD_OUT, TRAINING, draw_damage, draw_negatives, make_damaged
from lafin.evaluation.damage_metrics import MaskCounts, mask_counts
from lafin.networks.damage_detector import (
    DamageDetector,
    DamageDetectorConfig,
    DamageWeightsError,
    inference_detector,
    load_damage_detector,
    save_damage_detector,
)

NO_SCAN = replace(TRAINING, scan=False, clean_share=0.0)


@pytest.mark.parametrize("seed", range(6))
def test_mask_is_exactly_what_is_drawn(seed):
    img = face_like(96, 128, seed)
    sample = make_damaged(img, np.random.default_rng(seed), NO_SCAN)
    on = sample.mask > 0
    assert set(np.unique(sample.mask)) <= {0, 255} and on.any()
    # outside the mask nothing changed, bit for bit; inside, the drawing changed the pixels
    assert np.array_equal(sample.damaged[~on], sample.clean[~on])
    changed = np.abs(sample.damaged.astype(int) - sample.clean.astype(int)).max(axis=2) > 0
    assert changed[on].mean() > 0.9


@pytest.mark.parametrize("kind", ["scratches", "cracks", "dust", "folds", "tears", "patches"])
def test_each_kind_of_damage_draws_into_the_mask(kind):
    none = dict(scratches=(0, 0), cracks=(0, 0), dust=(0, 0), folds=(0, 0), tears=(0, 0), patches=(0, 0))
    only = replace(NO_SCAN, **{**none, kind: (3, 3) if kind != "dust" else (30, 30)})
    img = face_like(128, 128)
    hits = 0
    for seed in range(4):
        damaged, mask = draw_damage(img, np.random.default_rng(seed), only)
        on = mask > 0
        assert np.array_equal(damaged[~on], img[~on])
        hits += on.any()
    assert hits >= 3


def test_hard_negatives_are_content_not_damage():
    img = face_like(128, 128)
    drawn = draw_negatives(img, np.random.default_rng(1), 6)
    assert (drawn != img).any()  # they change the photo ...
    sample = make_damaged(img, np.random.default_rng(1), replace(CLEAN_OLD, scan=False))
    assert not sample.mask.any()  # ... and a photo without damage has an empty mask
    assert np.array_equal(sample.clean, sample.damaged)


def test_scan_stage_treats_clean_and_damaged_alike():
    img = face_like(96, 96)
    sample = make_damaged(img, np.random.default_rng(3), replace(HELD_OUT, grain=(6.0, 6.0)))
    far = cv2.dilate(sample.mask, np.ones((9, 9), np.uint8)) == 0
    # away from the damage only JPEG's block-wide spreading can differ (same grain in both)
    diff = np.abs(sample.damaged.astype(int) - sample.clean.astype(int))[far]
    assert np.median(diff) == 0


def test_generator_is_deterministic_and_the_presets_differ():
    img = face_like(64, 64)
    a = make_damaged(img, np.random.default_rng(5), HELD_OUT)
    b = make_damaged(img, np.random.default_rng(5), HELD_OUT)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert HELD_OUT != TRAINING and HELD_OUT.clean_share == 0.0


def test_modern_photos_keep_their_look_and_still_get_damage():
    img = face_like(96, 96, 2)
    modern = replace(NO_SCAN, modern_share=1.0, negatives=(0, 0), scan=True)
    for seed in range(3):
        sample = make_damaged(img, np.random.default_rng(seed), modern)
        on = sample.mask > 0
        # no old look and no scan: the clean target is the photo itself, colour and all
        assert np.array_equal(sample.clean, img) and on.any()
        assert np.array_equal(sample.damaged[~on], img[~on])
    # without modern photos every photo gets the old look (here: always grey)
    grey = make_damaged(img, np.random.default_rng(0), replace(NO_SCAN, grey_share=1.0)).clean
    assert np.array_equal(grey[..., 0], grey[..., 2]) and not np.array_equal(img[..., 0], img[..., 2])


def test_make_damaged_rejects_bad_images():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        make_damaged(np.zeros((8, 8), np.uint8), np.random.default_rng(0))


def test_tolerant_mask_counts():
    truth = np.zeros((32, 32), np.uint8)
    truth[10, 4:28] = 255
    shifted = np.roll(truth, 1, axis=0)
    assert mask_counts(shifted, truth, tolerance=2).f1 == 1.0
    assert mask_counts(shifted, truth, tolerance=0).f1 == 0.0
    half = truth.copy()
    half[10, 16:] = 0
    counts = mask_counts(half, truth, tolerance=0)
    assert counts.precision == 1.0 and counts.recall == 0.5
    total = MaskCounts()
    total += counts
    total += mask_counts(np.zeros_like(truth), np.zeros_like(truth))
    assert total.recall == 0.5 and pytest.approx(total.f1) == 2 / 3


def _tiny_detector() -> DamageDetector:
    torch.manual_seed(0)
    model = DamageDetector(DamageDetectorConfig((2, 3, 4, 4)))
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them is tested
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (8, 9)])
def test_detector_keeps_any_size(shape):
    out = _tiny_detector()(torch.rand(2, 3, *shape))
    assert out.shape == (2, 1, *shape)


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (8, 9)])
def test_inference_form_computes_the_same_logits(shape):
    model = _tiny_detector()
    x = torch.rand(2, 3, *shape)
    with torch.no_grad():
        want = model(x)
        # from the batch-norm model (folded into a copy) and from a folded one
        for fast in (inference_detector(model), inference_detector(model.fuse())):
            assert torch.allclose(fast(x), want, atol=1e-5)
            fast_cl = fast.to(memory_format=torch.channels_last)
            assert torch.allclose(fast_cl(x.contiguous(memory_format=torch.channels_last)), want, atol=1e-5)


def test_detector_weights_round_trip(tmp_path: Path):
    model = _tiny_detector()
    path = tmp_path / "det.safetensors"
    save_damage_detector(path, model, {"step": 7})
    loaded, meta = load_damage_detector(path)
    assert meta["step"] == "7" and meta["format_version"] == "1"
    assert loaded.config == model.config
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    assert path.stat().st_size < 100_000


def test_detector_weights_are_loaded_strictly(tmp_path: Path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = tmp_path / "det.safetensors"
    save_damage_detector(path, _tiny_detector())
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors["extra"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(DamageWeightsError, match="do not match"):
        load_damage_detector(tmp_path / "extra.safetensors")
    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(DamageWeightsError, match="not a lafin damage detector"):
        load_damage_detector(tmp_path / "other.safetensors")
    newer = dict(meta, format_version="99")
    save_file(load_file(str(path)), str(tmp_path / "newer.safetensors"), metadata=newer)
    with pytest.raises(DamageWeightsError, match="newer"):
        load_damage_detector(tmp_path / "newer.safetensors")


def test_config_rejects_bad_widths():
    with pytest.raises(ValueError, match="widths"):
        DamageDetectorConfig((8, 16, 0, 4))
    with pytest.raises(ValueError, match="unknown"):
        DamageDetectorConfig.from_dict({"widths": [1, 1, 1, 1], "depth": 3})


def test_training_runs_and_writes_loadable_weights(tmp_path: Path):
    from lafin.training.damage import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(face_like(80, 80, i)).save(photos / f"{i}.png")
    config = tmp_path / "c.yaml"
    config.write_text(
        "widths: [2, 2, 2, 2]\ncrop: 48\nbatch: 2\nsteps: 2\nval_images: 2\nval_every: 1\nscale: [0.8, 1.0]\n"
    )
    out = tmp_path / "run"
    assert (
        main(
            ["--config", str(config), "--images", str(photos), "--val-images", str(photos), "--out", str(out)]
        )
        == 0
    )
    model, meta = load_damage_detector(out / "best.safetensors")
    assert model.config.widths == (2, 2, 2, 2)
    assert (out / "history.jsonl").read_text().count("\n") == 2
    # resuming a finished run does nothing more and keeps the state
    assert (
        main(
            [
                "--config",
                str(config),
                "--images",
                str(photos),
                "--val-images",
                str(photos),
                "--out",
                str(out),
                "--resume",
            ]
        )
        == 0
    )


def test_fine_tuning_starts_from_a_weights_file_and_resumes(tmp_path: Path):
    from lafin.training.damage import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(face_like(64, 64, i)).save(photos / f"{i}.png")
    start = tmp_path / "start.safetensors"
    save_damage_detector(start, _tiny_detector(), {"step": 11})
    config = tmp_path / "c.yaml"
    config.write_text(
        "widths: [2, 3, 4, 4]\ncrop: 48\nbatch: 2\nsteps: 2\nval_images: 2\n"
        "val_every: 1\nscale: [0.8, 1.0]\nlr: 0.0\nweight_decay: 0.0\n"
        "modern_share: 0.5\n"
    )
    out = tmp_path / "run"
    args = [
        "--config",
        str(config),
        "--images",
        str(photos),
        "--val-images",
        str(photos),
        "--out",
        str(out),
        "--init",
        str(start),
    ]
    assert main(args) == 0
    tuned, meta = load_damage_detector(out / "last.safetensors")
    assert meta["init"] == "start.safetensors" and meta["init_step"] == "11"
    # learning rate 0: the fine-tuned file is the starting one
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(tuned(x), load_damage_detector(start)[0](x), atol=1e-6)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(0 <= h["modern_flagged"] <= 1 for h in history)
    # resuming continues the folded network, with or without --init, and keeps its origin
    assert main([*args[:-2], "--resume", "--steps", "3"]) == 0
    assert main([*args, "--resume", "--steps", "4"]) == 0
    assert (out / "history.jsonl").read_text().count("\n") == 4
    assert load_damage_detector(out / "last.safetensors")[1]["init_step"] == "11"
    wider = tmp_path / "wide.yaml"
    wider.write_text(config.read_text().replace("[2, 3, 4, 4]", "[2, 3, 4, 5]"))
    with pytest.raises(SystemExit) as refused:
        main(["--config", str(wider), *args[2:7], str(tmp_path / "run2"), *args[8:]])
    assert refused.value.code == 2


def test_the_damage_trainer_refuses_bad_runs_in_one_line_before_any_work(tmp_path: Path, capsys):
    """Mismatched or missing photo lists, a folder holding a run without --resume/--overwrite and
    a damaged state to resume: one line and exit 2 from ``lafin train-damage``, nothing written."""
    from lafin.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(face_like(64, 64, i)).save(photos / f"{i}.png")
    (tmp_path / "one.txt").write_text("0.png")
    (tmp_path / "gone.txt").write_text("0.png 7.png")
    config = tmp_path / "c.yaml"
    config.write_text("widths: [2, 2, 2, 2]\ncrop: 48\nbatch: 2\nsteps: 1\nval_images: 2\nval_every: 1\n")
    base = ["train-damage", "--config", str(config), "--images", str(photos), "--val-images", str(photos)]

    def refused(argv, match):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err

    out = ["--out", str(tmp_path / "new")]
    refused(
        [*base, "--names", str(tmp_path / "one.txt"), "--names", str(tmp_path / "one.txt"), *out],
        "one --names per --images",
    )
    refused([*base, "--names", str(tmp_path / "gone.txt"), *out], "are missing")
    refused([*base[:4], str(tmp_path / "nowhere"), *base[5:], *out], "not a folder")
    refused([*base, "--val-names", str(tmp_path / "none.txt"), *out], "no such list")
    assert not (tmp_path / "new").exists()

    run = tmp_path / "run"
    assert main([*base, "--out", str(run)]) == 0
    before = (run / "last.safetensors").read_bytes()
    refused([*base, "--out", str(run)], "holds a run")
    refused([*base, "--out", str(run), "--resume", "--overwrite"], "give one of them")
    assert (run / "last.safetensors").read_bytes() == before
    (run / "state.pt").write_bytes(b"truncated")
    refused([*base, "--out", str(run), "--resume"], "cannot be resumed")
    assert main([*base, "--out", str(run), "--overwrite"]) == 0  # starts again in it
    assert (run / "history.jsonl").read_text().count("\n") == 1


def test_training_config_rejects_unknown_keys(tmp_path: Path):
    from lafin.training.damage import DamageTrainConfig

    path = tmp_path / "c.yaml"
    path.write_text("crop: 64\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        DamageTrainConfig.from_yaml(path)


def test_the_shipped_damage_training_config_parses():
    from pathlib import Path

    from lafin.training.damage import DamageTrainConfig

    path = Path(__file__).resolve().parents[1] / "configs" / "damage-detector.yaml"
    config = DamageTrainConfig.from_yaml(path)  # unknown keys are an error
    assert config.steps > 0 and config.batch > 0 and len(config.widths) == 4
    # the modern-photo fine-tune (tests/test_configs.py checks its documented command)
    config = DamageTrainConfig.from_yaml(path, ["modern_share=0.35"])
    assert config.modern_share > 0 and config.damage.modern_share == config.modern_share
    with pytest.raises(ValueError, match="modern_share"):
        DamageTrainConfig(modern_share=1.5)
