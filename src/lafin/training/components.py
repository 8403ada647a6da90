"""The facial-component adversary of the generator and refine stages: one update of the eye and mouth
discriminators (:mod:`lafin.networks.component_discriminator`) on crops of true and generated
faces, and the generator's terms against them: the non-saturating adversarial loss of its
crops, and the L1 distance of the discriminators' feature Gram matrices between each
composite's crops and its truth's (GFPGAN's facial component loss).

Only crops the hole covers by at least ``loss.component_min_hole`` count as generated: a crop
of known pixels is a real one, and calling it fake would teach the discriminator nothing true."""

from __future__ import annotations

import torch
from torch import nn

from lafin import losses
from lafin.networks.component_discriminator import COMPONENTS, component_crops
from lafin.training.config import TrainConfig
from lafin.training.distributed import unwrap
from lafin.training.stage_networks import StageNetworks

Crops = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class ComponentAdversary:
    """The component discriminators of a stage (``networks.nets["components"]``) and their
    optimiser; ``size`` is the stage's face size (the crops grow with it from 128 px)."""

    def __init__(self, config: TrainConfig, networks: StageNetworks, size: int = 128) -> None:
        self.config = config
        self.networks = networks
        self.scale = size / 128

    @property
    def discriminators(self) -> nn.Module:
        return self.networks.nets["components"]

    def crops(self, images: torch.Tensor, points: torch.Tensor, masks: torch.Tensor, part: str) -> Crops:
        """(image crops, hole crops, generated) of ``part``: ``generated`` (B,) is 1 where the
        hole covers at least ``component_min_hole`` of the crop."""
        crops = component_crops(torch.cat([images, masks], 1), points, part, self.scale)
        crops, holes = crops[:, :-1], crops[:, -1:]
        generated = (holes.flatten(1).mean(1) >= self.config.loss.component_min_hole).to(images.dtype)
        return crops, holes, generated

    def step(
        self,
        real: torch.Tensor,
        real_points: torch.Tensor,
        fake: torch.Tensor,
        fake_points: torch.Tensor,
        masks: torch.Tensor,
    ) -> dict[str, float]:
        """One update on the parts of the true faces (at their true points) and of the
        (detached) composites (at the points they followed), summed over the parts."""
        crops, holes, generated = {}, {}, {}
        for part in COMPONENTS:
            real_crops, real_holes, _ = self.crops(real, real_points, masks, part)
            fake_crops, fake_holes, generated[part] = self.crops(fake.detach(), fake_points, masks, part)
            crops[part] = torch.cat([real_crops, fake_crops])
            holes[part] = torch.cat([real_holes, fake_holes])
        d_loss = real.new_zeros(())
        for part, (logits, _) in self.discriminators(crops, holes).items():
            real_logits, fake_logits = logits.chunk(2)
            fake_holes = holes[part].chunk(2)[1]
            d_loss = d_loss + losses.nonsaturating_discriminator_loss(
                real_logits, fake_logits, self._patch_weight(fake_holes, generated[part], fake_logits)
            )
        optim = self.networks.optims["components"]
        optim.zero_grad(set_to_none=True)
        d_loss.backward()
        optim.step()
        return {"loss/component_discriminator": d_loss.item()}

    def generator_terms(
        self,
        fake: torch.Tensor,
        points: torch.Tensor,
        masks: torch.Tensor,
        real: torch.Tensor,
        with_truth: slice | torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The weighted adversarial term of the composites' generated crops, and (with
        ``component_style``) the Gram-matrix distance of each ``with_truth`` composite's
        generated crops to its truth's at the same points; both summed over the parts."""
        cfg = self.config.loss
        compare = cfg.component_style > 0 and (isinstance(with_truth, slice) or with_truth.numel() > 0)
        crops, holes, generated, n_fake = {}, {}, {}, fake.shape[0]
        for part in COMPONENTS:
            crops[part], holes[part], generated[part] = self.crops(fake, points, masks, part)
            if compare:  # the truths' crops at the same points, in the same pass
                truth = component_crops(real[with_truth], points[with_truth], part, self.scale)
                crops[part] = torch.cat([crops[part], truth])
                holes[part] = torch.cat([holes[part], holes[part][with_truth]])
        # the generator's pass: no DDP wrapper and no gradients for the discriminators' weights
        plain = unwrap(self.discriminators)
        plain.requires_grad_(False)
        judged = plain(crops, holes)
        plain.requires_grad_(True)
        adversarial = fake.new_zeros(())
        style = fake.new_zeros(())
        for part, (logits, features) in judged.items():
            fake_logits, fake_holes = logits[:n_fake], holes[part][:n_fake]
            adversarial = adversarial + losses.nonsaturating_generator_loss(
                fake_logits, self._patch_weight(fake_holes, generated[part], fake_logits)
            )
            if compare:
                weight = generated[part][with_truth]
                for f in features:
                    mine, truths = f[:n_fake][with_truth], f[n_fake:].detach()
                    distance = (losses.gram(mine) - losses.gram(truths)).abs().flatten(1).mean(1)
                    style = style + (distance * weight).sum() / weight.sum().clamp_min(1.0) / len(features)
        terms = {"component_adversarial": cfg.component_adversarial * adversarial}
        if cfg.component_style > 0:
            terms["component_style"] = cfg.component_style * style
        return terms

    @staticmethod
    def _patch_weight(holes: torch.Tensor, generated: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The logits' patches that saw the hole, in the crops that count as generated."""
        touched = nn.functional.adaptive_max_pool2d(holes, logits.shape[-2:])
        return touched * generated.view(-1, 1, 1, 1)
