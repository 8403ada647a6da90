"""The inference switches of :class:`lafin.pipeline.LaFInModel`, as one frozen, validated value."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from lafin.blend import DIFFUSION_MIX
from lafin.errors import OptionError
from lafin.face_check import MIRROR_DISAGREEMENT_LIMIT

# switches that used to be plain attributes of LaFInModel -> the option that replaced each (None:
# removed, it lost its measurements)
FORMER_SWITCHES = {
    "flip_average": "landmark_flip_average",
    "landmark_refine": "landmark_refine",
    "generator_flip_average": "generator_flip_average",
    "diffusion_mix": "diffusion_mix",
    "seed": "seed",
    "crop_landmark_refine": None,
    "edge_blend": None,
}


def refuse_former_switch(name: str) -> None:
    """Raise :class:`OptionError` saying where the former attribute switch ``name`` went."""
    if name in FORMER_SWITCHES:
        option = FORMER_SWITCHES[name]
        raise OptionError(
            f"{name} is no longer an attribute: "
            + (
                f"pass LaFInModel(..., options=InferenceOptions({option}=...)) or use "
                f"model.with_options({option}=...)"
                if option
                else "the switch was removed (it lost its measurements)"
            )
        )


@dataclass(frozen=True)
class InferenceOptions:
    """How a :class:`~lafin.pipeline.LaFInModel` runs its networks (checked when made).

    Attributes:
        landmark_flip_average: average the landmarks predicted on a crop and on its mirror image
            (mirrored back): the result is exactly mirror-symmetric and cancels the predictor's
            left/right bias.
        landmark_refine: photo mode re-aligns each face on lafin's own first landmark pass (not
            the detector's points), then predicts again and generates on that crop.
        generator_flip_average: run the generator on the crop and on its mirror image and
            average the two (flipped back). None: on, unless the weights have a refiner that
            learnt on the bare generator's faces (the average blurs); on for a refiner that
            learnt on the average (``refiner.coarse_mirror_average`` of the weights' config).
        diffusion_mix: the share (0-1) of OpenCV's Navier-Stokes fill mixed into the generated
            hole (:func:`lafin.blend.diffusion_mix`); 0 turns it off. None:
            :data:`lafin.blend.DIFFUSION_MIX`, or 0 when the weights have a refiner.
        seed: the seed of the refiner's noise, so that results reproduce.
        edge_colour_match: shift each face's fill to the colour of the pixels around the hole
            after the last network (:func:`lafin.blend.match_edge_colour`): a network's colour
            cast would show as a seam.
        refiner_texture_only: keep only the fine part (texture) of the refiner's change to the
            hole; its colour and shapes stay the generator's
            (:func:`lafin.generator_runner.texture_only`). Weights without a refiner ignore it.
        coarse_blur: sigma (px at the generator's size) of the blur of the generator's face
            before the refiner (its 2-px checkerboard). None: the weights' own
            (``refiner.coarse_blur`` of their config, what the refiner learnt on).
        refiner_noise: scale (0-2) of the noise the refiner turns into stochastic texture: 1 is
            what it learnt on; 0 gives its deterministic result (no freckle- or stubble-like
            grain, smoother skin). Weights without a refiner ignore it.
        match_softness: soften the fill of a soft photo (a small original enlarged, a blurred
            scan) to the softness of the known pixels around the hole
            (:func:`lafin.blend.match_softness`): a fill as sharp as a sharp photo's shows in it
            as a patch of grain. A sharp photo's fill is left as it is (never sharpened).
        face_check_limit: crop mode warns that the image may not be a face when the landmarks
            predicted on it and on its mirror image disagree by more than this (a fraction of
            the eye distance), or when its known pixels look like noise, a smooth gradient or a
            landscape (:mod:`lafin.face_check`); it fills the hole all the same. None: no check
            at all (and no mirror pass when ``landmark_flip_average`` is off).

    For the bare networks: ``InferenceOptions(landmark_flip_average=False,
    generator_flip_average=False, diffusion_mix=0)``.
    """

    landmark_flip_average: bool = True
    landmark_refine: bool = True
    generator_flip_average: bool | None = None
    diffusion_mix: float | None = None
    seed: int = 0
    edge_colour_match: bool = True
    refiner_texture_only: bool = True
    coarse_blur: float | None = None
    refiner_noise: float = 1.0
    match_softness: bool = True
    face_check_limit: float | None = MIRROR_DISAGREEMENT_LIMIT

    def __post_init__(self) -> None:
        for name in (
            "landmark_flip_average",
            "landmark_refine",
            "generator_flip_average",
            "edge_colour_match",
            "refiner_texture_only",
            "match_softness",
        ):
            value = getattr(self, name)
            if not (isinstance(value, bool) or (value is None and name == "generator_flip_average")):
                raise OptionError(f"{name} must be True or False, not {value!r}")
        mix = self.diffusion_mix
        if mix is not None and (
            isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0 <= mix <= 1
        ):
            raise OptionError(f"diffusion_mix must be a number in [0, 1], not {mix!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise OptionError(f"seed must be a whole number >= 0, not {self.seed!r}")
        blur = self.coarse_blur
        if blur is not None and (
            isinstance(blur, bool) or not isinstance(blur, (int, float)) or not 0 <= blur <= 4
        ):
            raise OptionError(f"coarse_blur must be a number in [0, 4] or None, not {blur!r}")
        noise = self.refiner_noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 2:
            raise OptionError(f"refiner_noise must be a number in [0, 2], not {noise!r}")
        limit = self.face_check_limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0
        ):
            raise OptionError(f"face_check_limit must be a number > 0 or None, not {limit!r}")

    def resolved(self, has_refiner: bool, refiner_mirror_average: bool = False) -> "InferenceOptions":
        """These options with the automatic (None) choices made for weights with or without a
        refiner (``refiner_mirror_average``: the refiner learnt on the generator's mirror
        average, ``refiner.coarse_mirror_average`` of the weights' config)."""
        flip = self.generator_flip_average
        mix = self.diffusion_mix
        auto_flip = refiner_mirror_average if has_refiner else True
        return replace(
            self,
            generator_flip_average=auto_flip if flip is None else flip,
            diffusion_mix=float((0.0 if has_refiner else DIFFUSION_MIX) if mix is None else mix),
        )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def check(cls, options: object) -> "InferenceOptions":
        """``options`` itself if it is an :class:`InferenceOptions`; None gives the defaults."""
        if options is None:
            return cls()
        if not isinstance(options, cls):
            raise OptionError(
                f"options must be a lafin.options.InferenceOptions, not {type(options).__name__}"
            )
        return options

    def changed(self, **changes) -> "InferenceOptions":
        """A copy with ``changes`` (option names) made; an unknown name is an error."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise OptionError(
                f"unknown option(s) {', '.join(unknown)}; options are {', '.join(self.names())}"
            )
        return replace(self, **changes)
