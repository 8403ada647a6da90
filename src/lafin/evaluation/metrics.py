"""The metrics of face inpainting and landmark papers, with their exact definitions.

Image metrics compare a composited output (known pixels are the input's) with the ground truth,
both HxWx3 uint8 RGB:

- :func:`psnr`: on all three RGB channels of the whole image, peak 255 (LaFIn's own scripts used
  grayscale; RGB is what the inpainting literature reports).
- :func:`ssim`: Wang et al. 2004: Gaussian window sigma 1.5 (11x11 after truncation at 3.5
  sigma), K1 = 0.01, K2 = 0.03, data range 255, population (not sample) covariances, computed per
  RGB channel and averaged (scikit-image ``structural_similarity``).
- :func:`l1_hole`: mean absolute error over the hole pixels only, in [0, 1] units.

Landmarks are (..., 68, 2) x, y pixels in iBUG 300-W order:

- :func:`nme`: mean point-to-point distance divided by the *ground truth's* outer-eye-corner
  distance (points 37 and 46 counted from 1); :func:`failure_rate`: share of faces above 8%.
- :func:`landmark_consistency`: the NME between landmarks found by one predictor on the output
  and on the ground truth (the truth's eye corners normalise).

Distribution and perceptual metrics, computed from features (the networks that produce the
features live in :mod:`lafin.evaluation.inception` and :mod:`lafin.evaluation.perceptual`):

- :func:`frechet_distance` / :func:`fid_from_features`: FID (Heusel et al. 2017).
- :func:`lpips_from_features`: LPIPS (Zhang et al. 2018).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from lafin.landmarks import OUTER_EYE_CORNERS
from lafin.landmarks import nme as landmark_nme

log = logging.getLogger(__name__)

NME_FAILURE_THRESHOLD = 0.08
"""A face whose NME exceeds this (8% of the inter-ocular distance) counts as a failure."""

IDENTITY_THRESHOLD = 0.6
"""dlib's face descriptors further apart than this are different people (dlib's own threshold)."""


def _pair(output: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(output), np.asarray(truth)
    if a.shape != b.shape:
        raise ValueError(f"output and truth differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB images, got shape {a.shape}")
    return a, b


def psnr(output: np.ndarray, truth: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all RGB values: 10 log10(peak^2 / MSE).

    Args:
        output, truth: HxWx3 RGB arrays on the 0..255 scale (uint8 or float).
        peak: the largest possible value (255 for 8-bit images).

    Returns:
        PSNR in dB; ``inf`` for identical images.
    """
    a, b = _pair(output, truth)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak * peak / mse))


def psnr_of_batch(outputs: torch.Tensor, truths: torch.Tensor) -> list[float]:
    """:func:`psnr` of each image of a batch: (B, 3, H, W) tensors in [0, 1], the outputs
    rounded to 8 bits as they would be saved (the truths are 8-bit images already)."""
    out = (outputs.detach().float() * 255).round().permute(0, 2, 3, 1).cpu().numpy()
    ref = (truths.detach().float() * 255).round().permute(0, 2, 3, 1).cpu().numpy()
    return [psnr(o, t) for o, t in zip(out, ref)]


def ssim(output: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity as Wang et al. 2004 define it, on RGB, averaged over channels.

    scikit-image's ``structural_similarity`` with ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=2`` (K1 = 0.01, K2 = 0.03; the
    mean is over the pixels whose window lies inside the image).

    Args:
        output, truth: HxWx3 uint8 RGB, at least 7x7.

    Returns:
        SSIM in [-1, 1]; 1.0 for identical images.
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(output, truth)
    return float(
        structural_similarity(
            a,
            b,
            channel_axis=2,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def l1_hole(output: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error over the hole's pixels and their three channels, in [0, 1] units.

    Args:
        output, truth: HxWx3 uint8 RGB.
        mask: HxW, nonzero = hole.

    Returns:
        mean |output - truth| / 255 inside the hole; NaN when the mask is empty.
    """
    a, b = _pair(output, truth)
    hole = np.asarray(mask) > 0
    if hole.shape != a.shape[:2]:
        raise ValueError(f"mask shape {hole.shape} differs from image shape {a.shape[:2]}")
    if not hole.any():
        return float("nan")
    diff = np.abs(a[hole].astype(np.float64) - b[hole].astype(np.float64))
    return float(diff.mean() / 255.0)


def nme(pred: np.ndarray, truth: np.ndarray) -> np.ndarray | float:
    """Normalised mean error with inter-ocular normalisation by the ground truth.

    NME = mean_i ||pred_i - truth_i|| / ||truth_36 - truth_45|| (0-based indices of the outer
    eye corners, points 37 and 46 counted from 1). Never normalised by a predicted point.

    Args:
        pred, truth: (68, 2) or (N, 68, 2) x, y pixels.

    Returns:
        A float for one face, an (N,) array for N faces (fractions: x100 for percent).
    """
    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if p.shape != t.shape or p.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must both be (..., 68, 2), got {p.shape} and {t.shape}")
    a, b = OUTER_EYE_CORNERS
    if np.any(np.linalg.norm(t[..., a, :] - t[..., b, :], axis=-1) <= 0):
        raise ValueError("ground-truth outer eye corners coincide: NME is undefined")
    value = landmark_nme(p, t)  # the one formula (lafin.landmarks.nme), checked and in float64
    return float(value) if np.ndim(value) == 0 else value


def failure_rate(nmes: Sequence[float] | np.ndarray, threshold: float = NME_FAILURE_THRESHOLD) -> float:
    """Share of faces whose NME is above ``threshold`` (default 8%); NaN for no faces."""
    values = np.asarray(nmes, np.float64)
    if values.size == 0:
        return float("nan")
    return float(np.mean(values > threshold))


def landmark_consistency(on_output: np.ndarray, on_truth: np.ndarray) -> float:
    """How far the face's structure moved: NME between the landmarks one predictor finds on the
    inpainted image and those it finds on the ground truth (normalised by the latter's outer
    eye corners). 0 when the predictor sees the same face."""
    return float(nme(on_output, on_truth))


# ---------------------------------------------------------------------------------- FID


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples, unbiased N-1 normalisation) of (N, D) features."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2):

        ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr(sqrtm(sigma1 sigma2))

    As pytorch-fid computes it: ``scipy.linalg.sqrtm`` of the product; when that is not finite
    (near-singular covariances, e.g. fewer samples than dimensions) ``eps`` is added to both
    diagonals and the root taken again; a complex result whose diagonal's imaginary part is
    below 1e-3 is replaced by its real part, a larger one is an error.

    Args:
        mu1, mu2: (D,) means. sigma1, sigma2: (D, D) covariances.

    Returns:
        The distance (>= 0 up to rounding).
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"means differ in shape: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"covariances must be ({mu1.size}, {mu1.size}), got {sigma1.shape} and {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        log.warning("FID: the product of covariances is near singular; adding %g to their diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.max(np.abs(np.diagonal(covmean).imag))
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"FID: the covariance square root has an imaginary part of "
                f"{imaginary:.3g}; the features are degenerate"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two (N, D) feature sets (e.g. Inception pool3 features, D = 2048)."""
    mu1, s1 = feature_statistics(features1)
    mu2, s2 = feature_statistics(features2)
    return frechet_distance(mu1, s1, mu2, s2)


# ---------------------------------------------------------------------------------- LPIPS


def normalize_channels(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Divide each spatial position's feature vector by its L2 norm over channels.

    Args:
        features: (B, C, H, W).
    """
    norm = torch.sqrt(torch.sum(features * features, dim=1, keepdim=True))
    return features / (norm + eps)


def lpips_from_features(
    features0: Sequence[torch.Tensor],
    features1: Sequence[torch.Tensor],
    linear_weights: Sequence[torch.Tensor],
) -> torch.Tensor:
    """The LPIPS distance from two images' backbone feature maps (Zhang et al. 2018):

        sum_l mean_hw( w_l . (n(f0_l) - n(f1_l))^2 )

    where n() unit-normalises every position's channel vector and w_l are the learned
    non-negative 1x1 linear weights of layer l.

    Args:
        features0, features1: per layer, (B, C_l, H_l, W_l) feature maps of the two images.
        linear_weights: per layer, (C_l,) or (1, C_l, 1, 1) weights.

    Returns:
        (B,) distances (0 for identical images).
    """
    if not (len(features0) == len(features1) == len(linear_weights)):
        raise ValueError(
            f"LPIPS: {len(features0)}, {len(features1)} feature maps and "
            f"{len(linear_weights)} linear layers; they must match"
        )
    total: torch.Tensor | None = None
    for f0, f1, w in zip(features0, features1, linear_weights):
        if f0.shape != f1.shape:
            raise ValueError(f"LPIPS: feature maps differ in shape: {tuple(f0.shape)} vs {tuple(f1.shape)}")
        w = w.reshape(1, -1, 1, 1).to(f0)
        if w.shape[1] != f0.shape[1]:
            raise ValueError(f"LPIPS: a linear layer has {w.shape[1]} weights for {f0.shape[1]} channels")
        diff = (normalize_channels(f0) - normalize_channels(f1)) ** 2
        layer = (diff * w).sum(dim=1).mean(dim=(1, 2))
        total = layer if total is None else total + layer
    assert total is not None, "LPIPS needs at least one layer"
    return total
