"""Training: each stage learns, exact resume (also after kill -9), DDP, configs, loss paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import face_like, save_tiny_inception, write_face_cache
from lafin import losses
from lafin.alignment import canonical_landmarks
from lafin.data.batches import sample_batch
from lafin.landmarks import edit_region, landmark_map
from lafin.training.config import TrainConfig
from lafin.training.train import Trainer, train


@pytest.fixture(scope="module")
def face_cache(tmp_path_factory) -> Path:
    """24 synthetic 64-px faces with jittered canonical landmarks."""
    return write_face_cache(tmp_path_factory.mktemp("cache") / "faces", 24, jitter=0.7)


def _config(face_cache: Path, stage: str, **overrides) -> TrainConfig:
    data = {
        "train": [str(face_cache)],
        "val": str(face_cache),
        "mask_mix": {"irregular": 0.5, "block": 0.5},
        "geometry": stage == "landmarks",
    }
    raw = {
        "stage": stage,
        "model": "tiny",
        "data": data,
        "batch_size": 4,
        "lr": 2e-3,
        "max_steps": 4,
        "log_every": 2,
        "sample_every": 0,
        "checkpoint_every": 2,
        "val_every": 0,
        "val_batches": 1,
        "warmup_adversarial_steps": 0,
        "threads": 1,
        "betas": [0.5, 0.9],
    }
    raw.update(overrides)
    return TrainConfig.from_dict(raw)


def _fixed_batch(trainer: Trainer):
    rng = np.random.default_rng(99)
    return sample_batch(
        trainer.data.caches[0], 8, rng, trainer.mask_fn, size=trainer.size, flip=False, indices=np.arange(8)
    )


def _inpaint_loss(trainer: Trainer, batch) -> float:
    gen = trainer.nets["generator"]
    with torch.no_grad():
        out = gen(batch.masked, landmark_map(batch.landmarks, trainer.size), batch.masks)
    return losses.masked_l1(out, batch.images, batch.masks).item()


def _landmark_loss(trainer: Trainer, batch) -> float:
    net = trainer.nets["landmarks"].eval()
    with torch.no_grad():
        pred = net(batch.masked).view(-1, 68, 2) * trainer.size
    return (pred - batch.landmarks).norm(dim=-1).mean().item()


def test_inpaint_stage_lowers_the_loss(face_cache, tmp_path):
    trainer = Trainer(_config(face_cache, "inpaint", max_steps=60, checkpoint_every=1000), tmp_path)
    batch = _fixed_batch(trainer)
    before = _inpaint_loss(trainer, batch)
    trainer.run()
    assert _inpaint_loss(trainer, batch) < 0.8 * before


def test_landmark_stage_lowers_the_loss(face_cache, tmp_path):
    trainer = Trainer(
        _config(face_cache, "landmarks", max_steps=40, checkpoint_every=1000, batch_size=8), tmp_path
    )
    batch = _fixed_batch(trainer)
    before = _landmark_loss(trainer, batch)
    trainer.run()
    assert _landmark_loss(trainer, batch) < 0.7 * before


def test_joint_stage_uses_the_predictor_and_learns(face_cache, tmp_path):
    first = train(_config(face_cache, "inpaint", max_steps=2), tmp_path / "inpaint")
    second = train(_config(face_cache, "landmarks", max_steps=2), tmp_path / "landmarks")
    assert first.step == 2 and second.step == 2
    init = [
        str(tmp_path / "inpaint" / "weights.safetensors"),
        str(tmp_path / "landmarks" / "weights.safetensors"),
    ]
    trainer = Trainer(
        _config(face_cache, "joint", max_steps=30, checkpoint_every=1000, init_from=init), tmp_path / "joint"
    )
    frozen = {k: v.clone() for k, v in trainer.nets["landmarks"].state_dict().items()}
    batch = _fixed_batch(trainer)
    before = _inpaint_loss(trainer, batch)
    trainer.run()
    assert _inpaint_loss(trainer, batch) < before
    for k, v in trainer.nets["landmarks"].state_dict().items():
        assert torch.equal(v, frozen[k]), f"the frozen predictor changed: {k}"


def _weights(trainer_or_state) -> dict[str, torch.Tensor]:
    if isinstance(trainer_or_state, Trainer):
        return {
            f"{n}.{k}": v for n, net in trainer_or_state.nets.items() for k, v in net.state_dict().items()
        }
    return {f"{n}.{k}": v for n, sd in trainer_or_state["nets"].items() for k, v in sd.items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"differs after resume: {k}"


@pytest.mark.parametrize("stage", ["inpaint", "landmarks"])
def test_resume_is_exact(face_cache, tmp_path, stage):
    straight = train(_config(face_cache, stage, max_steps=6, checkpoint_every=3), tmp_path / "a")
    train(_config(face_cache, stage, max_steps=3, checkpoint_every=3), tmp_path / "b")
    resumed = train(_config(face_cache, stage, max_steps=6, checkpoint_every=3), tmp_path / "b", resume=True)
    assert resumed.step == 6
    _assert_same(_weights(straight), _weights(resumed))
    if stage == "inpaint":
        for a, b in zip(straight.ema.parameters(), resumed.ema.parameters()):
            assert torch.equal(a, b)


def test_resume_after_kill_9(face_cache, tmp_path):
    """A run killed with SIGKILL mid-training resumes from its last atomic checkpoint and ends
    with exactly the weights of an uninterrupted run."""
    config = _config(face_cache, "inpaint", max_steps=400, checkpoint_every=2)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config.to_dict()))
    cmd = [
        sys.executable,
        "-m",
        "lafin.cli",
        "train",
        "--config",
        str(tmp_path / "c.yaml"),
        "--out",
        str(tmp_path / "killed"),
        "--resume",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (
        ckpt.is_file() and torch.load(ckpt, weights_only=True)["step"] >= 4
    ):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 4 <= step < 400
    target = step + 4
    resumed = train(
        _config(face_cache, "inpaint", max_steps=target, checkpoint_every=2), tmp_path / "killed", resume=True
    )
    straight = train(
        _config(face_cache, "inpaint", max_steps=target, checkpoint_every=2), tmp_path / "straight"
    )
    _assert_same(_weights(straight), _weights(resumed))


@pytest.mark.parametrize(
    "loss",
    [{}, {"component_adversarial": 0.5, "component_style": 10.0}],
    ids=["plain", "components"],
)
def test_ddp_two_processes_hold_identical_weights(face_cache, tmp_path, loss):
    """Two torchrun processes end with the same weights (the eye and mouth discriminators too:
    one pass per network and update, as DDP needs)."""
    script = tmp_path / "ddp_run.py"
    config = _config(face_cache, "inpaint", max_steps=3, checkpoint_every=3, loss=loss)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config.to_dict()))
    script.write_text(
        textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from lafin.training.config import TrainConfig
        from lafin.training.train import train
        t = train(TrainConfig.from_yaml({str(tmp_path / "c.yaml")!r}), {str(tmp_path / "run")!r})
        state = {{k: v for n, net in t.nets.items() for k, v in net.module.state_dict().items()
                 if hasattr(net, 'module')}}
        torch.save(state, {str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.pt")
        dist.destroy_process_group()
    """)
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert len(a) > 0
    _assert_same(a, b)
    if loss:
        assert any(k.startswith("judges.") for k in a)  # the component discriminators, wrapped too
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert len(ckpt["numpy_rng"]) == 2  # both ranks' random state, for exact resume


def test_unknown_config_key_is_an_error(tmp_path):
    (tmp_path / "c.yaml").write_text("stage: inpaint\nbatchsize: 4\n")
    with pytest.raises(ValueError, match="batchsize"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("loss:\n  l1_hol: 1\n")
    with pytest.raises(ValueError, match="l1_hol"):
        TrainConfig.from_yaml(tmp_path / "d.yaml")


def test_feature_matching_without_vgg_and_perceptual_with_vgg(face_cache, tmp_path):
    trainer = Trainer(_config(face_cache, "inpaint"), tmp_path / "fm")
    logs = trainer.inpaint_step(trainer.next_batch())
    assert "loss/feature_matching" in logs and "loss/perceptual" not in logs

    # a VGG-19 file in torchvision's layout, random weights (no download possible here)
    vgg = losses.VGG19Features.__new__(losses.VGG19Features)
    torch.nn.Module.__init__(vgg)
    layers, c = [], 3
    for v in losses.VGG19Features._CFG:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2))
        else:
            layers += [torch.nn.Conv2d(c, v, 3, padding=1), torch.nn.ReLU()]
            c = v
    state = {f"features.{k}": t for k, t in torch.nn.Sequential(*layers).state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "vgg19.pth")
    config = _config(face_cache, "inpaint", loss={"vgg_weights": str(tmp_path / "vgg19.pth")})
    trainer = Trainer(config, tmp_path / "vgg")
    logs = trainer.inpaint_step(trainer.next_batch())
    assert logs["loss/perceptual"] > 0 and logs["loss/style"] > 0
    assert "loss/feature_matching" not in logs


def test_discriminator_head_start(face_cache, tmp_path):
    """Before ``warmup_adversarial_steps`` the generator gets no adversarial terms; the
    discriminator learns only in the ``discriminator_head_start`` steps before it."""
    trainer = Trainer(
        _config(face_cache, "inpaint", warmup_adversarial_steps=3, discriminator_head_start=1), tmp_path
    )
    disc = trainer.nets["discriminator"]
    seen = []
    for step in range(4):
        trainer.step = step
        before = [p.detach().clone() for p in disc.parameters()]
        logs = trainer.inpaint_step(trainer.next_batch())
        moved = any(not torch.equal(a, b) for a, b in zip(before, disc.parameters()))
        seen.append(
            (moved, "loss/discriminator" in logs, "loss/adversarial" in logs, "loss/feature_matching" in logs)
        )
    assert seen == [
        (False, False, False, False),
        (False, False, False, False),
        (True, True, False, False),
        (True, True, True, True),
    ]
    with pytest.raises(ValueError, match="discriminator_head_start"):
        _config(face_cache, "inpaint", discriminator_head_start=-1)


def test_wrong_vgg_file_is_rejected(tmp_path):
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="VGG-19"):
        losses.VGG19Features(tmp_path / "bad.pth")


def test_sample_grid_and_validation(face_cache, tmp_path):
    trainer = Trainer(_config(face_cache, "inpaint", sample_every=2, val_every=2, max_steps=2), tmp_path)
    trainer.run()
    assert list((tmp_path / "samples").glob("*.png"))
    metrics = trainer.validate()
    assert 5 < metrics["val/psnr"] < 60
    # the realism benchmarks' hole-detail ratio (median), beside PSNR
    assert 0 < metrics["val/detail_ratio"] < 50


def test_validation_kid_is_near_zero_for_the_truth_and_grows_with_a_shift(face_cache, tmp_path):
    inception = save_tiny_inception(tmp_path / "inception.pt")
    config = _config(face_cache, "inpaint", val_kid_faces=12, val_inception=str(inception))
    trainer = Trainer(config, tmp_path / "run")
    validator = trainer.validator
    value = trainer.validate()["val/kid_x1e3"]
    assert np.isfinite(value) and value == validator.kid(trainer.val) * 1e3  # seeded: repeatable
    # composites equal to the truth: the same set, KID about 0 (unbiased, so it may dip below)
    validator.composite = lambda batch: batch.images
    same = validator.kid(trainer.val)
    validator.composite = lambda batch: batch.images * 0.5 + 0.5  # paler faces
    shifted = validator.kid(trainer.val)
    assert abs(same) < 0.05 * shifted and shifted > 0
    with pytest.raises(ValueError, match="Inception file"):
        _config(face_cache, "inpaint", val_kid_faces=12)
    with pytest.raises(ValueError, match="landmark stage"):
        _config(face_cache, "landmarks", val_kid_faces=12, val_inception=str(inception))


def test_cosine_schedule_sets_every_optimizer(face_cache, tmp_path):
    config = _config(
        face_cache, "inpaint", lr_schedule="cosine", lr_min_ratio=0.1, max_steps=10, d_lr_ratio=0.5
    )
    trainer = Trainer(config, tmp_path)
    rates = []
    for step in (0, 5, 10):
        trainer.step = step
        trainer.set_learning_rates()
        rates.append(
            (
                trainer.optims["generator"].param_groups[0]["lr"],
                trainer.optims["discriminator"].param_groups[0]["lr"],
            )
        )
    assert rates[0] == pytest.approx((2e-3, 1e-3))
    assert rates[1][0] == pytest.approx(2e-3 * 0.55)  # halfway: the mean of 1 and 0.1
    assert rates[2] == pytest.approx((2e-4, 1e-4))
    # the schedule depends on the step only, so a resumed run continues on it
    assert config.lr_schedule == "cosine" and trainer.learning_rate_factor() == pytest.approx(0.1)


def test_constant_schedule_applies_a_changed_lr_on_resume(face_cache, tmp_path):
    train(_config(face_cache, "landmarks", max_steps=2), tmp_path)
    trainer = Trainer(_config(face_cache, "landmarks", max_steps=4, lr=5e-4), tmp_path, resume=True)
    trainer.run()  # the optimizer state saved lr=2e-3; the new config's lr must win
    assert trainer.optims["landmarks"].param_groups[0]["lr"] == pytest.approx(5e-4)


def test_train_weights_set_how_often_each_cache_is_drawn(face_cache, tmp_path):
    config = _config(
        face_cache,
        "landmarks",
        data={
            "train": [str(face_cache), str(face_cache)],
            "train_weights": [3, 1],
            "geometry": True,
            "mask_mix": {"none": 1.0},
        },
    )
    trainer = Trainer(config, tmp_path)
    rng = np.random.default_rng(0)
    first = sum(trainer.data.pick(rng) is trainer.data.caches[0] for _ in range(4000))
    assert 0.72 < first / 4000 < 0.78
    with pytest.raises(ValueError, match="train_weights"):
        _config(face_cache, "landmarks", data={"train": [str(face_cache)], "train_weights": [1, 2]})
    with pytest.raises(ValueError, match="lr_schedule"):
        _config(face_cache, "landmarks", lr_schedule="linear")


def test_landmark_stage_keeps_and_exports_an_average(face_cache, tmp_path):
    from lafin.checkpoint import load_weights

    trainer = train(_config(face_cache, "landmarks", max_steps=4, ema_decay=0.5), tmp_path)
    live = trainer.nets["landmarks"].state_dict()
    average = trainer.ema.state_dict()
    assert not torch.equal(live["fc_landmark.weight"], average["fc_landmark.weight"])
    saved = load_weights(tmp_path / "weights.safetensors")
    assert saved.generator_state is None
    for name, value in average.items():
        assert torch.equal(saved.landmarks_state[name], value), name
    # batch-norm running statistics are averaged too, not copied from the live network
    bn = next(k for k in average if k.endswith("running_mean"))
    assert not torch.equal(live[bn], average[bn])


def test_ssim_loss_is_the_benchmarks_ssim_and_differentiable():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    truth = face_like(48, 48, seed=5)
    noisy = np.clip(truth.astype(int) + rng.integers(-30, 30, truth.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(
        noisy,
        truth,
        channel_axis=2,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    as_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255
    out = as_t(noisy).requires_grad_(True)
    value = losses.ssim(out, as_t(truth))
    assert value.shape == (1,) and abs(value.item() - expected) < 1e-6
    (1 - value).sum().backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert losses.ssim(as_t(truth), as_t(truth)).item() == pytest.approx(1.0)


def test_ssim_term_trains_and_is_validated(face_cache, tmp_path):
    trainer = Trainer(_config(face_cache, "inpaint", loss={"ssim": 5.0}, max_steps=2), tmp_path)
    logs = trainer.inpaint_step(trainer.next_batch())
    assert 0 < logs["loss/ssim"] <= 10.0
    assert -1 < trainer.validate()["val/ssim"] <= 1
    # off by default: configs without the key train as before
    plain = Trainer(_config(face_cache, "inpaint", max_steps=2), tmp_path / "plain")
    assert "loss/ssim" not in plain.inpaint_step(plain.next_batch())


def test_weights_trained_on_from_others_record_the_steps_before(face_cache, tmp_path):
    from lafin.checkpoint import load_weights
    from lafin.weights_merge import merge_weights

    first = train(_config(face_cache, "inpaint", max_steps=3, checkpoint_every=3), tmp_path / "a")
    assert "steps_before" not in load_weights(tmp_path / "a" / "weights.safetensors").metadata
    second = train(
        _config(
            face_cache,
            "inpaint",
            max_steps=2,
            checkpoint_every=2,
            init_from=str(tmp_path / "a" / "weights.safetensors"),
        ),
        tmp_path / "b",
    )
    assert second.steps_before == {"generator": 3} and first.steps_before == {}
    meta = load_weights(tmp_path / "b" / "weights.safetensors").metadata
    assert (meta["step"], meta["steps_before"]) == ("2", "3")
    # a third run counts both earlier ones, and merging keeps it per network
    train(
        _config(
            face_cache,
            "inpaint",
            max_steps=1,
            checkpoint_every=1,
            init_from=str(tmp_path / "b" / "weights.safetensors"),
        ),
        tmp_path / "c",
    )
    lm = train(_config(face_cache, "landmarks", max_steps=1, checkpoint_every=1), tmp_path / "lm")
    merge_weights(
        [tmp_path / "lm" / "weights.safetensors", tmp_path / "c" / "weights.safetensors"],
        tmp_path / "merged.safetensors",
    )
    merged = load_weights(tmp_path / "merged.safetensors").metadata
    assert merged["generator.steps_before"] == "5" and merged["generator.step"] == "1"
    assert "landmarks.steps_before" not in merged and lm.steps_before == {}


def test_channels_last_trains_the_same_networks(face_cache, tmp_path):
    """channels_last only changes the memory layout: the first step's loss is the plain layout's,
    and the exported weights load into a plain network that computes the same output."""
    from lafin.checkpoint import build_from_weights, load_any

    plain = Trainer(_config(face_cache, "inpaint"), tmp_path / "plain")
    nhwc = Trainer(_config(face_cache, "inpaint", channels_last=True), tmp_path / "nhwc")
    conv = nhwc.nets["generator"].stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = _fixed_batch(plain)
    assert _inpaint_loss(plain, batch) == pytest.approx(
        _inpaint_loss(nhwc, batch.to("cpu", torch.channels_last)), rel=1e-5
    )
    nhwc.run()
    nhwc.export_weights(tmp_path / "w.safetensors")
    generator, _ = build_from_weights(load_any(tmp_path / "w.safetensors"))
    lmap = landmark_map(batch.landmarks, nhwc.size)
    with torch.no_grad():
        expected = nhwc.ema(batch.masked, lmap, batch.masks)
        got = generator(batch.masked, lmap, batch.masks)
    assert torch.allclose(expected, got, atol=1e-5)


def test_box_fraction_sets_the_landmark_framing(face_cache, tmp_path):
    """data.box_fraction reaches the geometry augmentation: with a fixed fraction every face is
    scaled so that its landmark box spans that share of the side (distances scale with it)."""
    trainer = Trainer(
        _config(
            face_cache,
            "landmarks",
            data={
                "train": [str(face_cache)],
                "geometry": True,
                "box_fraction": [0.6, 0.6],
                "mask_mix": {"irregular": 1.0},
            },
        ),
        tmp_path / "run",
    )
    cache = trainer.data.caches[0]
    rng = np.random.default_rng(3)
    batch = sample_batch(
        cache,
        6,
        rng,
        trainer.mask_fn,
        size=trainer.size,
        flip=False,
        geometry=trainer.geometry,
        indices=np.arange(6),
    )
    for i in range(6):
        src = cache.landmarks[i]
        scale = 0.6 * trainer.size / float((src.max(0) - src.min(0)).max())
        before = np.linalg.norm(src[36] - src[45])
        after = np.linalg.norm(batch.landmarks[i, 36].numpy() - batch.landmarks[i, 45].numpy())
        assert after == pytest.approx(scale * before, rel=1e-4)


def test_landmark_error_by_eye_distance_is_the_benchmarks_nme():
    from lafin.landmarks import nme

    rng = np.random.default_rng(0)
    truth = torch.from_numpy(
        np.stack([canonical_landmarks(64) * s + o for s, o in ((1.0, 0.0), (0.6, 10.0), (0.8, 4.0))]).astype(
            np.float32
        )
    )
    pred = truth + torch.from_numpy(rng.normal(0, 1.5, truth.shape).astype(np.float32))
    expected = nme(pred.numpy(), truth.numpy()).mean()
    assert losses.landmark_error(pred, truth, 64, "eyes").item() == pytest.approx(expected, rel=1e-5)
    side = (pred - truth).norm(dim=-1).mean().item() / 64
    assert losses.landmark_error(pred, truth, 64, "side").item() == pytest.approx(side, rel=1e-5)
    with pytest.raises(ValueError, match="landmark_norm"):
        TrainConfig.from_dict({"loss": {"landmark_norm": "box"}})


def test_wing_landmark_loss_is_continuous_and_steeper_on_small_errors():
    truth = torch.from_numpy(canonical_landmarks(64)[None].astype(np.float32))
    eyes = float((truth[0, 36] - truth[0, 45]).norm())
    w, epsilon = 0.2, 0.04

    def loss_at(d: float) -> torch.Tensor:  # every point off by d eye distances along x
        pred = truth.clone()
        pred[..., 0] += d * eyes
        return losses.landmark_error(pred, truth, 64, "eyes", wing=(w, epsilon))

    assert loss_at(0.01).item() == pytest.approx(w * np.log1p(0.01 / epsilon), rel=1e-4)
    # continuous where the log part meets the linear part, and linear (slope 1) beyond it
    assert loss_at(w - 1e-4).item() == pytest.approx(loss_at(w + 1e-4).item(), abs=1e-3)
    assert (loss_at(0.5) - loss_at(0.4)).item() == pytest.approx(0.1, rel=1e-3)
    # small errors weigh more than under the plain distance (gradient w / epsilon = 5 at 0)
    assert (loss_at(0.02) - loss_at(0.01)).item() > 3 * 0.01
    assert losses.landmark_error(truth + 1.0, truth, 64, "eyes").item() == pytest.approx(
        np.sqrt(2) / eyes, rel=1e-4
    )
    assert TrainConfig.from_dict({"loss": {"landmark_wing": [0.2, 0.04]}}).loss.landmark_wing == (0.2, 0.04)
    for bad in ([0.2], [0.2, 0.0], 0.2):
        with pytest.raises(ValueError, match="landmark_wing"):
            TrainConfig.from_dict({"loss": {"landmark_wing": bad}})


def test_landmark_stage_trains_with_eye_normalised_error(face_cache, tmp_path):
    trainer = train(
        _config(face_cache, "landmarks", max_steps=2, loss={"landmark_norm": "eyes"}), tmp_path / "run"
    )
    assert trainer.step == 2 and (tmp_path / "run" / "weights.safetensors").is_file()


# the inpainting model's recipes; configs/damage-detector*.yaml are the damage detector's own
# (lafin.training.damage), checked in tests/test_damage.py
CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
    if not p.name.startswith("damage-detector")
)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_training_configs_parse_strictly(path):
    """Every config in configs/ loads (unknown keys are an error) and names a buildable model,
    so a typo in a run's config fails here rather than hours into a session."""
    from lafin.training.train import resolve_model_config

    config = TrainConfig.from_yaml(path)
    assert config.stage in ("landmarks", "inpaint", "joint", "refine")
    assert resolve_model_config(config.model).image_size in (128, 256)
    assert config.max_steps > 0 and config.batch_size > 0


ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_each_recipe_says_how_to_launch_it_and_its_start_is_made_by_a_documented_command(path):
    """A recipe's header holds its launch command, and weights it starts from (``init_from``)
    are written by a command of a recipe header or of TRAINING.md (a run's ``--out`` folder,
    ``-o`` of an export, a copy, or a widening): a reproduction needs no unexplained file."""
    import re

    text = path.read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert f"--config configs/{path.name}" in header
    init = yaml.safe_load(text).get("init_from")
    documented = "\n".join(
        [(ROOT / "docs" / "TRAINING.md").read_text()]
        + [
            "\n".join(line.lstrip("# ") for line in p.read_text().splitlines() if line.startswith("#"))
            for p in RECIPES
        ]
    )
    documented = documented.replace("\\\n", " ")  # commands continued over lines
    for start in [init] if isinstance(init, str) else init or []:
        made = re.search(rf"--out {re.escape(str(Path(start).parent))}(\s|$)", documented) or re.search(
            rf"(cp \S+|-o|widen \S+)\s+{re.escape(start)}(\s|$)", documented
        )
        assert made, f"{path.name}: nothing documented writes its init_from {start}"


def test_cli_init_from_overrides_the_config(face_cache, tmp_path):
    """``lafin train --init-from`` starts the config's recipe from other weights, so a further
    training cycle needs no copy of the config."""
    from lafin.checkpoint import load_weights
    from lafin.cli import main

    train(_config(face_cache, "inpaint", max_steps=2, checkpoint_every=2), tmp_path / "a")
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump(_config(face_cache, "inpaint", max_steps=1, checkpoint_every=1).to_dict())
    )
    assert (
        main(
            [
                "train",
                "--config",
                str(tmp_path / "c.yaml"),
                "--out",
                str(tmp_path / "b"),
                "--init-from",
                str(tmp_path / "a" / "weights.safetensors"),
            ]
        )
        == 0
    )
    meta = load_weights(tmp_path / "b" / "weights.safetensors").metadata
    assert (meta["step"], meta["steps_before"]) == ("1", "2")


def _tiny_with_predictor_input(size: int) -> dict:
    from lafin.config import get_preset

    model = get_preset("tiny").to_dict()
    model["landmarks"]["input_size"] = size
    return model


def test_landmark_stage_trains_at_the_predictors_input_size(face_cache, tmp_path):
    """landmarks.input_size: the landmark stage draws its faces (64-px cache) at the predictor's
    own size, learns there, and the exported weights carry that size."""
    from lafin.checkpoint import load_weights

    trainer = Trainer(
        _config(
            face_cache,
            "landmarks",
            model=_tiny_with_predictor_input(96),
            max_steps=40,
            checkpoint_every=1000,
            batch_size=8,
        ),
        tmp_path,
    )
    assert trainer.size == 96
    batch = _fixed_batch(trainer)
    assert batch.images.shape[-2:] == (96, 96) and batch.masks.shape[-2:] == (96, 96)
    before = _landmark_loss(trainer, batch)
    trainer.run()
    assert _landmark_loss(trainer, batch) < 0.7 * before
    saved = load_weights(tmp_path / "weights.safetensors")
    assert saved.config.landmark_size == 96 and saved.config.image_size == 64


def test_joint_stage_gives_a_larger_predictor_its_own_size(face_cache, tmp_path):
    """The joint stage's frozen predictor sees the generator's crop resampled to its input size
    and its points come back in the generator's pixels (a predictor answering one fixed
    fraction f gives (f * 96 + 0.5) * 64 / 96 - 0.5 at every point)."""
    model = _tiny_with_predictor_input(96)
    trainer = Trainer(_config(face_cache, "joint", model=model, max_steps=2), tmp_path)
    assert trainer.size == 64
    fc = trainer.nets["landmarks"].fc_landmark
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(0.25)
    seen = []
    hook = trainer.nets["landmarks"].register_forward_pre_hook(
        lambda _m, args: seen.append(tuple(args[0].shape[-2:]))
    )
    points = trainer.predict_points(_fixed_batch(trainer).masked)
    hook.remove()
    assert seen == [(96, 96)]
    assert torch.allclose(points, torch.full_like(points, (0.25 * 96 + 0.5) * 64 / 96 - 0.5))
    trainer.run()
    assert trainer.step == 2


def test_realism_terms_train_the_generator_to_follow_edited_landmarks(face_cache, tmp_path):
    """The generator stage with the patch discriminator, landmark consistency and edited
    expressions: runs, keeps the predictor frozen, feeds edited landmarks to the generator and
    the discriminator's fake side, and validates landmark fidelity."""
    first = train(_config(face_cache, "inpaint", max_steps=2), tmp_path / "inpaint")
    second = train(_config(face_cache, "landmarks", max_steps=2), tmp_path / "landmarks")
    assert first.step == 2 and second.step == 2
    init = [
        str(tmp_path / "inpaint" / "weights.safetensors"),
        str(tmp_path / "landmarks" / "weights.safetensors"),
    ]
    config = _config(
        face_cache,
        "inpaint",
        max_steps=3,
        init_from=init,
        checkpoint_every=1000,
        loss={
            "l1_hole": 1.0,
            "adversarial": 0.5,
            "discriminator": "patch",
            "r1": 0.01,
            "r1_every": 2,
            "landmark_consistency": 5.0,
            "structure_l1": 1.0,
        },
        data={
            "train": [str(face_cache)],
            "val": str(face_cache),
            "mask_mix": {"irregular": 0.5, "block": 0.5},
            "landmark_edit": 1.0,
        },
    )
    trainer = Trainer(config, tmp_path / "realism")
    frozen = {k: v.clone() for k, v in trainer.nets["landmarks"].state_dict().items()}
    batch = trainer.next_batch()
    assert batch.edited is not None and batch.edited.sum() > 0
    edited = batch.edited > 0.5
    moved = (batch.guide - batch.landmarks).norm(dim=-1).amax(dim=1)
    assert (moved[edited] > 0.5).all() and (moved[~edited] == 0).all()
    # every moved point, old and new position, lies in the hole
    for i in edited.nonzero().flatten().tolist():
        pts = torch.cat([batch.landmarks[i], batch.guide[i]])[
            torch.cat([(batch.guide[i] - batch.landmarks[i]).norm(dim=-1) > 0.5] * 2)
        ]
        x = pts[:, 0].long().clamp(0, trainer.size - 1)
        y = pts[:, 1].long().clamp(0, trainer.size - 1)
        assert (batch.masks[i, 0, y, x] == 1).all()
    # the hole the landmark-fidelity benchmarks give an edit (lafin.landmarks.edit_region)
    for i in edited.nonzero().flatten().tolist():
        region = edit_region(batch.landmarks[i].numpy(), batch.guide[i].numpy(), (trainer.size,) * 2)
        assert region.any() and (batch.masks[i, 0][torch.from_numpy(region)] == 1).all()
    logs = trainer.inpaint_step(batch)
    assert {"loss/adversarial", "loss/landmark_consistency", "loss/discriminator"} <= logs.keys()
    assert all(np.isfinite(v) for v in logs.values())
    trainer.run()
    for k, v in trainer.nets["landmarks"].state_dict().items():
        assert torch.equal(v, frozen[k]), f"the frozen predictor changed: {k}"
    metrics = trainer.validate()
    assert 0 < metrics["val/landmark_fidelity"] < 10 and np.isfinite(metrics["val/psnr"])
    # the exported weights carry the frozen predictor with its own history
    from lafin.checkpoint import load_weights

    trainer.save_checkpoint()
    meta = load_weights(tmp_path / "realism" / "weights.safetensors").metadata
    assert (meta["landmarks.stage"], meta["landmarks.step"]) == ("landmarks", "2")
    assert (meta["generator.stage"], meta["generator.step"], meta["generator.steps_before"]) == (
        "inpaint",
        "3",
        "2",
    )


def test_landmark_consistency_needs_a_predictor_and_edits_need_the_inpaint_stage(face_cache, tmp_path):
    with pytest.raises(ValueError, match="landmark predictor"):
        Trainer(_config(face_cache, "inpaint", loss={"landmark_consistency": 1.0}), tmp_path / "a")
    with pytest.raises(ValueError, match="landmark_edit"):
        _config(face_cache, "joint", data={"train": [str(face_cache)], "landmark_edit": 0.5})
    with pytest.raises(ValueError, match="discriminator"):
        _config(face_cache, "inpaint", loss={"discriminator": "stylegan"})


def test_model_and_training_configs_share_one_parser(tmp_path):
    """Model configs (checkpoints) and training configs (YAML) go through the same parser:
    nested sections, tuples from lists, and an unknown key is an error naming it in both."""
    from lafin.config import ModelConfig, from_mapping, get_preset
    from lafin.training.config import DataConfig, TrainConfig

    wide = get_preset("compact-wide")
    assert ModelConfig.from_dict(wide.to_dict()) == wide
    with pytest.raises(ValueError, match=r"model\.refiner: unknown key\(s\) \['size'\]"):
        ModelConfig.from_dict({"refiner": {"size": 256}})
    path = tmp_path / "c.yaml"
    path.write_text("stage: inpaint\ndata:\n  hole_ratio: [0.2, 0.3]\n  holes: 3\n")
    with pytest.raises(ValueError, match=r"c\.yaml\.data: unknown key\(s\) \['holes'\]"):
        TrainConfig.from_yaml(path)
    data = from_mapping(DataConfig, {"hole_ratio": [0.2, 0.3], "box_fraction": [0.5, 0.9]}, "d")
    assert data.hole_ratio == (0.2, 0.3) and data.box_fraction == (0.5, 0.9)
    with pytest.raises(ValueError, match="expected a mapping"):
        from_mapping(DataConfig, [1, 2], "d")


def test_training_modules_state_their_job_and_keep_classes_small():
    """Each module of lafin.training opens with a docstring saying its one job, and no class
    grows past 300 lines (the trainer is a loop over parts, each in its own module)."""
    import ast

    for path in sorted((ROOT / "src" / "lafin" / "training").glob("*.py")):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name}: no opening docstring"
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= 300, f"{path.name}: class {node.name} has {lines} lines"


def test_patch_feature_matching_compares_each_face_with_its_truth(face_cache, tmp_path):
    """LaMa's feature matching on the patch discriminator: 0 for composites equal to their
    truths, otherwise the weighted mean over layers of the L1 distance of D's features; faces
    without a truth (edited expressions) are left out; logged by the generator stage."""
    from lafin.networks.refiner import landmark_heatmap

    loss = {"discriminator": "patch", "adversarial": 0.5, "patch_feature_matching": 2.0}
    trainer = Trainer(_config(face_cache, "inpaint", loss=loss), tmp_path / "fm")
    adversary, disc = trainer.stage.adversary, trainer.nets["discriminator"]
    disc.eval()  # no power-iteration step of the spectral norms between the passes below
    batch = trainer.next_batch()
    images, masks = batch.images, batch.masks
    heat = landmark_heatmap(batch.landmarks, trainer.size)
    same = adversary.patch_generator_terms(images, heat, masks, images, heat)
    assert same["feature_matching"].item() == 0
    shifted = (images + 0.2 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(
        0, 1
    )
    with torch.no_grad():
        _, fake_feats = disc(shifted, masks, heat)
        _, real_feats = disc(images, masks, heat)

    def expected(rows):
        return 2.0 * np.mean(
            [(f[rows] - r[rows]).abs().mean().item() for f, r in zip(fake_feats, real_feats)]
        )

    terms = adversary.patch_generator_terms(shifted, heat, masks, images, heat)
    assert terms["feature_matching"].item() == pytest.approx(expected(slice(None)), rel=1e-4)
    assert terms["feature_matching"].item() > 0
    first = torch.tensor([0])
    one = adversary.patch_generator_terms(shifted, heat, masks, images, heat, first)
    assert one["feature_matching"].item() == pytest.approx(expected(slice(0, 1)), rel=1e-4)
    assert torch.equal(one["adversarial"], terms["adversarial"])  # the same fake logits
    nobody = adversary.patch_generator_terms(
        shifted, heat, masks, images, heat, torch.tensor([], dtype=torch.long)
    )
    assert "feature_matching" not in nobody
    disc.train()
    logs = trainer.inpaint_step(batch)
    assert logs["loss/feature_matching"] > 0 and np.isfinite(logs["loss/generator"])


def test_detail_loss_known_values_and_the_generator_term(face_cache, tmp_path):
    """``loss.detail``: |log| of the hole's mid-band Laplacian variance over the truth's,
    weighted; hole_laplacian_variance is the benchmark's arithmetic (the batch detail ratio is
    built on it); a texture at double amplitude costs log 4 either way; differentiable; the
    generator stage trains with it."""
    from lafin.evaluation import realism as R

    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    mask = torch.zeros(2, 1, 32, 32, dtype=torch.float64)
    mask[:, :, 6:26, 5:27] = 1
    variance, count = R.hole_laplacian_variance(images, mask)
    for i in range(2):  # the numpy measure: OpenCV's Laplacian, the hole eroded by 3 px
        arr = images[i].permute(1, 2, 0).numpy() * 255.0
        grey = R._grey(arr)
        inner = R.eroded_hole(mask[i, 0].numpy())
        assert count[i].item() == inner.sum() == 14 * 16
        assert variance[i].item() == pytest.approx(R.laplacian(grey)[inner].var(), rel=1e-9)
    # mid band: smoothing removes pixel noise, so less energy; the benchmark's mid band (OpenCV's
    # wider Gaussian window) reads the same within a percent
    smooth, _ = R.hole_laplacian_variance(images, mask, smooth=R.MID_BAND_SMOOTH)
    assert (smooth < variance / 4).all()
    for i in range(2):
        grey = cv2.GaussianBlur(
            R._grey(images[i].permute(1, 2, 0).numpy() * 255.0),
            (0, 0),
            R.MID_BAND_SMOOTH,
            borderType=cv2.BORDER_REFLECT_101,
        )
        want = R.laplacian(grey)[R.eroded_hole(mask[i, 0].numpy())].var()
        assert smooth[i].item() == pytest.approx(want, rel=0.01)
    trainer = Trainer(_config(face_cache, "inpaint", loss={"detail": 0.5}, max_steps=2), tmp_path / "detail")
    batch = trainer.next_batch()
    assert trainer.stage.losses.pixel_terms(batch.images, batch.images, batch)["detail"].item() == 0
    # the face at twice its contrast: the (linear) mid-band Laplacian doubles, its variance x4
    scale = torch.ones(1, requires_grad=True)
    loud = 0.5 + (batch.images - 0.5) * 2 * scale
    term = trainer.stage.losses.pixel_terms(loud, loud, batch)["detail"]
    assert term.item() == pytest.approx(0.5 * math.log(4), rel=1e-3)
    term.backward()
    assert scale.grad is not None and scale.grad.item() > 0  # louder costs more
    trainer.run()
    assert trainer.step == 2


def test_grid_loss_known_values_and_the_generator_term(face_cache, tmp_path):
    """``loss.grid``: the composite's 2-px grid contrast in the hole above its truth's
    (lafin.evaluation.realism.grid_contrast_batch, the benchmark's measure), weighted; 0 for a face as
    gridless as its truth; differentiable; the generator stage trains with it."""
    from lafin.evaluation import realism as R

    # columns in pairs (0 0 1 1 ...): along x contrast 2, along y no step at all: mean 1
    stripes = (torch.arange(16) // 2 % 2).float().expand(1, 3, 16, 16)
    everywhere = torch.ones(1, 1, 16, 16)
    assert R.grid_contrast_batch(stripes, everywhere).item() == pytest.approx(1.0, abs=1e-5)
    assert R.grid_contrast_batch(torch.full((1, 3, 16, 16), 0.3), everywhere).item() == 0
    # the benchmark's per-image measure (without its erosion) reads the same arrays the same way
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 24, 24, generator=g)
    mask = torch.zeros(2, 1, 24, 24)
    mask[:, :, 4:20, 3:17] = 1
    got = R.grid_contrast_batch(images, mask)
    for i in range(2):
        arr = images[i].permute(1, 2, 0).numpy().astype(np.float64)
        want, _ = R.grid_contrasts(arr, arr, mask[i, 0].numpy(), erode=0)
        assert got[i].item() == pytest.approx(want, rel=1e-4)
    trainer = Trainer(_config(face_cache, "inpaint", loss={"grid": 2.0}, max_steps=2), tmp_path / "grid")
    batch = trainer.next_batch()
    terms = trainer.stage.losses.pixel_terms(batch.images, batch.images, batch)
    assert terms["grid"].item() == 0
    half = torch.nn.functional.avg_pool2d(batch.images, 2)
    # half blocks, half the face: perfect 2x2 blocks score 2 whatever their size (no gradient)
    blocky = torch.nn.functional.interpolate(half, scale_factor=2.0, mode="nearest").requires_grad_()
    composite = batch.images * (1 - batch.masks) + (blocky + batch.images) / 2 * batch.masks
    term = trainer.stage.losses.pixel_terms(composite, composite, batch)["grid"]
    excess = R.grid_contrast_batch(composite, batch.masks) - R.grid_contrast_batch(batch.images, batch.masks)
    assert term.item() == pytest.approx(2.0 * excess.clamp_min(0).mean().item(), rel=1e-5)
    assert term.item() > 0.2
    term.backward()
    assert blocky.grad is not None and blocky.grad.abs().sum() > 1e-3
    trainer.run()
    assert trainer.step == 2


def test_grid_scales_are_checked():
    from lafin.training.config import LossConfig

    assert LossConfig(grid_scales=2).grid_scales == 2
    for bad in (0, 5):
        with pytest.raises(ValueError, match="grid_scales"):
            LossConfig(grid_scales=bad)
