"""One optimisation step of the generator stages: ``inpaint`` (the generator follows the
batch's landmarks, possibly edited) and ``joint`` (it follows the frozen predictor's)."""

from __future__ import annotations

import torch

from lafin.data.batches import Batch
from lafin.landmarks import landmark_map
from lafin.networks.refiner import landmark_heatmap
from lafin.training.adversarial import Adversary
from lafin.training.components import ComponentAdversary
from lafin.training.config import TrainConfig
from lafin.training.generator_losses import GeneratorLosses
from lafin.training.stage_networks import StageNetworks


class GeneratorStage:
    """Updates the discriminator, then the generator on the weighted sum of its terms, then
    the generator's moving average."""

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

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.config.loss
        nets = self.networks.nets
        generator = nets["generator"]
        generator.train()
        nets["discriminator"].train()
        if "components" in nets:
            nets["components"].train()
        if self.config.stage == "joint":
            with torch.no_grad():
                points = self.networks.predict_points(batch.masked, self.size)
        else:
            points = batch.target_landmarks
        lmap = landmark_map(points, self.size)
        output = generator(batch.masked, lmap, batch.masks)
        composite = output * batch.masks + batch.images * (1 - batch.masks)

        patch = cfg.discriminator == "patch"
        # without VGG, LaFIn's discriminator also serves the feature-matching term
        feature_matching = self.losses.vgg is None and cfg.feature_matching > 0
        train_disc, use_adv = self.adversary.schedule(
            step, cfg.adversarial > 0 or (feature_matching and not patch)
        )
        # the eye and mouth discriminators keep the same schedule as the face's
        train_parts, use_parts = self.adversary.schedule(step, self.components is not None)
        logs: dict[str, float] = {}
        if patch:  # real faces with their true landmarks, generated ones with those they followed
            heat_real = landmark_heatmap(batch.landmarks, self.size)
            heat_fake = heat_real if batch.guide is None else landmark_heatmap(points, self.size)
        real_feats: list[torch.Tensor] = []
        if train_disc and patch:
            logs.update(
                self.adversary.patch_step(
                    batch.images, heat_real, composite.detach(), heat_fake, batch.masks, step
                )
            )
        elif train_disc:
            disc_logs, real_feats = self.adversary.lafin_step(batch.images, composite.detach(), lmap)
            logs.update(disc_logs)
        if train_parts:
            logs.update(self.components.step(batch.images, batch.landmarks, composite, points, batch.masks))

        terms = self.losses.pixel_terms(output, composite, batch)
        if use_adv and patch:
            terms.update(
                self.adversary.patch_generator_terms(
                    composite, heat_fake, batch.masks, batch.images, heat_real, self.losses.with_truth(batch)
                )
            )
        elif use_adv:
            terms.update(self.adversary.lafin_generator_terms(composite, lmap, real_feats, feature_matching))
        if use_parts:
            terms.update(
                self.components.generator_terms(
                    composite, points, batch.masks, batch.images, self.losses.with_truth(batch)
                )
            )
        terms.update(self.losses.vgg_terms(composite, batch))
        if cfg.landmark_consistency > 0:
            terms["landmark_consistency"] = self._landmark_consistency(composite, points, batch)

        g_loss = sum(terms.values())
        optim = self.networks.optims["generator"]
        optim.zero_grad(set_to_none=True)
        g_loss.backward()
        optim.step()
        self.networks.update_ema(step)
        logs.update({f"loss/{k}": v.item() for k, v in terms.items()})
        logs["loss/generator"] = g_loss.item()
        return logs

    def _landmark_consistency(
        self, composite: torch.Tensor, points: torch.Tensor, batch: Batch
    ) -> torch.Tensor:
        """The frozen predictor's points on the output against those the generator followed."""
        target = points
        if self.config.stage == "inpaint":
            # the predictor's own reading of the true face, moved as the landmarks were
            # edited: its disagreement with the labels (benchmarks/landmarks_cache_nme.py)
            # cancels out
            with torch.no_grad():
                target = self.networks.predict_points(batch.images, self.size) + (points - batch.landmarks)
        found = self.networks.predict_points(composite, self.size)  # gradients reach the generator's pixels
        return self.losses.landmark_consistency(found, target, self.size)
