"""Weights files: our safetensors format, and the original LaFIn release's ``.pth`` files.

Our format
----------
One ``.safetensors`` file. Tensor names are prefixed by network: ``generator.``, ``landmarks.``,
``discriminator.`` (any subset may be present). The safetensors metadata (all strings) holds

* ``format`` = ``"lafin-weights"`` and ``format_version`` = ``"1"``;
* ``config``: the :class:`~lafin.config.ModelConfig` as JSON, so the networks are rebuilt from
  the file alone;
* any extra string metadata given when saving (e.g. ``step``).

Building networks from a file is strict: a missing, unexpected or mis-shaped tensor is a
:class:`WeightsError` that names it.

The original release
--------------------
``InpaintingModel_gen.pth`` (dict key ``generator``), ``InpaintingModel_dis.pth``
(``discriminator``) and ``landmark_detector.pth`` (``detector``) map onto the ``paper`` preset.
Files are recognised by the dict key they hold, not by their names; ``module.`` prefixes
(DataParallel) are removed. Modules that the original registers twice are checked to be equal and
the duplicate is dropped; the spectral-normalised convolutions of the generator's attention are
folded into plain weights exactly as PyTorch computes them in eval mode.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from lafin.config import PRESETS, ModelConfig

log = logging.getLogger(__name__)

FORMAT_NAME = "lafin-weights"
FORMAT_VERSION = 1
NETWORKS = ("generator", "landmarks", "discriminator", "refiner")
_RESERVED_METADATA = ("format", "format_version", "config")

PathLike = str | os.PathLike
StateDict = dict[str, torch.Tensor]


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedWeights:
    """Networks' state dicts and the config to rebuild them.

    Attributes:
        config: the model configuration the states belong to.
        generator_state / landmarks_state / discriminator_state / refiner_state: name -> tensor
            (on the CPU), in our modules' naming; None when the source did not contain that
            network.
        metadata: extra string metadata (e.g. ``step``; for the original release ``source`` and
            ``<network>_iteration``).
    """

    config: ModelConfig
    generator_state: StateDict | None = None
    landmarks_state: StateDict | None = None
    discriminator_state: StateDict | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    refiner_state: StateDict | None = None

    def state(self, network: str) -> StateDict | None:
        """The state of ``network`` (one of :data:`NETWORKS`), or None."""
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; expected one of {NETWORKS}")
        return getattr(self, f"{network}_state")

    def set_state(self, network: str, state: StateDict | None) -> None:
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; expected one of {NETWORKS}")
        setattr(self, f"{network}_state", state)

    @property
    def networks(self) -> tuple[str, ...]:
        """Names of the networks present, in :data:`NETWORKS` order."""
        return tuple(n for n in NETWORKS if self.state(n) is not None)


# ----------------------------------------------------------------------------- helpers


def _list_report(label: str, items: Sequence[str], limit: int = 10) -> str:
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)} {label}: {', '.join(items[:limit])}{more}"


def _mismatch_report(missing: Sequence[str], unexpected: Sequence[str],
                     shapes: Sequence[str]) -> str:
    parts = [_list_report(label, items) for label, items in
             (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", shapes))
             if items]
    return "; ".join(parts)


def _compare_state(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
                   ) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, shape descriptions) of ``state`` against ``expected``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    return missing, unexpected, shapes


def _builders() -> dict[str, Callable[[ModelConfig], nn.Module]]:
    from lafin.networks import (build_discriminator, build_generator, build_landmark_predictor,
                                build_refiner)

    return {"generator": build_generator, "landmarks": build_landmark_predictor,
            "discriminator": build_discriminator, "refiner": build_refiner}


def _expected_state(network: str, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict (names and shapes only, on the meta device) of ``network`` for ``config``."""
    with torch.device("meta"):
        return _builders()[network](config).state_dict()


# ----------------------------------------------------------------------------- our format


def _write(path: PathLike, config: ModelConfig, states: Mapping[str, Mapping[str, torch.Tensor]],
           metadata: Mapping[str, Any] | None) -> None:
    """Write per-network states as one of our files, atomically (temp file + os.replace)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for network, state in states.items():
        for name, value in state.items():
            # clone: safetensors refuses tensors that share storage (e.g. tied weights)
            tensors[f"{network}.{name}"] = value.detach().to("cpu").contiguous().clone()
    if not tensors:
        raise ValueError("nothing to save: give at least one network")
    extra = {str(k): str(v) for k, v in (metadata or {}).items()}
    clash = sorted(set(extra) & set(_RESERVED_METADATA))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by the weights format")
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
            "config": json.dumps(config.to_dict()), **extra}

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a weights file is not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(path: PathLike, config: ModelConfig, generator: nn.Module | None = None,
                 landmark_predictor: nn.Module | None = None,
                 discriminator: nn.Module | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 refiner: nn.Module | None = None) -> None:
    """Write the given networks and their config to one safetensors file, atomically.

    Args:
        path: output file (``.safetensors``); its directory is created if needed. The file is
            written to a temporary file in the same directory and renamed into place, so readers
            never see a partial file.
        config: the configuration the networks were built from.
        generator / landmark_predictor / discriminator / refiner: networks to store (at least
            one); their ``state_dict()`` is saved on the CPU.
        metadata: extra entries, stored as strings (e.g. ``{"step": 1000}``); the keys
            ``format``, ``format_version`` and ``config`` are reserved.
    """
    states = {network: net.state_dict() for network, net in
              zip(NETWORKS, (generator, landmark_predictor, discriminator, refiner))
              if net is not None}
    _write(path, config, states, metadata)


def _check_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"{path}: not a file")
    return path


def load_weights(path: PathLike) -> LoadedWeights:
    """Read one of our safetensors weights files (see the module docstring).

    Tensors are loaded on the CPU. Names and shapes are checked against the networks only when
    they are built (:func:`build_from_weights`).

    Raises:
        WeightsError: not a file, not safetensors, a safetensors file that is not ours, a
            format version newer than this lafin supports, or a bad config.
    """
    from safetensors import SafetensorError, safe_open

    path = _check_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        names = ", ".join(sorted(tensors)[:5]) or "none"
        raise WeightsError(f"{path}: a safetensors file without lafin metadata (format="
                           f"{meta.get('format')!r}, tensors: {names}); it is not a lafin "
                           "weights file")
    raw_version = meta.get("format_version")
    try:
        version = int(raw_version)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: missing or bad format_version {raw_version!r}") from None
    if version > FORMAT_VERSION:
        raise WeightsError(f"{path}: weights format version {version} is newer than this lafin "
                           f"supports ({FORMAT_VERSION}); upgrade lafin to read it")
    if version < 1:
        raise WeightsError(f"{path}: bad format_version {raw_version!r}")
    if "config" not in meta:
        raise WeightsError(f"{path}: no model config in the metadata")
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise WeightsError(f"{path}: bad model config in the metadata ({exc})") from None

    states: dict[str, StateDict] = {}
    stray: list[str] = []
    for key, value in tensors.items():
        network, _, name = key.partition(".")
        if network in NETWORKS and name:
            states.setdefault(network, {})[name] = value
        else:
            stray.append(key)
    if stray:
        raise WeightsError(f"{path}: tensors that belong to no network {NETWORKS}: "
                           f"{_list_report('tensors', sorted(stray))}")
    extra = {k: v for k, v in meta.items() if k not in _RESERVED_METADATA}
    return LoadedWeights(config, states.get("generator"), states.get("landmarks"),
                         states.get("discriminator"), extra, refiner_state=states.get("refiner"))


def load_state_strict(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``net.load_state_dict(state, strict=True)`` with an error that names the bad keys.

    Raises:
        WeightsError: naming (the first 10 of, and the count of) the missing, unexpected and
            mis-shaped tensors.
    """
    missing, unexpected, shapes = _compare_state(net.state_dict(), state)
    if missing or unexpected or shapes:
        raise WeightsError(f"{what} do not match the model: "
                           f"{_mismatch_report(missing, unexpected, shapes)}")
    net.load_state_dict(state, strict=True)


def build_from_weights(loaded: LoadedWeights, device: str | torch.device = "cpu"
                       ) -> tuple[nn.Module | None, nn.Module | None]:
    """Build (generator, landmark predictor) from loaded weights, strictly.

    Returns:
        The networks (None for a network the weights do not contain), in eval mode on ``device``.

    Raises:
        WeightsError: if a state does not match the network its config describes.
    """
    builders = _builders()
    built: dict[str, nn.Module | None] = {}
    for network, what in (("generator", "generator weights"),
                          ("landmarks", "landmark predictor weights")):
        state = loaded.state(network)
        if state is None:
            built[network] = None
            continue
        net = builders[network](loaded.config)
        load_state_strict(net, state, f"{what} ({loaded.config.name} preset)")
        built[network] = net.to(device).eval()
    return built["generator"], built["landmarks"]


def build_refiner_from_weights(loaded: LoadedWeights, device: str | torch.device = "cpu"
                               ) -> nn.Module | None:
    """The refiner of loaded weights (strictly), in eval mode on ``device``; None without one.

    Raises:
        WeightsError: a refiner state without a refiner config, or one that does not match it.
    """
    state = loaded.state("refiner")
    if state is None:
        return None
    if not loaded.config.refiner.enabled:
        raise WeightsError("the file has refiner weights but its config has no refiner "
                           "(refiner.output_size = 0)")
    net = _builders()["refiner"](loaded.config)
    load_state_strict(net, state, f"refiner weights ({loaded.config.name} preset)")
    return net.to(device).eval()


def merge_weights(inputs: Sequence[PathLike], output: PathLike, half: bool = False) -> None:
    """Combine several of our weights files into one; later files win per network.

    The inputs must work at the same image size; each network keeps the sizes of the file it
    comes from (e.g. a widened generator beside the landmark predictor it was trained with), and
    the preset name is the generator's. ``half=True`` stores floating-point tensors as
    float16 (half the file size, e.g. for shipping); loading casts them back to the networks'
    float32 parameters, so nothing else changes.
    """
    merged = _merge([(Path(p), load_weights(p)) for p in inputs])
    states = {n: merged.state(n) for n in merged.networks}
    if half:
        states = {n: {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
                  for n, state in states.items()}  # type: ignore[union-attr]
    _write(output, merged.config, states, merged.metadata)  # type: ignore[arg-type]


def _merge(items: Sequence[tuple[Path, LoadedWeights]]) -> LoadedWeights:
    if not items:
        raise ValueError("nothing to merge: give at least one weights file")
    first_path, first = items[0]
    merged = LoadedWeights(first.config, metadata=dict(first.metadata))
    for path, loaded in items:
        if loaded.config.image_size != merged.config.image_size:
            raise WeightsError(f"{path}: model config ({loaded.config.name} preset, "
                               f"{loaded.config.image_size} px) differs from that of {first_path} "
                               f"({merged.config.name} preset, {merged.config.image_size} px); "
                               "cannot merge networks of different image sizes")
        # each network brings its own section of the config (its sizes)
        sections = {n: getattr(loaded.config, n) for n in loaded.networks}
        if "generator" in loaded.networks:
            sections["name"] = loaded.config.name
        merged.config = replace(merged.config, **sections)
        for network in loaded.networks:
            merged.set_state(network, loaded.state(network))
        # a file's per-network history ("landmarks.step") belongs to networks it carries; the
        # top-level keys describe its last training run, which may not be that network's
        merged.metadata.update({k: v for k, v in loaded.metadata.items()
                                if k.split(".")[0] not in NETWORKS
                                or k.split(".")[0] in loaded.networks})
        for network in loaded.networks:  # where each network came from survives the merge
            for key in ("step", "stage", "steps_before"):
                value = loaded.metadata.get(f"{network}.{key}", loaded.metadata.get(key))
                if value is not None:
                    merged.metadata[f"{network}.{key}"] = value
                else:
                    merged.metadata.pop(f"{network}.{key}", None)
    return merged


# ----------------------------------------------------------------------------- the original release

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


_ATTENTION_ALIASES = (("auto_attn.model.model.1.", "auto_attn.model.conv1."),
                      ("auto_attn.model.model.3.", "auto_attn.model.conv2."),
                      ("auto_attn.model.shortcut.0.", "auto_attn.model.bypass."))
_ATTENTION_FOLDED = ("auto_attn.model.conv1.", "auto_attn.model.conv2.", "auto_attn.model.bypass.")
_ATTENTION_RENAMES = (("auto_attn.model.", "attention.fuse."), ("auto_attn.", "attention."))

_LAYOUTS: dict[str, _OriginalLayout] = {
    "generator": _OriginalLayout(
        network="generator",
        renames=(("encoder1.1.", "encoders.0.1."), ("encoder2.0.", "encoders.1.0."),
                 ("encoder3.0.", "encoders.2.0."), ("middle.", "middle."),
                 ("decoder1.0.", "decoders.0.0."), ("decoder2.0.", "decoders.1.0."),
                 ("fushion1.0.", "fusions.0.0."), ("fushion2.0.", "fusions.1.0."),
                 ("decoder3.1.", "to_rgb.1.")) + _ATTENTION_RENAMES,
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


def fold_spectral_norm(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor
                       ) -> torch.Tensor:
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
            key = old + our_key[len(new):]
            module, _, leaf = key.rpartition(".")
            if leaf == "weight" and module + "." in layout.folded:
                return "/".join(f"{module}.{s}" for s in _SN_SUFFIXES)
            return key
    return our_key


def _map_original(state: Mapping[str, Any], layout: _OriginalLayout, config: ModelConfig,
                  where: str) -> StateDict:
    """Map an original state dict onto our names, checking names and shapes against our model."""
    # 1. DataParallel prefixes
    work: dict[str, torch.Tensor] = {}
    bad_values: list[str] = []
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if not isinstance(value, torch.Tensor):
            bad_values.append(f"{key} ({type(value).__name__})")
            continue
        if name in work:
            raise WeightsError(f"{where}: tensor {name!r} appears both with and without the "
                               "'module.' prefix")
        work[name] = value
    if bad_values:
        raise WeightsError(f"{where}: entries that are not tensors: "
                           f"{_list_report('entries', bad_values)}")

    # 2. modules registered twice: the copies must be equal; keep one
    for alias, canonical in layout.aliases:
        for key in [k for k in work if k.startswith(alias)]:
            twin = canonical + key[len(alias):]
            value = work.pop(key)
            if twin not in work:
                work[twin] = value  # only the duplicate was stored: use it
            elif (work[twin].shape != value.shape or not torch.equal(work[twin], value)):
                raise WeightsError(f"{where}: {key} and {twin} are the same module in the original "
                                   "and must hold equal tensors, but they differ")

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
            raise WeightsError(f"{where}: spectral-norm vectors of {module}weight_orig "
                               f"{tuple(weight.shape)} have shapes u {tuple(u.shape)}, "
                               f"v {tuple(v.shape)}; expected ({weight.shape[0]},) and "
                               f"({weight[0].numel()},)")
        if module + "weight" in work:
            raise WeightsError(f"{where}: {module}weight is stored both plain and spectral-"
                               "normalised")
        work[module + "weight"] = fold_spectral_norm(weight.float(), u.float(), v.float()
                                                     ).to(weight.dtype)

    # 4. renames
    out: StateDict = {}
    unexpected: list[str] = []
    for key, value in work.items():
        for old, new in layout.renames:
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            unexpected.append(key)

    # 5. names and shapes against our network
    expected = _expected_state(layout.network, config)
    missing, extra, shapes = _compare_state(expected, out)
    unexpected += [_original_name(k, layout) for k in extra]
    missing_names = list(missing_original)
    for k in missing:
        original = _original_name(k, layout)
        if not any(m in original.split("/") for m in missing_original):
            missing_names.append(original if original == k else f"{original} (our {k})")
    if missing_names or unexpected or shapes:
        raise WeightsError(f"{where}: does not match the original LaFIn layout: "
                           f"{_mismatch_report(missing_names, sorted(unexpected), shapes)}")
    return out


_TRAIN_CHECKPOINT_FORMAT = "lafin-train-checkpoint"


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (pickle, zip, EOF, ...) for foreign files
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise WeightsError(f"{path}: not a readable PyTorch weights file "
                           f"({type(exc).__name__}: {first})") from None


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
        path = _check_file(raw)
        data = _read_torch(path)
        if not isinstance(data, dict):
            raise WeightsError(f"{path}: expected a dict of state dicts, found "
                               f"{type(data).__name__}; not an original LaFIn checkpoint")
        if data.get("format") == _TRAIN_CHECKPOINT_FORMAT:
            raise WeightsError(f"{path}: a lafin training checkpoint (optimiser and RNG state), "
                               "not a weights file; use the weights.safetensors written next to "
                               "it")
        keys = [k for k in _LAYOUTS if k in data]
        if not keys:
            found = ", ".join(sorted(map(str, data))[:10]) or "nothing"
            raise WeightsError(f"{path}: not an original LaFIn checkpoint: expected a dict with "
                               f"one of {sorted(_LAYOUTS)}; found keys: {found}")
        for key in keys:
            layout = _LAYOUTS[key]
            where = f"{path} [{key!r}]"
            if layout.network in origin:
                raise WeightsError(f"{where}: the {layout.network} network was already read "
                                   f"from {origin[layout.network]}; give each network once")
            if not isinstance(data[key], Mapping):
                raise WeightsError(f"{where}: expected a state dict, found "
                                   f"{type(data[key]).__name__}")
            loaded.set_state(layout.network, _map_original(data[key], layout, config, where))
            origin[layout.network] = path
            if "iteration" in data:
                try:
                    loaded.metadata[f"{layout.network}_iteration"] = str(int(data["iteration"]))
                except (TypeError, ValueError):
                    log.warning("%s: ignoring non-integer iteration %r", path, data["iteration"])
        log.info("read original LaFIn %s from %s", "+".join(keys), path)
    return loaded


def convert_original(inputs: PathLike | Sequence[PathLike], output: PathLike,
                     metadata: Mapping[str, Any] | None = None) -> LoadedWeights:
    """Convert original release files into one of our weights files (``paper`` preset).

    Names and shapes are checked strictly (see :func:`load_original`); the output is written
    atomically. Returns what was written.
    """
    loaded = load_original(inputs)
    loaded.metadata.update({str(k): str(v) for k, v in (metadata or {}).items()})
    _write(output, loaded.config, {n: loaded.state(n) for n in loaded.networks},  # type: ignore[misc]
           loaded.metadata)
    return loaded


# ----------------------------------------------------------------------------- by content


def sniff_weights(path: PathLike) -> str:
    """What a file looks like: ``"safetensors"``, ``"torch"`` (zip or legacy pickle) or
    ``"unknown"``. Only the first bytes are read."""
    path = _check_file(path)
    with path.open("rb") as f:
        head = f.read(9)
    # safetensors: little-endian u64 header length, then the JSON header. Checked first: the
    # header length's low byte can be anything, but byte 8 of a torch file is never "{".
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 2**27:
        return "safetensors"
    # torch: a zip archive (torch >= 1.6) or a bare pickle (legacy format, protocol 2..5)
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03",
                                                                          b"\x04", b"\x05")):
        return "torch"
    return "unknown"


def load_any(source: PathLike | Sequence[PathLike]) -> LoadedWeights:
    """Load weights by content: our safetensors file(s) or original release ``.pth`` file(s).

    Several files of ours are merged (same config required; later files win per network);
    several original files are combined as by :func:`load_original`. Mixing the two kinds is
    an error.
    """
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not sources:
        raise WeightsError("no weights files given")
    kinds: dict[str, list[Path]] = {"safetensors": [], "torch": []}
    for raw in sources:
        path = _check_file(raw)
        kind = sniff_weights(path)
        if kind == "unknown":
            with path.open("rb") as f:
                head = f.read(16)
            raise WeightsError(f"{path}: not a weights file: neither safetensors nor a PyTorch "
                               f"checkpoint ({path.stat().st_size} bytes starting {head!r})")
        kinds[kind].append(path)
    if kinds["safetensors"] and kinds["torch"]:
        raise WeightsError(f"cannot combine lafin weights ({', '.join(map(str, kinds['safetensors']))}) "
                           f"with original .pth files ({', '.join(map(str, kinds['torch']))}); "
                           "convert the originals first with 'lafin convert'")
    if kinds["torch"]:
        return load_original(kinds["torch"])
    paths = kinds["safetensors"]
    if len(paths) == 1:
        return load_weights(paths[0])
    return _merge([(p, load_weights(p)) for p in paths])
