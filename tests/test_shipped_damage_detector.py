"""The shipped damage detector: it loads strictly, it is small, and it finds drawn damage.

Uses the built-in example face (no dataset). A random or broken detector fails: it finds either
nothing or everything; the bounds are loose sanity checks, not the benchmark's numbers
(benchmarks/damage.py, docs/MODEL_CARD.md).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lafin.damage import HELD_OUT, make_damaged
from lafin.evaluation.damage_metrics import MaskCounts, mask_counts
from lafin.examples import example_face
from lafin.restore import default_damage_weights_path

pytestmark = pytest.mark.skipif(
    not default_damage_weights_path().is_file(),
    reason=f"no shipped detector at {default_damage_weights_path()}",
)


def test_shipped_detector_file():
    from lafin.networks.damage_detector import load_damage_detector

    path = default_damage_weights_path()
    assert path.stat().st_size < 2_000_000
    model, meta = load_damage_detector(path)
    assert meta["format_version"] == "1" and "step" in meta
    assert sum(p.numel() for p in model.parameters()) < 500_000


def test_shipped_detector_finds_drawn_scratches_and_leaves_the_clean_face(tiny_model):
    face = example_face(256)
    counts = MaskCounts()
    for seed in range(3):
        sample = make_damaged(face, np.random.default_rng(seed), replace(HELD_OUT, tears=(0, 0)))
        counts += mask_counts(tiny_model.detect_damage(sample.damaged), sample.mask)
    assert counts.f1 > 0.5
    assert (tiny_model.detect_damage(face) > 0).mean() < 0.02
