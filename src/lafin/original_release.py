"""Reading the original LaFIn release's weights (Yang et al. 2019) onto the ``paper`` preset.

``InpaintingModel_gen.pth`` (dict key ``generator``), ``InpaintingModel_dis.pth``
(``discriminator``) and ``landmark_detector.pth`` (``detector``) map onto the ``paper`` preset.
Files are recognised by the dict key they hold, not by their names; ``module.`` prefixes
(DataParallel) are removed. Modules that the original registers twice are checked to be equal and
the duplicate is dropped; the spectral-normalised convolutions of the generator's attention are
folded into plain weights exactly as PyTorch computes them in eval mode.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from lafin.checkpoint import (
    LoadedWeights,
    PathLike,
    StateDict,
    WeightsError,
    check_weights_file,
    compare_state,
    expected_state,
    list_report,
    mismatch_report,
    write_weights,
)
from lafin.config import PRESETS, ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _OriginalLayout:
    """How one original network's names map onto ours.

    Attributes:
        network: our network name.
        renames: (original prefix, our prefix) pairs; a key takes the first that matches.
        aliases: (duplicate prefix, canonical prefix): modules registered twice in the original.
        folded: original module prefixes whose spectral norm is folded into a plain ``weight``.
    """

    network: str
    renames: tuple[tuple[str, str], ...]
    aliases: tuple[tuple[str, str], ...] = ()
    folded: tuple[str, ...] = ()


_ATTENTION_ALIASES = (
    ("auto_attn.model.model.1.", "auto_attn.model.conv1."),
    ("auto_attn.model.model.3.", "auto_attn.model.conv2."),
    ("auto_attn.model.shortcut.0.", "auto_attn.model.bypass."),
)
_ATTENTION_FOLDED = ("auto_attn.model.conv1.", "auto_attn.model.conv2.", "auto_attn.model.bypass.")
_ATTENTION_RENAMES = (("auto_attn.model.", "attention.fuse."), ("auto_attn.", "attention."))

_LAYOUTS: dict[str, _OriginalLayout] = {
    "generator": _OriginalLayout(
        network="generator",
        renames=(
            ("encoder1.1.", "encoders.0.1."),
            ("encoder2.0.", "encoders.1.0."),
            ("encoder3.0.", "encoders.2.0."),
            ("middle.", "middle."),
            ("decoder1.0.", "decoders.0.0."),
            ("decoder2.0.", "decoders.1.0."),
            ("fushion1.0.", "fusions.0.0."),
            ("fushion2.0.", "fusions.1.0."),
            ("decoder3.1.", "to_rgb.1."),
        )
        + _ATTENTION_RENAMES,
        aliases=_ATTENTION_ALIASES,
        folded=_ATTENTION_FOLDED,
    ),
    "discriminator": _OriginalLayout(
        network="discriminator",
        renames=tuple((f"conv{i + 1}.0.", f"convs.{i}.") for i in range(5)) + _ATTENTION_RENAMES,
        aliases=(("features.0.", "conv1.0."),) + _ATTENTION_ALIASES,
        folded=_ATTENTION_FOLDED,
    ),
    "detector": _OriginalLayout(network="landmarks", renames=(("", ""),)),
}
_SN_SUFFIXES = ("weight_orig", "weight_u", "weight_v")


def fold_spectral_norm(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight that ``torch.nn.utils.spectral_norm`` uses in eval mode (no power iteration).

    Args:
        weight_orig: (out, ...) the unnormalised weight of a convolution or linear layer.
        u: (out,) and v: (prod(...),) the stored singular-vector estimates.

    Returns:
        ``weight_orig / sigma`` with ``sigma = u . (W v)``, ``W = weight_orig.reshape(out, -1)``.
    """
    sigma = torch.dot(u, torch.mv(weight_orig.reshape(weight_orig.shape[0], -1), v))
    return weight_orig / sigma


def _original_name(our_key: str, layout: _OriginalLayout) -> str:
    """The original name(s) that an our-side key comes from (for error messages)."""
    for old, new in layout.renames:
        if our_key.startswith(new):
            key = old + our_key[len(new) :]
            module, _, leaf = key.rpartition(".")
            if leaf == "weight" and module + "." in layout.folded:
                return "/".join(f"{module}.{s}" for s in _SN_SUFFIXES)
            return key
    return our_key


def _map_original(
    state: Mapping[str, Any], layout: _OriginalLayout, config: ModelConfig, where: str
) -> StateDict:
    """Map an original state dict onto our names, checking names and shapes against our model."""
    # 1. DataParallel prefixes
    work: dict[str, torch.Tensor] = {}
    bad_values: list[str] = []
    for key, value in state.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if not isinstance(value, torch.Tensor):
            bad_values.append(f"{key} ({type(value).__name__})")
            continue
        if name in work:
            raise WeightsError(f"{where}: tensor {name!r} appears both with and without the 'module.' prefix")
        work[name] = value
    if bad_values:
        raise WeightsError(f"{where}: entries that are not tensors: {list_report('entries', bad_values)}")

    # 2. modules registered twice: the copies must be equal; keep one
    for alias, canonical in layout.aliases:
        for key in [k for k in work if k.startswith(alias)]:
            twin = canonical + key[len(alias) :]
            value = work.pop(key)
            if twin not in work:
                work[twin] = value  # only the duplicate was stored: use it
            elif work[twin].shape != value.shape or not torch.equal(work[twin], value):
                raise WeightsError(
                    f"{where}: {key} and {twin} are the same module in the original "
                    "and must hold equal tensors, but they differ"
                )

    # 3. spectral norm folded into plain weights
    missing_original: list[str] = []
    for module in layout.folded:
        present = [s for s in _SN_SUFFIXES if module + s in work]
        if not present:
            continue  # a plain ``weight`` (or nothing, reported below)
        if len(present) < len(_SN_SUFFIXES):
            missing_original += [module + s for s in _SN_SUFFIXES if s not in present]
            for s in present:  # reported through the missing part; not also as unexpected
                del work[module + s]
            continue
        weight, u, v = (work.pop(module + s) for s in _SN_SUFFIXES)
        if u.shape != (weight.shape[0],) or v.shape != (weight[0].numel(),):
            raise WeightsError(
                f"{where}: spectral-norm vectors of {module}weight_orig "
                f"{tuple(weight.shape)} have shapes u {tuple(u.shape)}, "
                f"v {tuple(v.shape)}; expected ({weight.shape[0]},) and "
                f"({weight[0].numel()},)"
            )
        if module + "weight" in work:
            raise WeightsError(f"{where}: {module}weight is stored both plain and spectral-normalised")
        work[module + "weight"] = fold_spectral_norm(weight.float(), u.float(), v.float()).to(weight.dtype)

    # 4. renames
    out: StateDict = {}
    unexpected: list[str] = []
    for key, value in work.items():
        for old, new in layout.renames:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            unexpected.append(key)

    # 5. names and shapes against our network
    expected = expected_state(layout.network, config)
    missing, extra, shapes = compare_state(expected, out)
    unexpected += [_original_name(k, layout) for k in extra]
    missing_names = list(missing_original)
    for k in missing:
        original = _original_name(k, layout)
        if not any(m in original.split("/") for m in missing_original):
            missing_names.append(original if original == k else f"{original} (our {k})")
    if missing_names or unexpected or shapes:
        raise WeightsError(
            f"{where}: does not match the original LaFIn layout: "
            f"{mismatch_report(missing_names, sorted(unexpected), shapes)}"
        )
    return out


_TRAIN_CHECKPOINT_FORMAT = "lafin-train-checkpoint"


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (pickle, zip, EOF, ...) for foreign files
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise WeightsError(
            f"{path}: not a readable PyTorch weights file ({type(exc).__name__}: {first})"
        ) from None


def load_original(paths: PathLike | Sequence[PathLike]) -> LoadedWeights:
    """Load files of the original LaFIn release onto the ``paper`` preset.

    Args:
        paths: one or more of ``InpaintingModel_gen.pth``, ``landmark_detector.pth`` and
            ``InpaintingModel_dis.pth`` (any names: a file is recognised by its dict key
            ``generator``, ``detector`` or ``discriminator``).

    Returns:
        LoadedWeights with ``config = PRESETS["paper"]``, states in our naming (checked against
        our networks' names and shapes), and metadata ``source`` and ``<network>_iteration``.

    Raises:
        WeightsError: unreadable file, a file that is no original checkpoint (the message lists
            the keys found), a network given twice, or tensors that are missing, unexpected,
            mis-shaped or (for registered-twice modules) inconsistent.
    """
    path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not path_list:
        raise WeightsError("no weights files given")
    config = PRESETS["paper"]
    loaded = LoadedWeights(config, metadata={"source": "original LaFIn release"})
    origin: dict[str, Path] = {}
    for raw in path_list:
        path = check_weights_file(raw)
        data = _read_torch(path)
        if not isinstance(data, dict):
            raise WeightsError(
                f"{path}: expected a dict of state dicts, found "
                f"{type(data).__name__}; not an original LaFIn checkpoint"
            )
        if data.get("format") == _TRAIN_CHECKPOINT_FORMAT:
            raise WeightsError(
                f"{path}: a lafin training checkpoint (optimiser and RNG state), "
                "not a weights file; use the weights.safetensors written next to "
                "it"
            )
        keys = [k for k in _LAYOUTS if k in data]
        if not keys:
            found = ", ".join(sorted(map(str, data))[:10]) or "nothing"
            raise WeightsError(
                f"{path}: not an original LaFIn checkpoint: expected a dict with "
                f"one of {sorted(_LAYOUTS)}; found keys: {found}"
            )
        for key in keys:
            layout = _LAYOUTS[key]
            where = f"{path} [{key!r}]"
            if layout.network in origin:
                raise WeightsError(
                    f"{where}: the {layout.network} network was already read "
                    f"from {origin[layout.network]}; give each network once"
                )
            if not isinstance(data[key], Mapping):
                raise WeightsError(f"{where}: expected a state dict, found {type(data[key]).__name__}")
            loaded.set_state(layout.network, _map_original(data[key], layout, config, where))
            origin[layout.network] = path
            if "iteration" in data:
                try:
                    loaded.metadata[f"{layout.network}_iteration"] = str(int(data["iteration"]))
                except (TypeError, ValueError):
                    log.warning("%s: ignoring non-integer iteration %r", path, data["iteration"])
        log.info("read original LaFIn %s from %s", "+".join(keys), path)
    return loaded


def convert_original(
    inputs: PathLike | Sequence[PathLike], output: PathLike, metadata: Mapping[str, Any] | None = None
) -> LoadedWeights:
    """Convert original release files into one of our weights files (``paper`` preset).

    Names and shapes are checked strictly (see :func:`load_original`); the output is written
    atomically. Returns what was written.
    """
    loaded = load_original(inputs)
    loaded.metadata.update({str(k): str(v) for k, v in (metadata or {}).items()})
    write_weights(
        output,
        loaded.config,
        {n: loaded.state(n) for n in loaded.networks},  # type: ignore[misc]
        loaded.metadata,
    )
    return loaded
