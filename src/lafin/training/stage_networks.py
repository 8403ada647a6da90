"""The networks of one training stage: which are built, which start from earlier weights (and
the history those carry), which stay frozen, their optimisers, and the moving average of the
network the stage trains."""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from lafin.alignment import rescale_points
from lafin.config import ModelConfig, get_preset
from lafin.networks import (
    build_discriminator,
    build_generator,
    build_landmark_predictor,
    build_refiner,
)
from lafin.networks.component_discriminator import FaceComponentDiscriminators
from lafin.networks.refiner import build_patch_discriminator
from lafin.training.config import TrainConfig
from lafin.training.distributed import unwrap
from lafin.weights_merge import network_history

log = logging.getLogger(__name__)

# the networks that judge faces: their learning rate is the config's times d_lr_ratio, and
# none is ever in exported weights
DISCRIMINATORS = ("discriminator", "components")


def resolve_model_config(model: str | dict[str, Any]) -> ModelConfig:
    """A training config's ``model``: a preset name or a full model config."""
    return get_preset(model) if isinstance(model, str) else ModelConfig.from_dict(model)


def trained_network(stage: str) -> str:
    """The name of the network a stage trains (the others it holds are frozen)."""
    return {"landmarks": "landmarks", "refine": "refiner"}.get(stage, "generator")


def build_networks(config: TrainConfig, model_config: ModelConfig) -> dict[str, nn.Module]:
    """The stage's networks by name, freshly initialised (torch's global generator)."""
    stage = config.stage
    nets: dict[str, nn.Module] = {}
    if stage == "landmarks":
        nets["landmarks"] = build_landmark_predictor(model_config)
    elif stage == "refine":
        if not config.init_from:
            raise ValueError(
                "the refine stage needs init_from: weights with the generator whose faces it refines"
            )
        nets["generator"] = build_generator(model_config)
        nets["refiner"] = build_refiner(model_config)
        nets["discriminator"] = build_patch_discriminator(
            model_config.discriminator.base_channels, model_config.discriminator.scales
        )
    else:
        nets["generator"] = build_generator(model_config)
        nets["discriminator"] = (
            build_patch_discriminator(
                model_config.discriminator.base_channels, model_config.discriminator.scales
            )
            if config.loss.discriminator == "patch"
            else build_discriminator(model_config)
        )
        if stage == "joint" or config.loss.landmark_consistency > 0:
            nets["landmarks"] = build_landmark_predictor(model_config)
    if config.loss.components:  # eye and mouth judges (not the landmark stage: the config says so)
        nets["components"] = FaceComponentDiscriminators(model_config.discriminator.base_channels)
    return nets


class StageNetworks:
    """A stage's networks (``nets``), their optimisers (``optims``), the exponential moving
    average of the trained one (``ema``, what inference uses), and per network the
    ``history`` (step/stage/steps_before metadata) and ``steps_before`` of its starting weights."""

    def __init__(
        self,
        config: TrainConfig,
        model_config: ModelConfig,
        device: torch.device,
        memory_format: torch.memory_format,
    ) -> None:
        self.config = config
        self.model_config = model_config
        self.nets = build_networks(config, model_config)
        for net in self.nets.values():
            net.to(device, memory_format=memory_format)
        self.steps_before: dict[str, int] = {}
        self.history: dict[str, dict[str, str]] = {}
        if config.init_from:
            self.init_from(config.init_from)
        if config.loss.landmark_consistency > 0 and "landmarks" not in self.history:
            raise ValueError(
                "loss.landmark_consistency needs a trained landmark predictor: "
                "init_from weights that hold one"
            )
        self.trained = trained_network(config.stage)
        self.ema = copy.deepcopy(self.nets[self.trained]).eval().requires_grad_(False)
        if config.stage != "landmarks" and "landmarks" in self.nets:
            # the predictor is frozen: only the generator adapts (joint stage), and a predictor
            # that learnt along could follow the generator instead of judging it
            self.nets["landmarks"].eval().requires_grad_(False)
        if config.stage == "refine":  # the generator is frozen: it gives the structure to refine
            self.nets["generator"].eval().requires_grad_(False)
        self.optims = self._build_optimizers()

    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        if config.stage == "landmarks":
            return {
                "landmarks": torch.optim.Adam(
                    self.nets["landmarks"].parameters(), lr=config.lr, weight_decay=config.weight_decay
                )
            }
        betas = tuple(config.betas)
        discriminators = [name for name in DISCRIMINATORS if name in self.nets]
        optims = {
            self.trained: torch.optim.Adam(self.nets[self.trained].parameters(), lr=config.lr, betas=betas)
        }
        for name in discriminators:
            optims[name] = torch.optim.Adam(
                self.nets[name].parameters(), lr=config.lr * config.d_lr_ratio, betas=betas
            )
        return optims

    def init_from(self, paths: str | list[str]) -> None:
        """Start the networks found in the given weight files from them (later files win)."""
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
                    self.history[name] = network_history(loaded.metadata, name)
                    step = str(self.history[name].get("step", ""))
                    if step.isdigit():
                        before = int(self.history[name].get("steps_before", 0) or 0)
                        self.steps_before[name] = before + int(step)

    def predict_points(self, masked: torch.Tensor, size: int) -> torch.Tensor:
        """The frozen predictor's points (B, 68, 2) in pixels of a ``size``-px crop; a predictor
        with its own input size sees the crop resampled to that size."""
        side = self.model_config.landmark_size
        if side != size:
            masked = nn.functional.interpolate(
                masked, size=(side, side), mode="bilinear", align_corners=False, antialias=side < size
            )
        points = self.nets["landmarks"](masked).view(-1, 68, 2) * side
        return rescale_points(points, size / side)

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """Move the average towards the trained network (a shorter memory in the first steps)."""
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))
        live = unwrap(self.nets[self.trained])
        for e, p in zip(self.ema.parameters(), live.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.ema.buffers(), live.buffers()):
            # batch-norm statistics are averaged like the weights they belong to
            e.lerp_(b, 1 - decay) if e.is_floating_point() else e.copy_(b)

    def set_learning_rates(self, factor: float) -> None:
        """Every optimiser's learning rate: its base rate (the config's) times ``factor``."""
        for name, optim in self.optims.items():
            base = self.config.lr * (self.config.d_lr_ratio if name in DISCRIMINATORS else 1.0)
            for group in optim.param_groups:
                group["lr"] = base * factor
