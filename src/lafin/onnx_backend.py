"""ONNX export of the networks and ONNX Runtime runners that stand in for them.

An exported folder is self-describing:

* ``landmarks.onnx``: input ``masked`` (B, 3, L, L) float32 in [0, 1] (hole pixels 1), output
  ``landmarks`` (B, 136) float32, x0, y0, x1, y1, ... as fractions of L (L is the config's
  ``landmark_size``: ``landmarks.input_size``, or S when that is 0);
* ``generator.onnx``: inputs ``masked`` (B, 3, S, S), ``landmark_map`` (B, 1, S, S) (1 at each
  landmark pixel), ``mask`` (B, 1, S, S) (1 = hole), output ``image`` (B, 3, S, S) float32 in
  [0, 1] (not composited);
* ``refiner.onnx`` (weights with a refiner only): inputs ``coarse`` (B, 3, R, R), ``mask``
  (B, 1, R, R), ``heatmap`` (B, 1, R, R), ``noise`` (B, 1, R, R), output ``image`` (B, 3, R, R)
  in [0, 1] (R: the refiner's ``output_size``; see :class:`lafin.networks.refiner.Refiner`);
* ``lafin-onnx.json``: the format name and version, the :class:`~lafin.config.ModelConfig`
  (so the image size S and the preset are known without the weights file), the opset, the
  tensor names and shapes, and where the weights came from.

The batch axis B is dynamic; S is fixed by the config. Export uses PyTorch's TorchScript-based
exporter (``dynamo=False``): it needs neither ``onnxscript`` nor the ``onnx`` package, and it
exports every op the networks use (separable and dilated convolutions, instance norm, reflection
padding, transposed convolutions, the attention's batched products and softmax, bilinear and
nearest resizing). The compact generator's ``adaptive_max_pool2d`` of the hole mask to a feature
map's size is traced as the equal fixed-kernel max pooling (the sizes are fixed).

Use::

    from lafin.onnx_backend import export_onnx
    export_onnx("lafin-compact.safetensors", "lafin-onnx/")      # or: lafin export --format onnx
    model = LaFInModel(weights="lafin-onnx/", backend="onnx")
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import types
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lafin.config import ModelConfig
from lafin.io import InputError

if TYPE_CHECKING:
    from lafin.pipeline import LaFInModel

log = logging.getLogger(__name__)

FORMAT_NAME = "lafin-onnx"
FORMAT_VERSION = 1
METADATA_NAME = "lafin-onnx.json"
LANDMARKS_NAME = "landmarks.onnx"
GENERATOR_NAME = "generator.onnx"
REFINER_NAME = "refiner.onnx"
OPSET = 17
_EXPORT_BATCH = 2  # traced with two images so that nothing specialises to a batch of one

PathLike = str | os.PathLike
WeightsSource = PathLike | Sequence[PathLike]


class OnnxError(InputError):
    """An ONNX folder that cannot be used, or ONNX Runtime missing; the message says which
    (an :class:`~lafin.io.InputError`, so the CLI reports it in one line)."""


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxError(
            f"the onnx backend needs ONNX Runtime: pip install 'lafin[onnx]' (import failed: {exc})"
        ) from None
    return onnxruntime


# ---------------------------------------------------------------------------------- export


def _static_adaptive_max_pool2d(inp: torch.Tensor, output_size: Any) -> torch.Tensor:
    """``adaptive_max_pool2d`` for sizes that divide the input: a fixed-kernel max pooling.

    During tracing the sizes are read as constants (the export fixes H and W)."""
    out_h, out_w = (int(v) for v in output_size)
    h, w = int(inp.shape[-2]), int(inp.shape[-1])
    if h % out_h or w % out_w:
        raise OnnxError(f"cannot export adaptive max pooling from {h}x{w} to {out_h}x{out_w}")
    kernel = (h // out_h, w // out_w)
    return F.max_pool2d(inp, kernel, kernel)


@contextmanager
def _exportable() -> Iterator[None]:
    """Trace-time stand-ins for ops the TorchScript exporter cannot take with traced sizes."""
    import lafin.networks.compact_generator as compact

    functional = compact.F
    proxy = types.SimpleNamespace(**{k: getattr(F, k) for k in dir(F) if not k.startswith("__")})
    proxy.adaptive_max_pool2d = _static_adaptive_max_pool2d
    compact.F = proxy  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about constant sizes; legacy exporter
            yield
    finally:
        compact.F = functional


def _networks(
    weights_or_model: "WeightsSource | LaFInModel",
) -> tuple[ModelConfig, nn.Module, nn.Module, nn.Module | None, str]:
    """(config, generator, landmark predictor, refiner or None, source description), as fresh
    float32 CPU copies."""
    # a LaFInModel, recognised by what it holds (this module sits below lafin.pipeline)
    if hasattr(weights_or_model, "landmark_predictor") and hasattr(weights_or_model, "backend"):
        if weights_or_model.backend != "torch":
            raise OnnxError("export needs a model with the torch backend (this one runs ONNX)")
        config = weights_or_model.config
        nets = [
            None
            if n is None
            else copy.deepcopy(n).cpu().float().to(memory_format=torch.contiguous_format).eval()
            for n in (
                weights_or_model.generator,
                weights_or_model.landmark_predictor,
                getattr(weights_or_model, "refiner", None),
            )
        ]
        return config, nets[0], nets[1], nets[2], "in-memory LaFInModel"
    from lafin.checkpoint import build_from_weights, build_refiner_from_weights, load_any

    loaded = load_any(weights_or_model)
    generator, predictor = build_from_weights(loaded, device="cpu")
    refiner = build_refiner_from_weights(loaded, device="cpu")
    if generator is None or predictor is None:
        missing = "generator" if generator is None else "landmark predictor"
        raise OnnxError(
            f"{weights_or_model}: the weights have no {missing}; the ONNX export needs both networks"
        )
    sources = (
        [weights_or_model] if isinstance(weights_or_model, (str, os.PathLike)) else list(weights_or_model)
    )
    return loaded.config, generator, predictor, refiner, ", ".join(Path(p).name for p in sources)


def export_onnx(
    weights_or_model: "WeightsSource | LaFInModel", out_dir: PathLike, opset: int = OPSET
) -> list[Path]:
    """Export the landmark predictor and the generator to ONNX, with a metadata file.

    Args:
        weights_or_model: a weights file (or the original release's ``.pth`` files), or a
            :class:`~lafin.pipeline.LaFInModel` with the torch backend.
        out_dir: folder to write into (created; existing files of the same names are replaced).
        opset: ONNX opset (default 17).

    Returns:
        The paths written: ``landmarks.onnx``, ``generator.onnx``, ``refiner.onnx`` (when the
        weights have a refiner), ``lafin-onnx.json``.
    """
    config, generator, predictor, refiner, source = _networks(weights_or_model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s, ls = config.image_size, config.landmark_size  # the predictor may have its own input size
    masked = torch.rand(_EXPORT_BATCH, 3, s, s)
    lmap = torch.zeros(_EXPORT_BATCH, 1, s, s)
    lmap[:, :, s // 2, s // 2] = 1
    mask = torch.zeros(_EXPORT_BATCH, 1, s, s)
    mask[:, :, s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = 1
    batch = {0: "batch"}
    with _exportable(), torch.no_grad():
        torch.onnx.export(
            predictor,
            (torch.rand(_EXPORT_BATCH, 3, ls, ls),),
            str(out / LANDMARKS_NAME),
            dynamo=False,
            opset_version=opset,
            input_names=["masked"],
            output_names=["landmarks"],
            dynamic_axes={"masked": batch, "landmarks": batch},
        )
        torch.onnx.export(
            generator,
            (masked, lmap, mask),
            str(out / GENERATOR_NAME),
            dynamo=False,
            opset_version=opset,
            input_names=["masked", "landmark_map", "mask"],
            output_names=["image"],
            dynamic_axes={k: batch for k in ("masked", "landmark_map", "mask", "image")},
        )
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "opset": opset,
        "config": config.to_dict(),
        "source": source,
        "torch": torch.__version__,
        "networks": {
            "landmarks": {
                "file": LANDMARKS_NAME,
                "inputs": {"masked": ["B", 3, ls, ls]},
                "outputs": {"landmarks": ["B", 2 * config.landmarks.num_points]},
                "note": "masked: float32 in [0, 1], hole pixels 1; landmarks: x, y "
                "interleaved, fractions of the image side",
            },
            "generator": {
                "file": GENERATOR_NAME,
                "inputs": {"masked": ["B", 3, s, s], "landmark_map": ["B", 1, s, s], "mask": ["B", 1, s, s]},
                "outputs": {"image": ["B", 3, s, s]},
                "note": "landmark_map: 1 at each rounded landmark pixel; mask: 1 = hole;"
                " image: float32 in [0, 1], to be composited into the hole",
            },
        },
    }
    written = [out / LANDMARKS_NAME, out / GENERATOR_NAME]
    (out / REFINER_NAME).unlink(missing_ok=True)  # a refiner of an earlier export is not ours
    if refiner is not None:
        r = config.refiner.output_size
        names = ("coarse", "mask", "heatmap", "noise")
        with torch.no_grad():
            torch.onnx.export(
                refiner,
                (
                    torch.rand(_EXPORT_BATCH, 3, r, r),
                    mask_like(r),
                    torch.rand(_EXPORT_BATCH, 1, r, r),
                    torch.randn(_EXPORT_BATCH, 1, r, r),
                ),
                str(out / REFINER_NAME),
                dynamo=False,
                opset_version=opset,
                input_names=list(names),
                output_names=["image"],
                dynamic_axes={k: batch for k in names + ("image",)},
            )
        metadata["networks"]["refiner"] = {
            "file": REFINER_NAME,
            "inputs": {
                "coarse": ["B", 3, r, r],
                "mask": ["B", 1, r, r],
                "heatmap": ["B", 1, r, r],
                "noise": ["B", 1, r, r],
            },
            "outputs": {"image": ["B", 3, r, r]},
            "note": "coarse: the generator's face upsampled to R and composited with the known "
            "pixels; heatmap: lafin.networks.refiner.landmark_heatmap of the landmarks "
            "at R; noise: standard normal; image: float32 in [0, 1]",
        }
        written.append(out / REFINER_NAME)
    (out / METADATA_NAME).write_text(json.dumps(metadata, indent=1))
    log.info("exported %s (%s preset, %d px) to %s", source, config.name, s, out)
    return written + [out / METADATA_NAME]


def mask_like(size: int) -> torch.Tensor:
    """An export-time hole: the central half of a (batch, 1, size, size) mask."""
    mask = torch.zeros(_EXPORT_BATCH, 1, size, size)
    mask[:, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return mask


# ---------------------------------------------------------------------------------- runners


class OnnxNetwork:
    """One ONNX Runtime session that is called like the torch network it was exported from:
    torch tensors in, a torch tensor out (CPU, float32). ``eval()`` and ``to()`` are no-ops."""

    input_names: tuple[str, ...] = ()

    def __init__(self, path: PathLike, threads: int | None = None) -> None:
        ort = _require_onnxruntime()
        options = ort.SessionOptions()
        # one thread unless told otherwise: measured fastest for these networks on a shared CPU
        options.intra_op_num_threads = threads or 1
        options.inter_op_num_threads = 1
        if (threads or 1) > 1:  # spinning workers collapse when other processes hold the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # denormals in the attention's softmax make the matrix products ~10x slower
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = tuple(i.name for i in self.session.get_inputs())
        if names != self.input_names:
            raise OnnxError(f"{path}: inputs {names}, expected {self.input_names}")

    def eval(self) -> "OnnxNetwork":
        return self

    def to(self, *args: Any, **kwargs: Any) -> "OnnxNetwork":
        return self

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        feeds = {
            name: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
            for name, t in zip(self.input_names, tensors)
        }
        return torch.from_numpy(self.session.run(None, feeds)[0])


class OnnxLandmarkPredictor(OnnxNetwork):
    """``(B, 3, S, S)`` masked faces -> ``(B, 136)`` landmarks as fractions of S."""

    input_names = ("masked",)


class OnnxGenerator(OnnxNetwork):
    """``(masked (B, 3, S, S), landmark_map (B, 1, S, S), mask (B, 1, S, S))`` -> ``(B, 3, S, S)``."""

    input_names = ("masked", "landmark_map", "mask")


class OnnxRefiner(OnnxNetwork):
    """``(coarse, mask, heatmap, noise)``, each (B, C, R, R) -> ``(B, 3, R, R)``."""

    input_names = ("coarse", "mask", "heatmap", "noise")


def read_metadata(folder: PathLike) -> dict[str, Any]:
    """The metadata of an exported folder; an error names what is missing or wrong."""
    folder = Path(folder)
    meta_path = folder / METADATA_NAME
    if not meta_path.is_file():
        raise OnnxError(
            f"{folder}: not a lafin ONNX folder (no {METADATA_NAME}); write one with "
            "'lafin export --format onnx FOLDER --weights W'"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise OnnxError(f"{meta_path}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT_NAME or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise OnnxError(
            f"{meta_path}: format {meta.get('format')!r} version "
            f"{meta.get('format_version')!r}; this lafin reads {FORMAT_NAME} up to "
            f"version {FORMAT_VERSION}"
        )
    for name in (LANDMARKS_NAME, GENERATOR_NAME):
        if not (folder / name).is_file():
            raise OnnxError(f"{folder}: {name} is missing")
    return meta


def load_onnx_folder(
    folder: PathLike, threads: int | None = None
) -> tuple[ModelConfig, OnnxGenerator, OnnxLandmarkPredictor]:
    """(config, generator runner, landmark runner) of an exported folder."""
    folder = Path(folder)
    meta = read_metadata(folder)
    config = ModelConfig.from_dict(meta["config"])
    return (
        config,
        OnnxGenerator(folder / GENERATOR_NAME, threads),
        OnnxLandmarkPredictor(folder / LANDMARKS_NAME, threads),
    )


def cache_dir() -> Path:
    """Where exports of weights files are kept: ``$LAFIN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/lafin`` (``~/.cache/lafin``), with an ``onnx`` sub-folder."""
    root = os.environ.get("LAFIN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lafin"
    )
    return Path(root) / "onnx"


def _cache_key(paths: Sequence[Path], opset: int) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return f"{digest.hexdigest()[:20]}-opset{opset}-torch{torch.__version__.split('+')[0]}"


def cached_export(weights: WeightsSource, opset: int = OPSET) -> Path:
    """The ONNX folder of a weights file, exported on first use into :func:`cache_dir`
    (keyed by the files' content); a temporary folder when the cache is not writable."""
    sources = [weights] if isinstance(weights, (str, os.PathLike)) else list(weights)
    paths = [Path(p) for p in sources]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
    key = _cache_key(paths, opset)
    folder = cache_dir() / key
    try:
        read_metadata(folder)
        return folder
    except OnnxError:
        pass
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    except OSError as exc:
        log.warning("ONNX cache %s not writable (%s); exporting to a temporary folder", folder.parent, exc)
        staging = Path(tempfile.mkdtemp(prefix="lafin-onnx-"))
        export_onnx(sources if len(sources) > 1 else sources[0], staging, opset)
        return staging
    log.info("exporting %s to ONNX (once; cached in %s)", ", ".join(map(str, paths)), folder)
    try:
        export_onnx(sources if len(sources) > 1 else sources[0], staging, opset)
        try:
            staging.rename(folder)
        except OSError:  # another process finished the same export first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def onnx_folder(weights: WeightsSource) -> Path:
    """The exported folder for ``weights``: the folder itself (or an ``.onnx`` file's folder),
    or the cached export of weights file(s), made on first use."""
    _require_onnxruntime()
    single = isinstance(weights, (str, os.PathLike))
    if single and Path(weights).is_dir():
        return Path(weights)
    if single and Path(weights).suffix == ".onnx":
        return Path(weights).parent
    return cached_export(weights)


def load_onnx_networks(
    weights: WeightsSource, threads: int | None = None
) -> tuple[ModelConfig, OnnxGenerator, OnnxLandmarkPredictor]:
    """Runners for an exported folder, or for weights file(s) exported on the fly (cached)."""
    return load_onnx_folder(onnx_folder(weights), threads)


def load_onnx_refiner(folder: PathLike, threads: int | None = None) -> OnnxRefiner | None:
    """The refiner runner of an exported folder, or None when the model has no refiner."""
    meta = read_metadata(folder)
    if not ModelConfig.from_dict(meta["config"]).refiner.enabled:
        return None
    if not (Path(folder) / REFINER_NAME).is_file():
        raise OnnxError(f"{folder}: the model has a refiner but {REFINER_NAME} is missing")
    return OnnxRefiner(Path(folder) / REFINER_NAME, threads)
