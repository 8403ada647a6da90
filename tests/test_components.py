"""The facial-component discriminators: crops placed by the landmarks (known values on a ramp,
the mirrored right eye, a turned face), which crops count as generated, the loss terms on known
logits and features, and a generator stage that trains, resumes and exports with them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lafin.alignment import canonical_landmarks
from lafin import losses
from lafin.networks.component_discriminator import COMPONENTS, component_crops
from lafin.training.config import TrainConfig
from lafin.training.train import Trainer, train

from conftest import write_face_cache


@pytest.fixture(scope="module")
def face_cache(tmp_path_factory):
    return write_face_cache(tmp_path_factory.mktemp("cache") / "faces", 12, jitter=0.5)


def _config(face_cache, stage="inpaint", **loss) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "stage": stage,
            "model": "tiny",
            "data": {"train": [str(face_cache)], "mask_mix": {"block": 1.0}},
            "batch_size": 4,
            "lr": 2e-3,
            "max_steps": 2,
            "log_every": 1,
            "sample_every": 0,
            "checkpoint_every": 1,
            "val_every": 0,
            "threads": 1,
            "loss": {"l1_hole": 1.0, "component_adversarial": 0.1, "component_style": 10.0, **loss},
        }
    )


def _eye_centres(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return points[:, 36:42].mean(1), points[:, 42:48].mean(1)


@pytest.mark.parametrize("size", [128, 256])
def test_crops_read_the_image_where_the_landmarks_are(size):
    """On a ramp image(x, y) = x the left eye's crop reads x = centre + its offset along the
    eye line (bilinear sampling of a linear image is exact); the right eye's crop is mirrored;
    a 256-px face gives crops of twice the pixels; on a face turned by 90 degrees the crop's
    rows run down the image."""
    scale = size / 128
    points = torch.from_numpy(canonical_landmarks(size)).float()[None]
    ramp_x = torch.arange(size, dtype=torch.float32).expand(1, 1, size, size).contiguous()
    left, right = _eye_centres(points)
    distance = (right - left).norm().item()
    for part, sign in (("left_eye", 1.0), ("right_eye", -1.0), ("mouth", 1.0)):
        rows, factor, crop = COMPONENTS[part]
        crop = round(crop * scale)
        got = component_crops(ramp_x, points, part, scale)[0, 0]
        assert got.shape == (crop, crop)
        centre = points[0, rows].mean(0)
        half = factor * distance / 2
        offsets = (2 * torch.arange(crop) + 1) / crop - 1  # pixel centres of the crop in [-1, 1]
        want = centre[0] + sign * half * offsets
        assert torch.allclose(got, want.expand(crop, crop), atol=1e-3), part
    # turned by 90 degrees (x, y) -> (size - 1 - y, x): the eye line points down the image
    turned = torch.stack([size - 1 - points[..., 1], points[..., 0]], dim=-1)
    ramp_y = ramp_x.transpose(2, 3).contiguous()
    rows, factor, crop = COMPONENTS["left_eye"]
    crop = round(crop * scale)
    got = component_crops(ramp_y, turned, "left_eye", scale)[0, 0]
    centre = turned[0, rows].mean(0)
    offsets = (2 * torch.arange(crop) + 1) / crop - 1
    want = centre[1] + factor * distance / 2 * offsets  # along the crop's rows: down the image
    assert torch.allclose(got, want.expand(crop, crop), atol=1e-3)


def test_gram_known_values():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    # rows (1, 2) and (3, 4): inner products 5, 11, 25 over C * H * W = 4
    assert torch.allclose(losses.gram(features)[0], torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4)


class _ConstantJudge(nn.Module):
    """Logits 0 everywhere; the crops themselves as the one hidden feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, crops, holes):
        return {part: (self.bias.expand(c.shape[0], 1, 4, 4), [c]) for part, c in crops.items()}


def test_terms_on_known_logits_and_which_crops_count(face_cache, tmp_path):
    """With logits 0: the discriminator's loss per part is log 2 for the real crops plus log 2
    for the generated ones, and the generated ones are only those the hole covers enough; the
    generator's adversarial term is log 2 per part, 0 without a hole; the style term is 0 for a
    composite equal to its truth and the Gram distance of the crops otherwise."""
    trainer = Trainer(_config(face_cache), tmp_path / "run")
    parts = trainer.stage.components
    trainer.networks.nets["components"] = _ConstantJudge()
    # lr 0: the logits stay 0 through the updates below
    trainer.networks.optims["components"] = torch.optim.SGD(trainer.nets["components"].parameters(), lr=0.0)
    batch = trainer.next_batch()
    images, points = batch.images, batch.landmarks
    full = torch.ones_like(batch.masks)
    none = torch.zeros_like(batch.masks)
    n_parts = len(COMPONENTS)
    assert parts.step(images, points, images, points, full)["loss/component_discriminator"] == pytest.approx(
        n_parts * 2 * math.log(2), rel=1e-6
    )
    assert parts.step(images, points, images, points, none)["loss/component_discriminator"] == pytest.approx(
        n_parts * math.log(2), rel=1e-6
    )
    # a hole over the eyes' row only: the eye crops count, the mouth's does not
    rows = COMPONENTS["left_eye"][0]
    eye_y = int(points[:, rows, 1].mean().round())
    band = torch.zeros_like(batch.masks)
    band[:, :, eye_y - 6 : eye_y + 7] = 1
    for part, counted in (("left_eye", 1.0), ("right_eye", 1.0), ("mouth", 0.0)):
        _, _, generated = parts.crops(images, points, band, part)
        assert torch.equal(generated, torch.full_like(generated, counted)), part
    everyone = slice(None)
    terms = parts.generator_terms(images, points, full, images, everyone)
    assert terms["component_adversarial"].item() == pytest.approx(0.1 * n_parts * math.log(2), rel=1e-6)
    assert terms["component_style"].item() == 0
    assert parts.generator_terms(images, points, none, images, everyone)["component_adversarial"].item() == 0
    darker = (images * 0.5).requires_grad_()
    style = parts.generator_terms(darker, points, full, images, everyone)["component_style"]
    want = 0.0
    for part in COMPONENTS:
        fake, truth = (component_crops(x.detach(), points, part, parts.scale) for x in (darker, images))
        want += (losses.gram(fake) - losses.gram(truth)).abs().flatten(1).mean(1).mean().item()
    assert style.item() == pytest.approx(10.0 * want, rel=1e-5) and style.item() > 0
    style.backward()
    assert darker.grad is not None and darker.grad.abs().sum() > 0
    # faces without a truth (edited expressions) are left out of the style term
    nobody = torch.tensor([], dtype=torch.long)
    assert parts.generator_terms(darker, points, full, images, nobody)["component_style"].item() == 0


def test_generator_stage_trains_resumes_and_exports_without_them(face_cache, tmp_path):
    trainer = train(_config(face_cache), tmp_path / "run")
    assert trainer.step == 2
    batch = trainer.next_batch()
    logs = trainer.train_step(batch)
    names = {"loss/component_adversarial", "loss/component_style", "loss/component_discriminator"}
    assert names <= logs.keys()
    assert all(np.isfinite(v) for v in logs.values())
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert "components" in saved["nets"] and "components" in saved["optims"]
    resumed = Trainer(_config(face_cache), tmp_path / "run", resume=True)
    for k, v in resumed.nets["components"].state_dict().items():
        assert torch.equal(v, saved["nets"]["components"][k]), k
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "weights.safetensors"), "pt") as f:
        assert not any("component" in key or "judges" in key for key in f.keys())


def test_component_settings_are_checked(face_cache):
    with pytest.raises(ValueError, match="component_min_hole"):
        _config(face_cache, component_min_hole=0.0)
    with pytest.raises(ValueError, match="stage inpaint, joint or refine"):
        _config(face_cache, stage="landmarks")
