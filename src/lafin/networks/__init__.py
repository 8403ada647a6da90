"""The networks, one module each, and the builders that own their sizes."""

from __future__ import annotations

from torch import nn

from lafin.config import ModelConfig
from lafin.networks.compact_generator import CompactGenerator
from lafin.networks.discriminator import Discriminator
from lafin.networks.generator import LaFInGenerator
from lafin.networks.landmark_predictor import LandmarkPredictor
from lafin.networks.refiner import Refiner, RefinerDiscriminator

__all__ = [
    "CompactGenerator",
    "Discriminator",
    "LaFInGenerator",
    "LandmarkPredictor",
    "Refiner",
    "RefinerDiscriminator",
    "build_generator",
    "build_landmark_predictor",
    "build_discriminator",
    "build_refiner",
]


def build_generator(config: ModelConfig) -> nn.Module:
    """The inpainting generator described by ``config.generator``."""
    if config.generator.arch == "lafin":
        return LaFInGenerator(config.generator)
    return CompactGenerator(config.generator)


def build_landmark_predictor(config: ModelConfig) -> LandmarkPredictor:
    return LandmarkPredictor(config.landmarks)


def build_discriminator(config: ModelConfig) -> Discriminator:
    return Discriminator(config.discriminator)


def build_refiner(config: ModelConfig) -> Refiner:
    """The texture refiner described by ``config.refiner`` (which must be enabled)."""
    if not config.refiner.enabled:
        raise ValueError(f"the {config.name!r} model has no refiner (refiner.output_size = 0)")
    return Refiner(config.refiner)
