"""Draws a run's training batches: faces from a mix of caches, holes from the configured
mixture, and the augmentations (geometry, flips, old-photo look, edited expressions)."""

from __future__ import annotations

import numpy as np
import torch

from lafin.data.batches import Batch, GeometryAugment, edit_expressions, old_photo_look, sample_batch
from lafin.data.cache import FaceCache, load_cache
from lafin.training.config import TrainConfig


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


class BatchSource:
    """The training batches of one process at ``size`` px, drawn with ``rng`` (the run's
    generator, saved in its checkpoint) and moved to ``device`` in ``memory_format``."""

    def __init__(
        self,
        config: TrainConfig,
        size: int,
        rng: np.random.Generator,
        device: torch.device,
        memory_format: torch.memory_format,
    ) -> None:
        self.config = config
        self.size = size
        self.rng = rng
        self.device = device
        self.memory_format = memory_format
        self.data = CacheMix([load_cache(p) for p in config.data.train], config.data.train_weights)
        self.mask_fn = build_mask_fn(config, size)
        self.geometry = (
            GeometryAugment(box_fraction=tuple(config.data.box_fraction)) if config.data.geometry else None
        )

    def next_batch(self) -> Batch:
        data = self.config.data
        cache = self.data.pick(self.rng)
        batch = sample_batch(
            cache,
            self.config.batch_size,
            self.rng,
            self.mask_fn,
            size=self.size,
            flip=data.flip,
            geometry=self.geometry,
        )
        if data.old_photo > 0:
            looks = self.rng.random(len(batch.images))
            looks = np.where(looks < data.old_photo, np.where(self.rng.random(len(looks)) < 0.5, 1, 2), 0)
            batch.images = old_photo_look(batch.images, torch.from_numpy(looks))
        if data.landmark_edit > 0:
            batch = edit_expressions(batch, data.landmark_edit, self.rng)
        return batch.to(self.device, self.memory_format)
