"""ONNX export and the ONNX Runtime backend: same numbers as PyTorch, self-describing folders."""

from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import box_mask, face_like

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'lafin[onnx]')")

from lafin.checkpoint import save_weights  # noqa: E402
from lafin.cli import main  # noqa: E402
from lafin.config import GeneratorConfig, LandmarkConfig, ModelConfig, get_preset  # noqa: E402
from lafin.networks import build_generator, build_landmark_predictor  # noqa: E402
from lafin.onnx_backend import (
    GENERATOR_NAME,
    LANDMARKS_NAME,
    METADATA_NAME,
    OnnxError,  # noqa: E402
    export_onnx,
    load_onnx_folder,
)
from lafin.pipeline import LaFInModel, default_weights_path  # noqa: E402

# The original generator's structure (reflection padding, instance norm, transposed convolutions,
# bilinear mask resizing, attention) at test size: the paper preset's ops, small.
PAPER_LIKE = ModelConfig(
    name="paper-like",
    image_size=64,
    generator=GeneratorConfig(arch="lafin", channels=(8, 16, 32), num_residual_blocks=1, attention=True),
    landmarks=LandmarkConfig(width_mult=0.25),
)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAFIN_CACHE_DIR", str(tmp_path / "cache"))


def _weights(path: Path, config: ModelConfig) -> Path:
    """Random weights with the attention gates open (fresh layers have them at 0, which would
    leave the attention's export untested)."""
    torch.manual_seed(0)
    generator = build_generator(config)
    for module in generator.modules():
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(0.7)
            module.alpha.data.fill_(0.6)
    predictor = build_landmark_predictor(config)
    predictor.eval()
    save_weights(path, config, generator=generator, landmark_predictor=predictor)
    return path


@pytest.fixture
def tiny_open(tmp_path) -> Path:
    return _weights(tmp_path / "tiny.safetensors", get_preset("tiny"))


def _inputs(size: int, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    masked = torch.rand(batch, 3, size, size, generator=g)
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, size // 3 : 2 * size // 3, size // 4 : 3 * size // 4] = 1
    masked = masked * (1 - mask) + mask
    lmap = torch.zeros(batch, 1, size, size)
    idx = torch.randint(0, size, (batch, 68, 2), generator=g)
    for b in range(batch):
        lmap[b, 0, idx[b, :, 1], idx[b, :, 0]] = 1
    return masked, lmap, mask


TINY_BILINEAR = dataclasses.replace(
    get_preset("tiny"), generator=dataclasses.replace(get_preset("tiny").generator, upsample="bilinear")
)


@pytest.mark.parametrize(
    "config",
    [get_preset("tiny"), PAPER_LIKE, get_preset("compact"), TINY_BILINEAR],
    ids=["tiny", "paper-like", "compact", "tiny-bilinear"],
)
def test_export_matches_torch_for_any_batch(tmp_path, config):
    weights = _weights(tmp_path / "w.safetensors", config)
    written = export_onnx(weights, tmp_path / "onnx")
    assert [p.name for p in written] == [LANDMARKS_NAME, GENERATOR_NAME, METADATA_NAME]
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    torch_model = LaFInModel(weights=weights)
    loaded_config, generator, predictor = load_onnx_folder(tmp_path / "onnx")
    assert loaded_config == config
    s = config.image_size
    for batch in (1, 3):  # exported with 2: the batch axis is dynamic
        masked, lmap, mask = _inputs(s, batch, seed=batch)
        with torch.inference_mode():
            want_lm = torch_model.landmark_predictor(masked)
            want_img = torch_model.generator(masked, lmap, mask)
        got_lm, got_img = predictor(masked), generator(masked, lmap, mask)
        assert got_lm.shape == (batch, 136) and got_img.shape == (batch, 3, s, s)
        np.testing.assert_allclose(got_lm.numpy(), want_lm.numpy(), atol=1e-3)
        np.testing.assert_allclose(got_img.numpy(), want_img.numpy(), atol=1e-3)
        # the outputs are not trivially equal (e.g. all 0.5): the attention gates are open
        assert got_img.std() > 1e-3


def test_metadata_describes_the_folder(tmp_path, tiny_open):
    export_onnx(tiny_open, tmp_path / "onnx")
    meta = json.loads((tmp_path / "onnx" / METADATA_NAME).read_text())
    assert meta["format"] == "lafin-onnx" and meta["format_version"] == 1
    assert ModelConfig.from_dict(meta["config"]) == get_preset("tiny")
    assert meta["networks"]["generator"]["inputs"]["mask"] == ["B", 1, 64, 64]
    assert meta["source"] == "tiny.safetensors"


@pytest.mark.parametrize("mode", ["crop", "photo-given-landmarks"])
def test_onnx_backend_inpaints_like_torch(tmp_path, tiny_open, mode):
    export_onnx(tiny_open, tmp_path / "onnx")
    torch_model = LaFInModel(weights=tiny_open)
    onnx_model = LaFInModel(weights=tmp_path / "onnx", backend="onnx")
    assert onnx_model.backend == "onnx" and onnx_model.image_size == 64
    if mode == "crop":
        image, mask, kwargs = face_like(80, 100), box_mask(80, 100), {}
    else:  # photo mode without face detection: the landmarks place the face
        image, mask = face_like(300, 300, seed=3), box_mask(300, 300, 0.45, 0.35, 0.7, 0.65)
        from lafin.alignment import canonical_landmarks

        kwargs = {"landmarks": canonical_landmarks(160) + 70, "mode": "photo"}
    want, got = torch_model(image, mask, **kwargs), onnx_model(image, mask, **kwargs)
    np.testing.assert_allclose(got.landmarks, want.landmarks, atol=1e-3)
    assert np.abs(got.image.astype(int) - want.image.astype(int)).max() <= 1
    assert np.array_equal(got.image[mask == 0], image[mask == 0])
    assert np.abs(got.image[mask == 1].astype(int) - image[mask == 1]).mean() > 1


def test_onnx_backend_exports_a_weights_file_once(tmp_path, tiny_open):
    first = LaFInModel(weights=tiny_open, backend="onnx")
    cached = list((tmp_path / "cache" / "onnx").iterdir())
    assert len(cached) == 1 and (cached[0] / GENERATOR_NAME).is_file()
    stamp = (cached[0] / GENERATOR_NAME).stat().st_mtime_ns
    second = LaFInModel(weights=tiny_open, backend="onnx")
    assert (cached[0] / GENERATOR_NAME).stat().st_mtime_ns == stamp  # reused, not re-exported
    image, mask = face_like(64, 64), box_mask(64, 64)
    assert np.array_equal(first.inpaint(image, mask), second.inpaint(image, mask))


def test_cli_export(tmp_path, tiny_open, capsys):
    out = tmp_path / "exported"
    assert main(["export", "--format", "onnx", str(out), "--weights", str(tiny_open)]) == 0
    assert "generator.onnx" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {LANDMARKS_NAME, GENERATOR_NAME, METADATA_NAME}
    model = LaFInModel(weights=out, backend="onnx")
    result = model(face_like(64, 64), box_mask(64, 64))
    assert result.image.shape == (64, 64, 3)


def test_cli_export_bad_weights_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    assert main(["export", "--format", "onnx", str(tmp_path / "o"), "--weights", str(bad)]) == 2
    assert "lafin: error:" in capsys.readouterr().err


def test_bad_folder_and_backend_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OnnxError, match="not a lafin ONNX folder"):
        LaFInModel(weights=tmp_path / "empty", backend="onnx")
    with pytest.raises(ValueError, match="backend must be one of"):
        LaFInModel(weights=tmp_path / "empty", backend="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):
        LaFInModel(weights=tmp_path / "empty", backend="onnx", device="meta")


@pytest.mark.skipif(not default_weights_path().is_file(), reason="no shipped weights")
def test_every_network_of_the_shipped_file_exports_with_parity(tmp_path):
    """The shipped file at its real sizes: landmark predictor, generator and refiner each give
    PyTorch's numbers through ONNX Runtime (the random-weight tests above cover small configs)."""
    from lafin.onnx_backend import REFINER_NAME, load_onnx_refiner

    written = export_onnx(default_weights_path(), tmp_path / "onnx")
    assert [p.name for p in written if p.suffix == ".onnx"] == [LANDMARKS_NAME, GENERATOR_NAME, REFINER_NAME]
    model = LaFInModel()
    config, generator, predictor = load_onnx_folder(tmp_path / "onnx")
    assert config == model.config
    refiner = load_onnx_refiner(tmp_path / "onnx")
    s = config.image_size
    masked, lmap, mask = _inputs(s, 1, seed=3)
    lm_size = config.landmarks.input_size or s
    lm_input = torch.nn.functional.interpolate(masked, size=(lm_size, lm_size), mode="bilinear")
    with torch.inference_mode():
        want_lm = model.landmark_predictor(lm_input)
        want_img = model.generator(masked, lmap, mask)
    np.testing.assert_allclose(predictor(lm_input).numpy(), want_lm.numpy(), atol=1e-3)
    np.testing.assert_allclose(generator(masked, lmap, mask).numpy(), want_img.numpy(), atol=1e-3)
    # the refiner works at its output size, on the generator's face upsampled
    r = config.refiner.output_size
    coarse, hole, heat = (torch.nn.functional.interpolate(t, size=(r, r)) for t in (want_img, mask, lmap))
    noise = torch.randn(1, 1, r, r, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        want_fine = model.refiner(coarse, hole, heat, noise)
    got_fine = refiner(coarse, hole, heat, noise)
    np.testing.assert_allclose(got_fine.numpy(), want_fine.numpy(), atol=1e-3)
    assert got_fine.shape == (1, 3, r, r) and (want_fine - coarse).abs().max() > 1e-2


def test_a_bilinear_refiner_exports_with_parity(tmp_path):
    """``refiner.upsample: bilinear`` goes through ONNX (Resize, linear) with PyTorch's numbers."""
    from lafin.networks.refiner import Refiner
    from lafin.onnx_backend import load_onnx_refiner

    config = ModelConfig.from_dict(
        {**get_preset("tiny").to_dict(), "refiner": {"output_size": 64, "upsample": "bilinear"}}
    )
    torch.manual_seed(0)
    refiner = Refiner(config.refiner)
    torch.nn.init.normal_(refiner.to_rgb.weight, std=0.1)
    refiner.eval()
    path = tmp_path / "w.safetensors"
    save_weights(
        path,
        config,
        generator=build_generator(config),
        landmark_predictor=build_landmark_predictor(config).eval(),
        refiner=refiner,
    )
    export_onnx(path, tmp_path / "onnx")
    onnx_refiner = load_onnx_refiner(tmp_path / "onnx")
    g = torch.Generator().manual_seed(1)
    coarse, heat = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 1, 64, 64, generator=g)
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 16:48, 12:40] = 1
    noise = torch.randn(1, 1, 64, 64, generator=g)
    with torch.inference_mode():
        want = refiner(coarse, hole, heat, noise)
    got = onnx_refiner(coarse, hole, heat, noise)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-3)
    assert (want - coarse).abs().max() > 1e-2
