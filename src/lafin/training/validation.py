"""Judges the moving-average network during training: validation metrics on fixed faces and
holes (through :mod:`lafin.evaluation`) and the sample grids."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from lafin import losses
from lafin.data.batches import Batch, sample_batch
from lafin.data.cache import FaceCache
from lafin.landmarks import landmark_map
from lafin.training.config import TrainConfig
from lafin.training.refine_stage import RefineStage
from lafin.training.stage_networks import StageNetworks


class Validator:
    """Validation and samples of one run; ``refine_stage`` makes the refine stage's faces."""

    def __init__(
        self,
        config: TrainConfig,
        networks: StageNetworks,
        size: int,
        mask_fn: Callable[[np.random.Generator, np.ndarray], np.ndarray],
        device: torch.device,
        memory_format: torch.memory_format,
        refine_stage: RefineStage | None = None,
    ) -> None:
        self.config = config
        self.networks = networks
        self.size = size
        self.mask_fn = mask_fn
        self.device = device
        self.memory_format = memory_format
        self.refine_stage = refine_stage
        self._inception = None  # loaded at the first KID
        self._real_features: np.ndarray | None = None

    @torch.no_grad()
    def validate(self, val: FaceCache) -> dict[str, float]:
        """Fixed faces and holes (seeded independently of training): PSNR of the composited EMA
        output, the hole-detail ratio (median, as the realism benchmarks give it: PSNR alone
        rewards a blur) and, with a landmark predictor, the NME of its points on the output
        against its points on the true face (landmark fidelity); or landmark NME for the
        landmark stage."""
        from lafin.evaluation.metrics import psnr_of_batch
        from lafin.evaluation.realism import hole_detail_ratio_batch, median_ratio
        from lafin.landmarks import nme

        results: dict[str, list[float]] = {}
        faces = np.arange(min(len(val), self.config.val_batches * self.config.batch_size))
        for batch in self.fixed_batches(val, faces, seed=12345):
            if self.config.stage == "landmarks":
                pred = self.networks.ema(batch.masked).view(-1, 68, 2) * self.size
                err = nme(pred.cpu().numpy(), batch.landmarks.cpu().numpy())
                results.setdefault("val/nme", []).extend(err.tolist())
                continue
            comp = self.composite(batch)
            results.setdefault("val/psnr", []).extend(psnr_of_batch(comp, batch.images))
            results.setdefault("val/ssim", []).extend(
                losses.ssim((comp * 255).round() / 255, batch.images).tolist()
            )
            results.setdefault("val/l1_hole", []).append(
                losses.masked_l1(comp, batch.images, batch.masks).item()
            )
            ratios = hole_detail_ratio_batch(
                comp.float().cpu(), batch.images.float().cpu(), batch.masks.cpu()
            )
            results.setdefault("val/detail_ratio", []).extend(ratios.tolist())
            if "landmarks" in self.networks.nets and self.config.stage != "refine":
                # landmark fidelity: the frozen predictor's points on the output against those it
                # finds on the true face (the benchmarks' definition, free of label noise)
                found = self.networks.predict_points(comp, self.size).cpu().numpy()
                truth = self.networks.predict_points(batch.images, self.size).cpu().numpy()
                results.setdefault("val/landmark_fidelity", []).extend(nme(found, truth).tolist())
        metrics = {
            k: median_ratio(v) if k == "val/detail_ratio" else float(np.mean(v)) for k, v in results.items()
        }
        if self.config.val_kid_faces and self.config.stage != "landmarks":
            metrics["val/kid_x1e3"] = self.kid(val) * 1e3
        return metrics

    @torch.no_grad()
    def kid(self, val: FaceCache) -> float:
        """KID between ``val_kid_faces`` validation faces and the composites of them (see
        :class:`~lafin.training.config.TrainConfig`); the faces, their holes and the KID subsets
        are seeded, so the value changes only with the network."""
        from lafin.evaluation.inception import load_inception
        from lafin.evaluation.realism import kid

        cfg = self.config
        if self._inception is None:
            self._inception = load_inception(cfg.val_inception or cfg.loss.inception_weights, self.device)
        n = min(len(val), cfg.val_kid_faces)
        # a sample, not the first faces: a cache in file order can be sorted by head pose
        faces = np.sort(np.random.default_rng(54321).choice(len(val), n, replace=False))
        real, fake = [], []
        for batch in self.fixed_batches(val, faces, seed=12346):
            if self._real_features is None:
                real.append(self._inception.tensor_features(batch.images.float()))
            fake.append(self._inception.tensor_features(self.composite(batch).float().clamp(0, 1)))
        if self._real_features is None:
            self._real_features = np.concatenate(real)
        mean, _ = kid(self._real_features, np.concatenate(fake), num_subsets=10, subset_size=min(100, n))
        return mean

    def fixed_batches(self, val: FaceCache, faces: np.ndarray, seed: int) -> Iterator[Batch]:
        """``faces`` of ``val`` in batches of the run's size, unflipped, each with a hole drawn
        from the run's mask mix by a generator seeded with ``seed``: the same every time."""
        rng = np.random.default_rng(seed)
        for start in range(0, len(faces), self.config.batch_size):
            idx = faces[start : start + self.config.batch_size]
            batch = sample_batch(val, len(idx), rng, self.mask_fn, size=self.size, flip=False, indices=idx)
            yield batch.to(self.device, self.memory_format)

    def composite(self, batch: Batch) -> torch.Tensor:
        """The EMA network's composited output for a validation or sample batch."""
        if self.refine_stage is not None:
            return self.refine_stage.refined_faces(batch)
        points = batch.landmarks
        if self.config.stage == "joint":
            points = self.networks.predict_points(batch.masked, self.size)
        out = self.networks.ema(batch.masked, landmark_map(points, self.size), batch.masks)
        return out * batch.masks + batch.images * (1 - batch.masks)

    @torch.no_grad()
    def save_samples(self, batch: Batch, path: Path) -> None:
        """Grid: masked input | landmarks | output | truth, one row per face (first 4)."""
        from PIL import Image

        from lafin.landmarks import draw_landmarks

        k = min(4, batch.images.shape[0])
        to_np = lambda t: (t.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        masked, truth = to_np(batch.masked[:k]), to_np(batch.images[:k])
        rows = []
        if self.config.stage == "landmarks":  # masked | predicted points | true points
            pred = self.networks.ema(batch.masked[:k]).view(-1, 68, 2) * self.size
            for i in range(k):
                predicted = draw_landmarks(masked[i], pred[i].cpu().numpy())
                labelled = draw_landmarks(truth[i], batch.landmarks[i].cpu().numpy())
                rows.append(np.concatenate([masked[i], predicted, labelled], 1))
        elif self.refine_stage is not None:  # masked | the generator's face | refined | truth
            part = Batch(batch.images[:k], batch.masks[:k], batch.landmarks[:k])
            coarse, comp = to_np(self.refine_stage.coarse_faces(part)), to_np(self.composite(part))
            for i in range(k):
                rows.append(np.concatenate([masked[i], coarse[i], comp[i], truth[i]], 1))
        else:
            points = batch.landmarks[:k]
            if self.config.stage == "joint":
                points = self.networks.predict_points(batch.masked[:k], self.size)
            comp = to_np(self.composite(Batch(batch.images[:k], batch.masks[:k], points)))
            for i in range(k):
                guide = draw_landmarks(masked[i], points[i].cpu().numpy())
                rows.append(np.concatenate([masked[i], guide, comp[i], truth[i]], 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, 0)).save(path)
