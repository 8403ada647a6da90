"""The ``refine`` stage: the frozen generator's faces, upsampled to the refiner's size, and one
optimisation step of the texture refiner that details them (adversarial, Inception perceptual
and pooled-L1 terms)."""

from __future__ import annotations

import torch
from torch import nn

from lafin.alignment import rescale_points
from lafin.data.batches import Batch
from lafin.landmarks import landmark_map
from lafin.networks.refiner import landmark_heatmap
from lafin.smoothing import gaussian_blur
from lafin.training.adversarial import Adversary
from lafin.training.components import ComponentAdversary
from lafin.training.config import TrainConfig
from lafin.training.generator_losses import GeneratorLosses
from lafin.training.stage_networks import StageNetworks


class RefineStage:
    """Makes the coarse faces, updates the patch discriminator and the refiner, then the
    refiner's moving average. ``size`` is the refiner's output size."""

    def __init__(
        self,
        config: TrainConfig,
        networks: StageNetworks,
        generator_losses: GeneratorLosses,
        adversary: Adversary,
        size: int,
    ) -> None:
        self.config = config
        self.networks = networks
        self.losses = generator_losses
        self.adversary = adversary
        self.components = ComponentAdversary(config, networks, size) if config.loss.components else None
        self.size = size

    @torch.no_grad()
    def coarse_faces(self, batch: Batch) -> torch.Tensor:
        """The frozen generator's faces for a refiner-size batch: the batch at the generator's
        size (area-downscaled; a pixel is hole if any of its source pixels is), generated with the
        true landmarks (averaged with the mirror pass with ``refiner.coarse_mirror_average``),
        blurred by ``refiner.coarse_blur`` as at inference, composited, upsampled
        back and composited with the known pixels again."""
        small = self.networks.model_config.image_size
        factor = self.size // small
        images = nn.functional.avg_pool2d(batch.images, factor)
        masks = nn.functional.max_pool2d(batch.masks, factor)
        points = rescale_points(batch.landmarks, small / self.size)
        masked = images * (1 - masks) + masks
        inputs = [masked, landmark_map(points, small), masks]
        generator = self.networks.nets["generator"]
        out = generator(*inputs)
        if self.networks.model_config.refiner.coarse_mirror_average:
            # as GeneratorRunner.generate with generator_flip_average: the mirror pass (its
            # landmark map is the mirrored map), flipped back, averaged
            out = (out + generator(*[t.flip(3) for t in inputs]).flip(3)) / 2
        blur = self.networks.model_config.refiner.coarse_blur
        if blur > 0:
            out = gaussian_blur(out, blur)
        out = out * masks + images * (1 - masks)
        coarse = nn.functional.interpolate(
            out, size=(self.size, self.size), mode="bicubic", align_corners=False
        ).clamp(0, 1)
        return coarse * batch.masks + batch.images * (1 - batch.masks)

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.config.loss
        refiner = self.networks.nets["refiner"]
        refiner.train()
        self.networks.nets["discriminator"].train()
        if self.components is not None:
            self.networks.nets["components"].train()
        coarse = self.coarse_faces(batch)
        heatmap = landmark_heatmap(batch.landmarks, self.size)
        output = refiner(coarse, batch.masks, heatmap)
        composite = output * batch.masks + batch.images * (1 - batch.masks)
        logs: dict[str, float] = {}

        train_disc, use_adv = self.adversary.schedule(step, cfg.adversarial > 0)
        train_parts, use_parts = self.adversary.schedule(step, self.components is not None)
        if train_disc:
            logs.update(
                self.adversary.patch_step(
                    batch.images, heatmap, composite.detach(), heatmap, batch.masks, step
                )
            )
        if train_parts:  # the refiner follows the true landmarks
            points = batch.landmarks
            logs.update(self.components.step(batch.images, points, composite, points, batch.masks))
        terms = {"structure_l1": self.losses.structure_l1(composite, batch.images)}
        if cfg.grid > 0:
            terms["grid"] = self.losses.grid(composite, batch.images, batch.masks)
        if cfg.detail > 0:
            terms["detail"] = self.losses.detail(composite, batch.images, batch.masks)
        if self.losses.inception is not None:
            terms.update(self.losses.inception_terms(composite, batch.images))
        if use_adv:
            terms.update(
                self.adversary.patch_generator_terms(composite, heatmap, batch.masks, batch.images, heatmap)
            )
        if use_parts:
            terms.update(
                self.components.generator_terms(
                    composite, batch.landmarks, batch.masks, batch.images, slice(None)
                )
            )
        loss = sum(terms.values())
        optim = self.networks.optims["refiner"]
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        self.networks.update_ema(step)
        logs.update({f"loss/{k}": v.item() for k, v in terms.items()})
        logs["loss/refiner"] = loss.item()
        return logs

    @torch.no_grad()
    def refined_faces(self, batch: Batch) -> torch.Tensor:
        """The moving-average refiner's composited faces, with fixed noise (validation, samples)."""
        noise = torch.randn(batch.masks.shape, generator=torch.Generator().manual_seed(0))
        out = self.networks.ema(
            self.coarse_faces(batch),
            batch.masks,
            landmark_heatmap(batch.landmarks, self.size),
            noise.to(batch.masks),
        )
        return out * batch.masks + batch.images * (1 - batch.masks)
