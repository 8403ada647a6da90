"""Typed model configuration, the named presets, and the one parser of typed configs.

A :class:`ModelConfig` fully describes the networks' sizes; it is stored inside every checkpoint so
that inference rebuilds the model without any training configuration. :func:`from_mapping` builds
any config dataclass (this module's, the training configs') from a plain mapping; an unknown key
is an error, never ignored. :func:`apply_overrides` sets ``KEY=VALUE`` settings (the training
commands' ``--set``) in such a mapping before it is built, checking each key and value against
the dataclass.

Presets
-------
``compact-wider``
    The shipped weights (``src/lafin/weights/lafin-compact.safetensors``): ``compact-wide`` with
    its generator widened again, to 32-64-128-160 channels at its four finest scales.
``compact-wide``
    The shipped weights until 2026-12-06: the ``compact`` generator widened to 24-48-96-128
    channels at its finest scales (``lafin.training.widen``), the landmark predictor on its own
    192-px input, and a 256-px texture refiner. The training recipes' model before the last
    widening.
``compact``
    The CPU design the shipped model started from: 128 px, depthwise-separable generator
    (16-32-64 channels at the finest scales), landmark input at 128 px, no refiner.
``paper``
    The original LaFIn networks at 256 px, with exactly the tensor shapes of the published
    checkpoints (see ``lafin.original_release.load_original``).
``tiny``
    A very small model used by the tests and for smoke runs.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

GeneratorArch = Literal["lafin", "compact"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes of the inpainting generator.

    Attributes:
        arch: ``"lafin"`` for the original encoder/decoder (transposed convolutions, 7x7 stem) or
            ``"compact"`` for the CPU design (separable convolutions, nearest upsampling).
        channels: feature channels at each scale, full size first; ``len(channels) - 1`` is the
            number of stride-2 downsamplings.
        num_residual_blocks: residual blocks at the smallest scale.
        dilation: dilation of the first convolution of every residual block.
        attention: use the short+long-term attention layer at the smallest scale.
        mask_channel: feed the hole mask as an extra input channel (the original does not).
        upsample: the compact decoder's upsampling, ``"nearest"`` or ``"bilinear"`` (the same
            weights; nearest copies each value into a 2x2 block, which leaves a faint 2-px
            checkerboard in the output; bilinear does not, and needs weights trained with it).
    """

    arch: GeneratorArch = "lafin"
    channels: tuple[int, ...] = (64, 128, 256)
    num_residual_blocks: int = 7
    dilation: int = 2
    attention: bool = True
    mask_channel: bool = False
    upsample: str = "nearest"

    def __post_init__(self) -> None:
        if self.arch not in ("lafin", "compact"):
            raise ValueError(f"unknown generator arch {self.arch!r}; expected 'lafin' or 'compact'")
        if len(self.channels) < 2:
            raise ValueError("generator needs at least two scales (channels)")
        if self.upsample not in ("nearest", "bilinear"):
            raise ValueError(f"generator.upsample must be 'nearest' or 'bilinear', not {self.upsample!r}")
        if self.upsample != "nearest" and self.arch != "compact":
            raise ValueError("generator.upsample applies to the compact generator only")


@dataclass(frozen=True)
class LandmarkConfig:
    """Sizes of the MobileNetV2 landmark predictor.

    Attributes:
        width_mult: MobileNetV2 width multiplier (1.0 in the original).
        num_points: number of landmarks (68 in iBUG 300-W order).
        head: "pooled" is the original's head (every branch globally average-pooled);
            "spatial" keeps a 4x4 grid of the last feature map in one branch, as PFLD's
            full-map convolution does, so where a feature is stays visible to the regressor.
        input_size: side of the predictor's input crop in pixels; 0 (default) means the model's
            ``image_size``. A larger input gives the predictor more pixels per face than the
            generator works on (the crop is resampled from the user's image, not upscaled
            from the generator's crop).
    """

    width_mult: float = 1.0
    num_points: int = 68
    head: str = "pooled"
    input_size: int = 0

    def __post_init__(self) -> None:
        if self.head not in ("pooled", "spatial"):
            raise ValueError(f"landmarks.head must be 'pooled' or 'spatial', not {self.head!r}")
        if self.input_size < 0 or self.input_size % 32 != 0:
            raise ValueError(
                f"landmarks.input_size must be 0 or a multiple of 32 (the predictor's "
                f"stride), not {self.input_size}"
            )


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Sizes of the landmark-conditioned patch discriminator (training only).

    Attributes:
        scales: the hole-aware patch discriminator (refine stage, and ``loss.discriminator:
            patch``) judges the image at this many scales, each half the size of the one before
            (a multi-scale discriminator after pix2pixHD): at 1/2 size its patches span about
            140 px of a 256-px face, enough to see whose face a texture is on.
    """

    base_channels: int = 64
    attention: bool = True
    scales: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.scales, bool) or not isinstance(self.scales, int) or not 1 <= self.scales <= 4:
            raise ValueError(f"discriminator.scales must be a whole number from 1 to 4, not {self.scales!r}")


@dataclass(frozen=True)
class RefinerConfig:
    """Sizes of the texture refiner (``lafin.networks.refiner``), which takes the generator's
    face upsampled to ``output_size`` and paints its detail.

    Attributes:
        output_size: side of the refiner's face crop in pixels (a multiple of 8); 0 = no refiner.
        channels: feature channels at full size, 1/2, 1/4 and 1/8 size.
        num_residual_blocks: residual blocks at 1/8 size.
        coarse_blur: sigma (px at the generator's size) of a Gaussian blur of the generator's
            face before it is upsampled for the refiner (0: none). The generator's output carries a
            faint checkerboard of period 2 px; the refiner learns on, and is given, faces without
            it.
        coarse_mirror_average: the generator's face is the average of its pass on the crop and
            on the crop's mirror image (flipped back), as the inference option
            ``generator_flip_average`` makes it; the refiner learns on, and is given, such faces
            (by default the option then follows this). The two passes disagree most where a fill
            has a blotch or a lopsided feature; the average keeps what they share, and the
            refiner is to put back the texture the average loses.
        upsample: how the decoder brings features up a scale, ``"nearest"`` or ``"bilinear"``.
            Nearest-neighbour copies each half-size feature into a 2x2 block, and the one layer
            at full size does not undo it: the texture comes out in 2-px blocks. Bilinear
            features have no such grid; the weights are the same shapes either way.
    """

    output_size: int = 0
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_residual_blocks: int = 4
    coarse_blur: float = 0.0
    coarse_mirror_average: bool = False
    upsample: str = "nearest"

    def __post_init__(self) -> None:
        if self.output_size < 0 or self.output_size % 8 != 0:
            raise ValueError(f"refiner.output_size must be 0 or a multiple of 8, not {self.output_size}")
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"refiner.channels must be four positive widths, not {self.channels}")
        blur = self.coarse_blur
        if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not 0 <= blur <= 4:
            raise ValueError(f"refiner.coarse_blur must be a number in [0, 4], not {blur!r}")
        if not isinstance(self.coarse_mirror_average, bool):
            raise ValueError(
                f"refiner.coarse_mirror_average must be true or false, not {self.coarse_mirror_average!r}"
            )
        if self.upsample not in ("nearest", "bilinear"):
            raise ValueError(f"refiner.upsample must be 'nearest' or 'bilinear', not {self.upsample!r}")

    @property
    def enabled(self) -> bool:
        return self.output_size > 0


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the networks of one model.

    Attributes:
        name: preset name, informational.
        image_size: side of the square face crop the networks work on, in pixels.
        generator / landmarks / discriminator / refiner: per-network sizes (``refiner``
            disabled by default: files without one generate at ``image_size`` only).
    """

    name: str = "paper"
    image_size: int = 256
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)

    def __post_init__(self) -> None:
        factor = 2 ** (len(self.generator.channels) - 1)
        if self.image_size % max(factor, 32) != 0:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of {max(factor, 32)} "
                "(generator downsampling and the landmark predictor's stride of 32)"
            )

    @property
    def landmark_size(self) -> int:
        """Side of the landmark predictor's input crop, in pixels."""
        return self.landmarks.input_size or self.image_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a plain dict (as stored in checkpoints); unknown keys are an error."""
        return from_mapping(cls, data, "model")


T = TypeVar("T")


def _union_args(tp: Any) -> tuple:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """Build the config dataclass ``cls`` from a plain mapping (YAML, JSON, a checkpoint's
    metadata): nested config dataclasses from nested mappings, tuples from lists; ``where``
    names the source in errors. An unknown key is a ``ValueError`` that lists the known ones."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        options = _union_args(hints[name])
        nested = next((t for t in options if dataclasses.is_dataclass(t)), None)
        if nested is not None and isinstance(value, dict):
            value = from_mapping(nested, value, f"{where}.{name}")
        elif isinstance(value, list) and any(typing.get_origin(t) is tuple for t in options):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


_INVALID = object()


def _convert(value: Any, tp: Any) -> Any:
    """``value`` as the field type ``tp`` (an int or a numeric string such as ``1e-4`` for a
    float, a list for a tuple), or ``_INVALID``; nested config dataclasses are left to
    :func:`from_mapping`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return next((out for out in (_convert(value, t) for t in args) if out is not _INVALID), _INVALID)
    if tp is type(None):
        return None if value is None else _INVALID
    if origin is Literal:
        return value if value in args else _INVALID
    if tp is bool:
        return value if isinstance(value, bool) else _INVALID
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value) if isinstance(value, str) else _INVALID
        except ValueError:
            return _INVALID
    if tp is str:
        return value if isinstance(value, str) else _INVALID
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _INVALID
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return _INVALID
            items = [_convert(v, t) for v, t in zip(value, args)]
        else:
            items = [_convert(v, args[0] if args else Any) for v in value]
        return _INVALID if any(i is _INVALID for i in items) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return _INVALID
        items = {k: _convert(v, args[1] if args else Any) for k, v in value.items()}
        return _INVALID if any(i is _INVALID for i in items.values()) else items
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, dict) else _INVALID
    return value


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(t) for t in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return str(tp) if typing.get_origin(tp) is not None else getattr(tp, "__name__", str(tp))


def apply_overrides(cls: type, data: Any, overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of the mapping ``data`` (the YAML of a ``cls`` config) with each ``KEY=VALUE`` of
    ``overrides`` set, in order: ``KEY`` a dotted path of ``cls``'s fields
    (``loss.inception_size``, ``data.mask_mix.blobs``), ``VALUE`` read as YAML (``400``,
    ``[conv_2, conv_4]``, ``null``) and checked against the field's type. A malformed item, an
    unknown key or a value of the wrong type is a ``ValueError`` naming it; the result is then
    built by :func:`from_mapping` as a config file would be."""
    import yaml

    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping to override, got {type(data).__name__}")
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ValueError(f"--set {item}: expected KEY=VALUE, e.g. loss.inception_size=256")
        node, owner, tp, where = data, cls, None, "the config"
        for depth, name in enumerate(parts):
            if owner is not None:  # a config dataclass: only its fields exist
                known = {f.name for f in fields(owner)}
                if name not in known:
                    raise ValueError(
                        f"--set {item}: unknown key {name!r} in {where}; known keys are {sorted(known)}"
                    )
                tp = typing.get_type_hints(owner)[name]
            if depth == len(parts) - 1:
                break
            options = _union_args(tp)
            nested = next((t for t in options if dataclasses.is_dataclass(t)), None)
            mapping = next((t for t in options if t in (dict, Any) or typing.get_origin(t) is dict), None)
            child = node.get(name)
            if nested is None and mapping is None:
                raise ValueError(f"--set {item}: {'.'.join(parts[: depth + 1])} has no keys of its own")
            if child is not None and not isinstance(child, dict):
                raise ValueError(
                    f"--set {item}: {'.'.join(parts[: depth + 1])} is {child!r} in the config, "
                    "not a mapping; set it whole"
                )
            node = node.setdefault(name, {}) if child is None else child
            if nested is not None:
                owner = nested
            else:  # a free mapping (mask_mix, a model mapping): its keys are not fixed
                owner, mapping_args = None, typing.get_args(mapping)
                tp = mapping_args[1] if mapping_args else Any
            where = ".".join(parts[: depth + 1])
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = _INVALID
        converted = _convert(value, tp) if value is not _INVALID else _INVALID
        if converted is _INVALID:  # e.g. a name that YAML reads as a number, for a text field
            converted = _convert(text.strip(), tp)
        if converted is _INVALID:
            raise ValueError(f"--set {item}: {key} must be {_describe(tp)}, not {text.strip()!r}")
        node[parts[-1]] = converted
    return data


_COMPACT = ModelConfig(
    name="compact",
    image_size=128,
    generator=GeneratorConfig(
        arch="compact",
        channels=(16, 32, 64, 128, 256),
        num_residual_blocks=8,
        dilation=2,
        attention=True,
        mask_channel=True,
    ),
    landmarks=LandmarkConfig(width_mult=1.0, head="spatial"),
    discriminator=DiscriminatorConfig(base_channels=32, attention=False),
)

# compact with a widened generator, a 192-px landmark input and a refiner
_COMPACT_WIDE = dataclasses.replace(
    _COMPACT,
    name="compact-wide",
    generator=dataclasses.replace(_COMPACT.generator, channels=(24, 48, 96, 128, 256)),
    landmarks=dataclasses.replace(_COMPACT.landmarks, input_size=192),
    refiner=RefinerConfig(output_size=256, channels=(16, 32, 64, 128), num_residual_blocks=4),
)

PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(name="paper", image_size=256),
    "compact": _COMPACT,
    "compact-wide": _COMPACT_WIDE,
    # the shipped file's: compact-wide with its generator widened again (lafin.training.widen)
    "compact-wider": dataclasses.replace(
        _COMPACT_WIDE,
        name="compact-wider",
        generator=dataclasses.replace(_COMPACT_WIDE.generator, channels=(32, 64, 128, 160, 256)),
    ),
    "tiny": ModelConfig(
        name="tiny",
        image_size=64,
        generator=GeneratorConfig(
            arch="compact",
            channels=(8, 16, 32),
            num_residual_blocks=1,
            dilation=2,
            attention=True,
            mask_channel=True,
        ),
        landmarks=LandmarkConfig(width_mult=0.25),
        discriminator=DiscriminatorConfig(base_channels=8, attention=True),
    ),
}


def get_preset(name: str) -> ModelConfig:
    """Return the named preset; an unknown name is an error that lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def named_like_preset(config: ModelConfig) -> ModelConfig:
    """``config`` under the name of the preset it equals field for field (a training run names
    its model config freely; a file made from it carries the preset's name), else unchanged."""
    for name, preset in PRESETS.items():
        if dataclasses.replace(config, name=name) == preset:
            return preset
    return config
