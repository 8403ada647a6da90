"""Damage-mask metrics: pixel precision, recall and F1 with a distance tolerance.

A predicted pixel counts as correct if a true damage pixel lies within ``tolerance`` pixels
(chessboard distance: a (2t+1)-square around it), and a true pixel counts as found if a
predicted pixel lies that close: thin scratches drawn anti-aliased have no exact edge, and a
one-pixel offset must not count as two errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class MaskCounts:
    """Counts summed over images; the ratios are computed from the sums (micro average)."""

    predicted: int = 0
    predicted_hit: int = 0
    true: int = 0
    true_found: int = 0

    def __iadd__(self, other: "MaskCounts") -> "MaskCounts":
        self.predicted += other.predicted
        self.predicted_hit += other.predicted_hit
        self.true += other.true
        self.true_found += other.true_found
        return self

    @property
    def precision(self) -> float:
        return self.predicted_hit / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_found / self.true if self.true else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _grow(mask: np.ndarray, tolerance: int) -> np.ndarray:
    if tolerance <= 0:
        return mask
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def mask_counts(predicted: np.ndarray, truth: np.ndarray, tolerance: int = 2) -> MaskCounts:
    """Counts of one image: ``predicted`` and ``truth`` HxW, nonzero = damage."""
    if predicted.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {predicted.shape} vs {truth.shape}")
    pred, true = predicted > 0, truth > 0
    return MaskCounts(
        int(pred.sum()),
        int((pred & _grow(true, tolerance)).sum()),
        int(true.sum()),
        int((true & _grow(pred, tolerance)).sum()),
    )
