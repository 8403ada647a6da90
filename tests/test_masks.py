"""Hole masks: ratios within their targets, determinism, folders, mixtures, face parts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from lafin.alignment import canonical_landmarks
from lafin.masks import (
    MaskFolder,
    MaskSampler,
    block_mask,
    center_block_mask,
    hole_ratio,
    irregular_mask,
    lama_mask,
    part_mask,
    ratio_bin,
)

SEEDS = range(40)


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("target", [(0.1, 0.2), (0.3, 0.4), (0.5, 0.6), (0.05, 0.65)])
def test_irregular_ratio_in_range(size, target):
    for seed in SEEDS:
        m = irregular_mask(size, np.random.default_rng(seed), target)
        assert m.shape == (size, size) and m.dtype == np.uint8
        assert set(np.unique(m)) <= {0, 1}
        assert target[0] <= hole_ratio(m) <= target[1], (seed, hole_ratio(m))


@pytest.mark.parametrize("size", [64, 128])
def test_block_ratio_in_range(size):
    for seed in SEEDS:
        m = block_mask(size, np.random.default_rng(seed), (0.1, 0.5))
        assert 0.08 <= hole_ratio(m) <= 0.52  # rounding to whole pixels
        ys, xs = np.nonzero(m)
        assert m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()  # one rectangle


@pytest.mark.parametrize("kind,lo,hi", [("thin", 0.05, 0.3), ("medium", 0.1, 0.4), ("thick", 0.2, 0.6)])
def test_lama_sets_in_documented_ranges(kind, lo, hi):
    for seed in SEEDS:
        assert lo <= hole_ratio(lama_mask(96, np.random.default_rng(seed), kind)) <= hi


def test_center_block_is_exactly_a_quarter():
    m = center_block_mask(128)
    assert m.sum() == 64 * 64 and m[32:96, 32:96].all()


def test_same_seed_same_mask_other_seed_other_mask():
    a = irregular_mask(64, np.random.default_rng(3))
    b = irregular_mask(64, np.random.default_rng(3))
    c = irregular_mask(64, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_ratio_bins():
    m = np.zeros((10, 10), np.uint8)
    m.flat[:35] = 1
    assert ratio_bin(m) == 3
    m.flat[:70] = 1
    assert ratio_bin(m) == 6


@pytest.mark.parametrize(
    "part,indices", [("eyes", range(36, 48)), ("nose", range(27, 36)), ("mouth", range(48, 68))]
)
def test_part_masks_cover_their_landmarks_only(part, indices):
    lm = canonical_landmarks(128)
    m = part_mask(128, lm, part, rng=np.random.default_rng(0))
    inside = [m[int(round(y)), int(round(x))] for x, y in lm[list(indices)]]
    assert all(inside)
    others = {"eyes": range(48, 68), "nose": range(0, 17), "mouth": range(36, 48)}[part]
    assert not any(m[int(round(y)), int(round(x))] for x, y in lm[list(others)])


def _mask_folder(tmp_path, names_and_ratios):
    for name, ratio in names_and_ratios:
        m = np.zeros((32, 32), np.uint8)
        m.flat[: int(ratio * 1024)] = 255
        Image.fromarray(m).save(tmp_path / name)
    return tmp_path


def test_mask_folder_bins_resize_and_errors(tmp_path):
    folder = _mask_folder(tmp_path, [("00010.png", 0.05), ("06001.png", 0.35), ("10002.png", 0.55)])
    all_masks = MaskFolder(folder)
    assert len(all_masks) == 3
    mid = MaskFolder(folder, size=16, bins=[3])
    assert len(mid) == 1 and mid[0].shape == (16, 16)
    assert abs(hole_ratio(mid[0]) - 0.35) < 0.05
    assert set(np.unique(mid[0])) <= {0, 1}
    with pytest.raises(FileNotFoundError, match="no mask images"):
        MaskFolder(folder, bins=[1])
    with pytest.raises(FileNotFoundError, match="not found"):
        MaskFolder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no mask images"):
        MaskFolder(tmp_path / "empty")


def test_mask_folder_sample_is_seeded(tmp_path):
    folder = MaskFolder(
        _mask_folder(tmp_path, [(f"{i:05d}.png", 0.1 * i) for i in range(1, 6)]), augment=True
    )
    a = [folder.sample(np.random.default_rng(s)) for s in range(5)]
    b = [folder.sample(np.random.default_rng(s)) for s in range(5)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_sampler_mixture_and_unknown_kind():
    sampler = MaskSampler(32, mix={"none": 1, "center": 3})
    rng = np.random.default_rng(0)
    draws = [sampler(rng).any() for _ in range(400)]
    assert 0.68 < np.mean(draws) < 0.82  # 75% centre blocks
    with pytest.raises(ValueError, match="unknown mask type"):
        MaskSampler(32, mix={"irregularr": 1})
    with pytest.raises(ValueError, match="folder"):
        MaskSampler(32, mix={"folder": 1})


def test_sampler_draws_do_not_depend_on_key_order():
    a = MaskSampler(32, mix={"irregular": 1, "block": 1})
    b = MaskSampler(32, mix={"block": 1, "irregular": 1})
    for seed in range(5):
        assert np.array_equal(a(np.random.default_rng(seed)), b(np.random.default_rng(seed)))


def test_blob_masks_are_ragged_patches_in_the_ratio_range():
    from lafin.masks import MaskSampler, blob_mask

    rng = np.random.default_rng(0)
    ratios, parts = [], []
    for _ in range(40):
        mask = blob_mask(64, rng, (0.1, 0.5))
        assert mask.shape == (64, 64) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        ratios.append(mask.mean())
        parts.append(cv2.connectedComponents(mask, connectivity=8)[0] - 1)
    assert all(0.1 <= r <= 0.5 for r in ratios)
    assert np.std(ratios) > 0.05  # the target ratio varies
    assert np.median(parts) >= 3  # fragmented: several separate pieces, not one stroke
    # reproducible from the seed, and a MaskSampler kind
    a = blob_mask(64, np.random.default_rng(5))
    assert np.array_equal(a, blob_mask(64, np.random.default_rng(5)))
    sampler = MaskSampler(64, mix={"blobs": 1.0}, hole_ratio=(0.2, 0.3))
    assert 0.2 <= sampler(np.random.default_rng(1)).mean() <= 0.3
