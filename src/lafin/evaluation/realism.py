"""Realism metrics: do the generated holes look like real faces, not like smooth averages?

- :func:`kid`: Kernel Inception Distance (Bińkowski et al. 2018), the unbiased MMD² between two
  feature sets with the cubic polynomial kernel, averaged over random subsets. Unlike FID it has
  no bias that depends on the number of images, so it is usable with a few hundred faces.
- :func:`hole_detail_ratio`: how much fine detail (variance of the Laplacian) the output has
  inside the hole, relative to the ground truth there. 1 = as detailed as the truth; a blurry,
  averaged fill gives much less than 1. :func:`hole_detail_ratio_batch` is the same measure on
  torch batches (for validation during training); :func:`median_ratio` aggregates it.
- :func:`landmark_fidelity`: does the generated face follow the landmarks it was given? The NME
  between the landmark predictor's points on the (unmasked) output and the guiding landmarks.

docs/EVALUATION.md defines each precisely.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lafin.evaluation.metrics import nme
from lafin.edit_hole import hole_over_edit

log = logging.getLogger(__name__)

KID_SUBSET_SIZE = 1000
"""Bińkowski et al.'s (and clean-fid's, torch-fidelity's) subset size; capped at the set size."""
KID_SUBSETS = 100
DETAIL_ERODE = 3
"""Pixels the hole is eroded by before the detail ratio, so the seam does not count."""
GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights (what ``cv2.cvtColor(..., COLOR_RGB2GRAY)`` uses), applied in float."""
MID_BAND_SMOOTH = 1.0
"""Sigma (px) of the mid-band detail ratio's Gaussian (``hole_detail_ratio(..., smooth=...)``):
amplitude x0.007 at period 2 px (what alternates pixel by pixel), x0.29 at 4 px, x0.73 at 8 px."""
LAPLACIAN_KERNEL = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
"""The 4-neighbour Laplacian (``cv2.Laplacian(..., ksize=1)``)."""
_VARIANCE_FLOOR = 1e-6  # truth Laplacian variance (0..255 grey) below this: a flat hole, no ratio
_GRAM_LIMIT = 3000  # up to this many features per set, Gram matrices are computed once


# ---------------------------------------------------------------------------------- KID


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    m = k_xx.shape[0]
    within = ((k_xx.sum() - np.trace(k_xx)) + (k_yy.sum() - np.trace(k_yy))) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def _as_features(features: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, np.float64)


def kid_subset_values(
    features_a: np.ndarray | torch.Tensor,
    features_b: np.ndarray | torch.Tensor,
    num_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> np.ndarray:
    """The unbiased MMD² of each of :func:`kid`'s subsets, (num_subsets,) in draw order.

    The draws depend only on the seed, the subset size and the sets' sizes: two methods scored
    on the same faces against the same reference get the same rows of each in every subset,
    which :func:`kid_difference` pairs."""
    a, b = _as_features(features_a), _as_features(features_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs (n, d) features of the same d, got {a.shape} and {b.shape}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be at least 1, got {num_subsets}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(
            f"KID needs at least 2 samples per set (subset size {m}; sets of {len(a)} and {len(b)})"
        )
    rng = np.random.default_rng(seed)
    whole = max(len(a), len(b)) <= _GRAM_LIMIT
    if whole:  # every subset's kernel values are entries of these
        g_aa, g_bb, g_ab = (_polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b))
    values = np.empty(num_subsets)
    for s in range(num_subsets):
        ia = rng.choice(len(a), m, replace=False)
        ib = rng.choice(len(b), m, replace=False)
        if whole:
            values[s] = _mmd2_unbiased(g_aa[np.ix_(ia, ia)], g_bb[np.ix_(ib, ib)], g_ab[np.ix_(ia, ib)])
        else:
            x, y = a[ia], b[ib]
            values[s] = _mmd2_unbiased(
                _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
            )
    return values


def kid(
    features_a: np.ndarray | torch.Tensor,
    features_b: np.ndarray | torch.Tensor,
    num_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance between two feature sets (Bińkowski et al. 2018).

    For each of ``num_subsets`` subsets, m = min(subset_size, n_a, n_b) rows are drawn without
    replacement from each set (``numpy.random.default_rng(seed)``), and the unbiased MMD²
    estimate with the kernel k(x, y) = (x·y / d + 1)³ is computed:

        1/(m(m-1)) Σ_{i≠j} [k(a_i, a_j) + k(b_i, b_j)]  -  2/m² Σ_{i,j} k(a_i, b_j)

    Args:
        features_a, features_b: (n_a, d) and (n_b, d) features (e.g. Inception pool3, d = 2048).
        num_subsets: how many subsets are averaged.
        subset_size: the subset size before capping at the sets' sizes.
        seed: seed of the subset draws.

    Returns:
        (mean, std) over the subsets. The estimate is unbiased, so it can be slightly negative
        for sets from the same distribution. When m equals both set sizes every subset is the
        whole set and std is 0: pass a smaller ``subset_size`` for a spread.
    """
    values = kid_subset_values(features_a, features_b, num_subsets, subset_size, seed)
    return float(values.mean()), float(values.std())


def kid_difference(
    features_a: np.ndarray | torch.Tensor,
    features_b: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    num_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID(a, reference) - KID(b, reference) over paired subsets: (mean, std) of the per-subset
    differences.

    ``features_a`` and ``features_b`` are two methods' outputs on the same faces, row for row
    (the same count); each subset takes the same rows of both and of ``reference``. The part of
    each subset's MMD² that comes from which faces and which references were drawn is then
    shared and cancels: for two alike methods (two candidate weights) the spread of the
    difference is far below either KID's (:func:`kid`'s std), so a difference that two
    overlapping ``mean ± std`` hide can be read. Negative: ``a`` is closer to the reference."""
    a, b = _as_features(features_a), _as_features(features_b)
    if a.shape != b.shape:
        raise ValueError(
            f"paired KID needs two methods' features on the same faces, got {a.shape} and {b.shape}"
        )
    diff = kid_subset_values(a, reference, num_subsets, subset_size, seed) - kid_subset_values(
        b, reference, num_subsets, subset_size, seed
    )
    return float(diff.mean()), float(diff.std())


# ---------------------------------------------------------------------------------- detail


def _grey(image: np.ndarray) -> np.ndarray:
    rgb = np.asarray(image, np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB images, got shape {rgb.shape}")
    return rgb @ np.array(GREY_WEIGHTS)


def eroded_hole(mask: np.ndarray, erode: int = DETAIL_ERODE) -> np.ndarray:
    """The hole (nonzero pixels of an HxW mask) eroded by ``erode`` px with a square
    (2·erode+1)² structuring element; the image border does not erode it. HxW bool."""
    hole = (np.asarray(mask) > 0).astype(np.uint8)
    if hole.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {hole.shape}")
    if erode < 0:
        raise ValueError(f"erode must be >= 0, got {erode}")
    if erode:
        hole = cv2.erode(hole, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    return hole.astype(bool)


def laplacian(grey: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of a float image, borders reflected (OpenCV's BORDER_REFLECT_101)."""
    return cv2.filter2D(
        np.asarray(grey, np.float64), cv2.CV_64F, LAPLACIAN_KERNEL, borderType=cv2.BORDER_REFLECT_101
    )


def hole_detail_ratio(
    output: np.ndarray,
    truth: np.ndarray,
    mask: np.ndarray,
    erode: int = DETAIL_ERODE,
    smooth: float = 0.0,
) -> float:
    """Var(Laplacian(grey(output))) / Var(Laplacian(grey(truth))) inside the eroded hole.

    grey = 0.299 R + 0.587 G + 0.114 B in float (no rounding); the Laplacian is the 3x3
    4-neighbour kernel with reflected borders, computed on the whole image; the variance
    (population) is over the pixels of the hole eroded by ``erode`` px (:func:`eroded_hole`),
    so the seam between known and generated pixels does not count.

    Args:
        output, truth: HxWx3 RGB, same scale (uint8 0..255, or floats).
        mask: HxW, nonzero = hole.
        erode: erosion in pixels (default 3).
        smooth: sigma (px) of a Gaussian applied to both greys before the Laplacian (0: none).
            With :data:`MID_BAND_SMOOTH` the ratio is of the mid band (a Laplacian of Gaussian):
            a pattern of period 2 px (a generator's checkerboard) is gone, texture of period
            4 px and more stays; the plain ratio counts such a pattern as detail.

    Returns:
        The ratio (1 = as much fine detail as the truth, < 1 smoother, > 1 noisier); NaN when
        the eroded hole is empty or the truth is flat there (variance below 1e-6 on the
        0..255 scale).
    """
    out, tru = np.asarray(output), np.asarray(truth)
    if out.shape != tru.shape:
        raise ValueError(f"output and truth differ in shape: {out.shape} vs {tru.shape}")
    inner = eroded_hole(mask, erode)
    if inner.shape != out.shape[:2]:
        raise ValueError(f"mask shape {inner.shape} differs from image shape {out.shape[:2]}")
    if not inner.any():
        return float("nan")
    scale = 255.0 if np.issubdtype(tru.dtype, np.floating) and tru.max() <= 1.0 else 1.0
    grey_out, grey_truth = _grey(out), _grey(tru)
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    if smooth > 0:
        grey_out, grey_truth = (
            cv2.GaussianBlur(g, (0, 0), smooth, borderType=cv2.BORDER_REFLECT_101)
            for g in (grey_out, grey_truth)
        )
    v_out = float(laplacian(grey_out)[inner].var())
    v_truth = float(laplacian(grey_truth)[inner].var())
    if v_truth * scale * scale < _VARIANCE_FLOOR:
        return float("nan")
    return v_out / v_truth


def hole_colour_error(output: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """CIELAB distance (ΔE 1976) between the mean colours of output and truth over the hole.

    The fill's overall colour, not its detail: a cast (a greener or paler skin than the truth)
    scores high, a sharp fill of the right colour low; a blur of the right colour scores low too,
    so this is a guard beside the realism metrics, never a goal on its own. Means are taken over
    the hole's pixels in RGB (uint8 0..255), then converted (OpenCV's sRGB → L*a*b*, D65).
    NaN for an empty hole.
    """
    out, tru = np.asarray(output), np.asarray(truth)
    if out.shape != tru.shape:
        raise ValueError(f"output and truth differ in shape: {out.shape} vs {tru.shape}")
    hole = np.asarray(mask) > 0
    if hole.shape != out.shape[:2]:
        raise ValueError(f"mask shape {hole.shape} differs from image shape {out.shape[:2]}")
    if not hole.any():
        return float("nan")
    means = np.stack([out[hole].mean(axis=0), tru[hole].mean(axis=0)]).astype(np.float32) / 255.0
    lab = cv2.cvtColor(means[None], cv2.COLOR_RGB2LAB)[0]
    return float(np.linalg.norm(lab[0] - lab[1]))


def edge_steps(output: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(output's, truth's) mean absolute step across the hole's edge, in grey levels.

    The steps are taken between each pair of 4-neighbours of which one is in the hole and the
    other known (grey = the mean of RGB, 0..255). The truth's step is the photo's own contrast
    there; the output's larger than it is a seam, a fill that does not meet the pixels around
    it. Aggregate over images as the ratio of the means (``nan`` for a hole without an edge).
    """
    out, tru = np.asarray(output, np.float32), np.asarray(truth, np.float32)
    if out.shape != tru.shape:
        raise ValueError(f"output and truth differ in shape: {out.shape} vs {tru.shape}")
    hole = np.asarray(mask) > 0
    if hole.shape != out.shape[:2]:
        raise ValueError(f"mask shape {hole.shape} differs from image shape {out.shape[:2]}")
    if out.ndim == 3:
        out, tru = out.mean(axis=2), tru.mean(axis=2)
    steps_out, steps_truth = [], []
    for axis in (0, 1):
        across = np.diff(hole.astype(np.int8), axis=axis) != 0
        steps_out.append(np.abs(np.diff(out, axis=axis))[across])
        steps_truth.append(np.abs(np.diff(tru, axis=axis))[across])
    step_out, step_truth = np.concatenate(steps_out), np.concatenate(steps_truth)
    if not step_out.size:
        return float("nan"), float("nan")
    return float(step_out.mean()), float(step_truth.mean())


def grid_contrasts(
    output: np.ndarray, truth: np.ndarray, mask: np.ndarray, erode: int = DETAIL_ERODE
) -> tuple[float, float]:
    """(output's, truth's) 2-px grid contrast inside the hole: how unequal the steps between
    neighbouring pixels are at even and at odd positions (:func:`grid_contrast_batch`, on the
    hole eroded by ``erode`` px).

    A texture made in 2x2 blocks (features upsampled by nearest-neighbour) has small steps
    inside the blocks and large ones between them; a photo's texture has no such grid (its
    contrast is resampling and sampling noise). ``nan`` when an axis has fewer than 16 pairs of
    either parity. Aggregate over images as the ratio of the means.
    """
    out, tru = np.asarray(output, np.float64), np.asarray(truth, np.float64)
    if out.shape != tru.shape:
        raise ValueError(f"output and truth differ in shape: {out.shape} vs {tru.shape}")
    hole = eroded_hole(mask, erode)
    if hole.shape != out.shape[:2]:
        raise ValueError(f"mask shape {hole.shape} differs from image shape {out.shape[:2]}")
    rows, cols = hole[:-1] & hole[1:], hole[:, :-1] & hole[:, 1:]
    if min(rows[0::2].sum(), rows[1::2].sum(), cols[:, 0::2].sum(), cols[:, 1::2].sum()) < 16:
        return float("nan"), float("nan")
    images = torch.from_numpy(np.stack([out, tru]).reshape(2, *out.shape[:2], -1)).permute(0, 3, 1, 2)
    masks = torch.from_numpy(hole).to(torch.float64).expand(2, 1, *hole.shape)
    contrast = grid_contrast_batch(images, masks)
    return float(contrast[0]), float(contrast[1])


def grid_contrast_batch(images: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """:func:`grid_contrasts` of a torch batch, differentiable (``loss.grid`` trains on it).

    Along each axis, the mean absolute step between 4-neighbours that are both in the hole is
    taken separately for the pairs starting at an even and at an odd coordinate; the contrast is
    their difference over their mean, averaged over the two axes (grey = the mean of the
    channels). ``images`` (B, C, H, W), ``masks`` (B, 1, H, W) with the hole where > 0.5;
    returns (B,). Texture made in 2x2 blocks scores up to 2, a photo a few hundredths.
    """
    grey = images.mean(dim=1)
    hole = (masks[:, 0] > 0.5).to(grey.dtype)
    contrasts = []
    for axis in (1, 2):
        n = grey.shape[axis] - 1
        steps = (grey.narrow(axis, 1, n) - grey.narrow(axis, 0, n)).abs()
        pairs = hole.narrow(axis, 1, n) * hole.narrow(axis, 0, n)
        shape = [1, 1, 1]
        shape[axis] = n
        even = (torch.arange(n, device=grey.device) % 2 == 0).to(grey.dtype).view(shape)
        means = [
            (steps * pairs * parity).sum(dim=(1, 2)) / (pairs * parity).sum(dim=(1, 2)).clamp_min(1.0)
            for parity in (even, 1 - even)
        ]
        contrasts.append((means[0] - means[1]).abs() / ((means[0] + means[1]) / 2).clamp_min(eps))
    return (contrasts[0] + contrasts[1]) / 2


@torch.no_grad()
def hole_detail_ratio_batch(
    outputs: torch.Tensor, truths: torch.Tensor, masks: torch.Tensor, erode: int = DETAIL_ERODE
) -> torch.Tensor:
    """:func:`hole_detail_ratio` for a torch batch (cheap enough for every validation step).

    Args:
        outputs, truths: (B, 3, H, W) RGB in [0, 1].
        masks: (B, 1, H, W) or (B, H, W), hole where > 0.5 (binary 0/1 masks).
        erode: erosion of the hole in pixels.

    Returns:
        (B,) float64 ratios on the CPU, NaN where the eroded hole is empty or the truth flat
        (aggregate with :func:`median_ratio`).
    """
    if outputs.shape != truths.shape or outputs.ndim != 4 or outputs.shape[1] != 3:
        raise ValueError(
            f"expected two (B, 3, H, W) batches, got {tuple(outputs.shape)} and {tuple(truths.shape)}"
        )
    if masks.ndim == 3:
        masks = masks[:, None]
    if masks.shape[0] != outputs.shape[0] or masks.shape[1] != 1 or masks.shape[2:] != outputs.shape[2:]:
        raise ValueError(f"masks {tuple(masks.shape)} do not fit images {tuple(outputs.shape)}")
    (v_out, count), (v_truth, _) = (
        hole_laplacian_variance(images.double(), masks, erode) for images in (outputs, truths)
    )
    ratio = v_out / v_truth.clamp(min=_VARIANCE_FLOOR)
    ratio[(count == 0) | (v_truth < _VARIANCE_FLOOR)] = float("nan")
    return ratio.cpu()


def hole_laplacian_variance(
    images: torch.Tensor, masks: torch.Tensor, erode: int = DETAIL_ERODE, smooth: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the variance of the grey Laplacian (0..255 scale) inside the hole eroded by
    ``erode`` px, and that hole's pixel count: the two halves of :func:`hole_detail_ratio_batch`,
    differentiable (``loss.detail`` trains on them). ``images`` (B, 3, H, W) in [0, 1], ``masks``
    (B, 1, H, W), hole where > 0.5; ``smooth``: sigma of a Gaussian on the grey first (reflected
    borders; :data:`MID_BAND_SMOOTH` gives the mid band). Returns ((B,), (B,))."""
    weights = torch.tensor(GREY_WEIGHTS, dtype=images.dtype, device=images.device)
    grey = torch.einsum("bchw,c->bhw", images * 255.0, weights)[:, None]
    if smooth > 0:
        radius = max(1, int(3 * smooth + 0.5))
        t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
        g = torch.exp(-(t**2) / (2 * smooth * smooth))
        g = g / g.sum()
        grey = F.pad(grey, (radius,) * 4, mode="reflect")
        grey = F.conv2d(F.conv2d(grey, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    kernel = torch.from_numpy(LAPLACIAN_KERNEL).to(images).reshape(1, 1, 3, 3)
    lap = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="reflect"), kernel)[:, 0]
    hole = (masks > 0.5).to(images.dtype)
    if erode:  # min-pool; max_pool2d's -inf padding keeps the image border from eroding
        hole = -F.max_pool2d(-hole, 2 * erode + 1, stride=1, padding=erode)
    inner = (hole[:, 0] > 0.5).to(images.dtype)
    count = inner.sum(dim=(1, 2))
    mean = (lap * inner).sum(dim=(1, 2)) / count.clamp(min=1)
    variance = (((lap - mean[:, None, None]) ** 2) * inner).sum(dim=(1, 2)) / count.clamp(min=1)
    return variance, count


def median_ratio(ratios: Sequence[float] | np.ndarray | torch.Tensor) -> float:
    """The median of the finite ratios (NaN when there are none): how detail ratios aggregate
    (a few flat holes give huge ratios; the median ignores them)."""
    values = np.asarray(ratios.cpu() if isinstance(ratios, torch.Tensor) else ratios, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


# ---------------------------------------------------------------------------------- landmarks


def mask_with_edit(mask: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``mask`` joined with the hole the product gives an edit of the landmarks
    (:func:`lafin.edit_hole.hole_over_edit`, as ``lafin inpaint --expression`` and the web demo:
    a box over every point that moved by at least 1% of the face, kept within the face's crop).

    Landmark fidelity to *edited* landmarks is measured on this mask: the known pixels are kept
    as they are, so an edit of points outside the hole could not show in any output (a mouth
    outside the hole stays closed), and a score there would measure the mask, not the
    generator.

    Args:
        mask: HxW, nonzero = hole.
        before, after: (68, 2) x, y pixels of the same image, before and after the edit.

    Returns:
        HxW uint8, 255 in the joined hole, 0 elsewhere.
    """
    hole = np.asarray(mask) > 0
    if hole.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {hole.shape}")
    return (hole_over_edit(hole, before, after) * 255).astype(np.uint8)


def landmark_fidelity(model: Any, output_image: np.ndarray, guiding_landmarks: np.ndarray) -> float:
    """How closely a generated face follows the landmarks it was generated from.

    The landmark predictor runs on the whole output (an empty mask: nothing hidden), and its
    68 points are compared with ``guiding_landmarks`` by :func:`lafin.evaluation.metrics.nme`
    (normalised by the guiding landmarks' outer-eye-corner distance).

    Args:
        model: a :class:`lafin.LaFInModel` (anything with ``predict_landmarks(image, mask)``
            returning (68, 2) points in the image's pixels).
        output_image: HxWx3 uint8 RGB, the generator's (composited) output.
        guiding_landmarks: (68, 2) x, y pixels of the same image, the landmarks given to the
            generator.

    Returns:
        The NME (a fraction; x100 for percent). 0 = the predictor finds exactly the guiding
        landmarks on the output.
    """
    image = np.asarray(output_image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB output image, got shape {image.shape}")
    found = model.predict_landmarks(image, np.zeros(image.shape[:2], np.uint8))
    return float(nme(np.asarray(found), np.asarray(guiding_landmarks)))
