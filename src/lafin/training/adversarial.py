"""The adversarial game: when the discriminator learns and when the generator is judged, one
update of either discriminator (LaFIn's image + landmark-map discriminator, or the hole-aware
patch discriminator with lazy R1), and the generator's adversarial terms against it."""

from __future__ import annotations

import torch
from torch import nn

from lafin import losses
from lafin.training.config import TrainConfig
from lafin.training.distributed import unwrap
from lafin.training.stage_networks import StageNetworks


class Adversary:
    """The discriminator of a generator or refine stage (``networks.nets["discriminator"]``,
    DDP-wrapped or not) and its optimiser."""

    def __init__(self, config: TrainConfig, networks: StageNetworks) -> None:
        self.config = config
        self.networks = networks

    @property
    def discriminator(self) -> nn.Module:
        return self.networks.nets["discriminator"]

    def schedule(self, step: int, adversarial: bool) -> tuple[bool, bool]:
        """(the discriminator learns, the generator gets adversarial terms) at ``step``: the
        discriminator starts ``discriminator_head_start`` steps before the generator is judged
        at ``warmup_adversarial_steps``."""
        start = self.config.warmup_adversarial_steps
        return (
            adversarial and step >= start - self.config.discriminator_head_start,
            adversarial and step >= start,
        )

    def _update(self, d_loss: torch.Tensor) -> None:
        optim = self.networks.optims["discriminator"]
        optim.zero_grad(set_to_none=True)
        d_loss.backward()
        optim.step()

    # --------------------------------------------------------------------- LaFIn's discriminator

    def lafin_step(
        self, real: torch.Tensor, fake: torch.Tensor, landmark_map: torch.Tensor
    ) -> tuple[dict[str, float], list[torch.Tensor]]:
        """One update on real and (detached) fake faces with their landmark map; returns the
        logs and the real faces' features (for feature matching)."""
        # real and fake in one forward: one DDP forward per backward
        logits, feats = self.discriminator(torch.cat([real, fake]), torch.cat([landmark_map, landmark_map]))
        real_logits, fake_logits = logits.chunk(2)
        real_feats = [f.chunk(2)[0].detach() for f in feats]
        d_loss = losses.discriminator_loss(real_logits, fake_logits, self.config.loss.adversarial_kind)
        self._update(d_loss)
        return {"loss/discriminator": d_loss.item()}, real_feats

    def lafin_generator_terms(
        self,
        fake: torch.Tensor,
        landmark_map: torch.Tensor,
        real_feats: list[torch.Tensor],
        feature_matching: bool,
    ) -> dict[str, torch.Tensor]:
        """The generator's adversarial term (and, if asked, feature matching on the features
        of the discriminator's last update)."""
        cfg = self.config.loss
        # the generator's pass through D: no DDP wrapper and no gradients for D's weights
        plain_disc = unwrap(self.discriminator)
        plain_disc.requires_grad_(False)
        fake_logits, fake_feats = plain_disc(fake, landmark_map)
        plain_disc.requires_grad_(True)
        terms = {
            "adversarial": cfg.adversarial
            * losses.generator_adversarial_loss(fake_logits, cfg.adversarial_kind)
        }
        if feature_matching:
            terms["feature_matching"] = cfg.feature_matching * losses.feature_matching_loss(
                fake_feats, real_feats
            )
        return terms

    # --------------------------------------------------------------------- the patch discriminator

    def patch_step(
        self,
        real: torch.Tensor,
        real_heat: torch.Tensor,
        fake: torch.Tensor,
        fake_heat: torch.Tensor,
        masks: torch.Tensor,
        step: int,
    ) -> dict[str, float]:
        """One update of the hole-aware patch discriminator (non-saturating, lazy R1 every
        ``r1_every`` steps). Its logits cover patches; the generated ones are those touching
        the hole. A multi-scale discriminator's losses are summed over its scales."""
        cfg = self.config.loss
        real = real.detach().requires_grad_(cfg.r1 > 0 and step % cfg.r1_every == 0)
        logits, _ = self.discriminator(
            torch.cat([real, fake]), torch.cat([masks, masks]), torch.cat([real_heat, fake_heat])
        )
        d_loss = real.new_zeros(())
        real_logit_sum = real.new_zeros(())
        for scale_logits in _per_scale(logits):
            real_logits, fake_logits = scale_logits.chunk(2)
            hole_patches = nn.functional.adaptive_max_pool2d(masks, fake_logits.shape[-2:])
            d_loss = d_loss + losses.nonsaturating_discriminator_loss(real_logits, fake_logits, hole_patches)
            real_logit_sum = real_logit_sum + real_logits.sum()
        logs = {}
        if real.requires_grad:
            r1 = losses.r1_penalty(real_logit_sum, real)
            d_loss = d_loss + cfg.r1 * cfg.r1_every / 2 * r1
            logs["loss/r1"] = r1.item()
        self._update(d_loss)
        logs["loss/discriminator"] = d_loss.item()
        return logs

    def patch_generator_terms(
        self,
        fake: torch.Tensor,
        heat: torch.Tensor,
        masks: torch.Tensor,
        real: torch.Tensor | None = None,
        real_heat: torch.Tensor | None = None,
        with_truth: slice | torch.Tensor = slice(None),
    ) -> dict[str, torch.Tensor]:
        """The weighted non-saturating loss of the generated patches (D's weights get no
        gradient), summed over a multi-scale discriminator's scales; with
        ``loss.patch_feature_matching`` and the ``real`` faces (their heat maps ``real_heat``),
        also the L1 distance of D's features on the ``with_truth`` faces' composites and on
        their truths (LaMa's feature matching)."""
        cfg = self.config.loss
        matching = cfg.patch_feature_matching > 0 and real is not None
        if matching and real_heat is None:
            raise ValueError("feature matching needs the real faces' heat maps")
        n = fake.shape[0]
        images, holes, heats = fake, masks, heat
        if matching:  # one pass, so that D (its spectral norms too) is the same for both
            images = torch.cat([fake, real[with_truth]])
            holes = torch.cat([masks, masks[with_truth]])
            heats = torch.cat([heat, real_heat[with_truth]])
        plain_disc = unwrap(self.discriminator)
        plain_disc.requires_grad_(False)
        logits, feats = plain_disc(images, holes, heats)
        plain_disc.requires_grad_(True)
        loss = fake.new_zeros(())
        for fake_logits in _per_scale(logits):
            fake_logits = fake_logits[:n]
            hole_patches = nn.functional.adaptive_max_pool2d(masks, fake_logits.shape[-2:])
            loss = loss + losses.nonsaturating_generator_loss(fake_logits, hole_patches)
        terms = {"adversarial": cfg.adversarial * loss}
        if matching and images.shape[0] > n:
            fake_feats = [f[:n][with_truth] for f in feats]
            real_feats = [f[n:].detach() for f in feats]
            terms["feature_matching"] = cfg.patch_feature_matching * losses.feature_matching_loss(
                fake_feats, real_feats
            )
        return terms


def _per_scale(logits: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    """A patch discriminator's logits as a list: one tensor per scale."""
    return logits if isinstance(logits, list) else [logits]
