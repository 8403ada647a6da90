"""Evaluation: the field's inpainting and landmark metrics, and ``lafin evaluate``.

- :mod:`lafin.evaluation.metrics`: PSNR, SSIM, L1 in the hole, NME and failure rate, landmark
  consistency, the Frechet distance (FID arithmetic) and the LPIPS arithmetic.
- :mod:`lafin.evaluation.realism`: realism: KID, the hole-detail ratio (also on torch batches,
  for validation during training) and landmark fidelity.
- :mod:`lafin.evaluation.inception`: the FID Inception-v3 feature extractor (pytorch-fid's
  weights file, or a TorchScript Inception), loaded from a file the user gives
  (:func:`load_inception`; ``extractor.tensor_features(batch)`` for torch batches).
- :mod:`lafin.evaluation.perceptual`: LPIPS from the ``lpips`` package's linear layers plus an
  AlexNet or VGG-16 backbone file.
- :mod:`lafin.evaluation.identity`: dlib's face descriptor distance (identity preservation).
- :mod:`lafin.evaluation.runner`: the command (``lafin evaluate``): arguments, masks, methods
  and the run over the images.
- :mod:`lafin.evaluation.report`: aggregation by bin, tables, plots, the best/worst grid,
  results.json and report.md.

No weights are ever downloaded: metrics whose weights are not given are reported as unavailable.
"""

from lafin.evaluation.inception import load_inception
from lafin.evaluation.metrics import (
    IDENTITY_THRESHOLD,
    NME_FAILURE_THRESHOLD,
    failure_rate,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    l1_hole,
    landmark_consistency,
    lpips_from_features,
    nme,
    psnr,
    ssim,
)
from lafin.evaluation.realism import (
    hole_detail_ratio,
    hole_detail_ratio_batch,
    kid,
    kid_difference,
    landmark_fidelity,
    median_ratio,
)

__all__ = [
    "IDENTITY_THRESHOLD",
    "NME_FAILURE_THRESHOLD",
    "failure_rate",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "l1_hole",
    "landmark_consistency",
    "lpips_from_features",
    "nme",
    "psnr",
    "ssim",
    "hole_detail_ratio",
    "hole_detail_ratio_batch",
    "kid",
    "kid_difference",
    "landmark_fidelity",
    "median_ratio",
    "load_inception",
]
