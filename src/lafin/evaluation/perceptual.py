"""LPIPS (Zhang et al. 2018) from weights files the user gives; nothing is downloaded.

LPIPS needs two things:

- the learned linear layers: the ``lpips`` package ships them
  (``lpips/weights/v0.1/alex.pth`` or ``vgg.pth``: keys ``lin0.model.1.weight`` ... ``lin4``,
  each (1, C, 1, 1));
- the ImageNet backbone they were trained on: torchvision's AlexNet
  (``alexnet-owt-7be5be79.pth``) or VGG-16 (``vgg16-397923af.pth``) state dict, keys
  ``features.N.weight``/``bias``; the ``lpips`` package downloads these at run time, so they
  must be supplied as files here. A full ``lpips.LPIPS`` state dict (``net.sliceK.N.*`` and
  ``linK.model.1.weight`` in one file) also works.

The backbones are written here without torchvision, with torchvision's layer indices. Images in
[0, 1] are mapped to [-1, 1], then shifted and scaled per channel as LPIPS does; features are
taken after the ReLUs LPIPS uses (AlexNet relu1..relu5; VGG-16 relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3); :func:`lafin.evaluation.metrics.lpips_from_features` does the rest.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from lafin.evaluation.metrics import lpips_from_features

log = logging.getLogger(__name__)

# LPIPS's input scaling layer (its inputs are in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# Per backbone: the layers of torchvision's ``features`` (conv: (cin, cout, kernel, stride, pad),
# "R" ReLU, "M" max pool 3/2 (AlexNet) or 2/2 (VGG)), the indices whose outputs LPIPS taps,
# and each tap's channel count.
_ALEX = [
    (3, 64, 11, 4, 2),
    "R",
    "M",
    (64, 192, 5, 1, 2),
    "R",
    "M",
    (192, 384, 3, 1, 1),
    "R",
    (384, 256, 3, 1, 1),
    "R",
    (256, 256, 3, 1, 1),
    "R",
    "M",
]
_VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
BACKBONES = {
    "alex": {"taps": (1, 4, 7, 9, 11), "channels": (64, 192, 384, 256, 256)},
    "vgg": {"taps": (3, 8, 15, 22, 29), "channels": (64, 128, 256, 512, 512)},
}


def _vgg_layers() -> list:
    layers: list = []
    cin = 3
    for v in _VGG_CFG:
        if v == "M":
            layers.append("M")
        else:
            layers += [(cin, int(v), 3, 1, 1), "R"]
            cin = int(v)
    return layers


class Backbone(nn.Module):
    """AlexNet or VGG-16 ``features`` (torchvision's indices), returning LPIPS's five taps."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown LPIPS backbone {name!r}; use alex or vgg")
        self.name = name
        spec = _ALEX if name == "alex" else _vgg_layers()
        pool = 3 if name == "alex" else 2
        mods: list[nn.Module] = []
        for item in spec:
            if item == "R":
                mods.append(nn.ReLU(inplace=False))
            elif item == "M":
                mods.append(nn.MaxPool2d(pool, stride=2))
            else:
                cin, cout, k, s, p = item  # type: ignore[misc]
                mods.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
        self.features = nn.Sequential(*mods)
        self.taps = BACKBONES[name]["taps"]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
                if i == self.taps[-1]:
                    break
        return out


class LPIPS(nn.Module):
    """LPIPS distance: ``lpips(images0, images1) -> (B,)``.

    Args:
        backbone: a :class:`Backbone` with ImageNet weights loaded.
        linear: the five per-layer weight vectors (non-negative), shapes (C_l,).
    """

    def __init__(self, backbone: Backbone, linear: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.backbone = backbone
        self.linear = nn.ParameterList(
            [nn.Parameter(w.reshape(-1).float(), requires_grad=False) for w in linear]
        )
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> the backbone's five feature maps."""
        x = (images * 2 - 1 - self.shift) / self.scale
        return self.backbone(x)

    @torch.inference_mode()
    def forward(self, images0: torch.Tensor, images1: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] each -> (B,) distances."""
        return lpips_from_features(self.features(images0), self.features(images1), list(self.linear))

    def distance(self, image0: np.ndarray, image1: np.ndarray) -> float:
        """LPIPS between two HxWx3 uint8 RGB images."""
        device = self.shift.device
        a = torch.from_numpy(np.ascontiguousarray(image0)).permute(2, 0, 1)[None].float() / 255
        b = torch.from_numpy(np.ascontiguousarray(image1)).permute(2, 0, 1)[None].float() / 255
        return float(self(a.to(device), b.to(device))[0])


_LIN = re.compile(r"^lin(\d)\.(?:model\.1\.)?weight$")
_FEATURES = re.compile(r"^(?:features|net\.slice\d)\.(\d+)\.(weight|bias)$")


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        log.debug("torch.load(%s) failed: %s", path, exc)
        raise ValueError(f"{path}: not a PyTorch weights file") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_lpips(paths: Sequence[str | Path], device: str | torch.device = "cpu") -> LPIPS:
    """Build LPIPS from the linear-layer file and the backbone file (in any order; or one file
    holding both). The backbone (alex or vgg) is recognised from the linear layers' sizes.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the linear layers or the backbone are missing or do not fit.
    """
    linear: dict[int, torch.Tensor] = {}
    features: dict[str, torch.Tensor] = {}
    names = []
    for raw in paths:
        path = Path(raw)
        names.append(path.name)
        for key, value in _read(path).items():
            if m := _LIN.match(key):
                linear[int(m.group(1))] = value
            elif m := _FEATURES.match(key):
                features[f"features.{m.group(1)}.{m.group(2)}"] = value
    if sorted(linear) != [0, 1, 2, 3, 4]:
        raise ValueError(
            f"LPIPS: no linear layers (lin0..lin4) in {', '.join(names)}; give the "
            "lpips package's weights/v0.1/alex.pth (or vgg.pth)"
        )
    channels = tuple(int(linear[i].numel()) for i in range(5))
    kind = next((k for k, v in BACKBONES.items() if v["channels"] == channels), None)
    if kind is None:
        raise ValueError(
            f"LPIPS: linear layers of sizes {channels} fit neither AlexNet "
            f"{BACKBONES['alex']['channels']} nor VGG-16 "
            f"{BACKBONES['vgg']['channels']} (SqueezeNet is not supported)"
        )
    backbone = Backbone(kind)
    expected = backbone.state_dict()
    if not features:
        file = "alexnet-owt-7be5be79.pth" if kind == "alex" else "vgg16-397923af.pth"
        raise ValueError(
            f"LPIPS ({kind}): no backbone weights in {', '.join(names)}; also give "
            f"torchvision's {file} (a state dict with features.N.weight keys)"
        )
    missing = sorted(set(expected) - set(features))
    if missing:
        raise ValueError(
            f"LPIPS ({kind}): the backbone file lacks {missing[:3]}: is it "
            f"{'AlexNet' if kind == 'alex' else 'VGG-16'}?"
        )
    for key in expected:
        if tuple(features[key].shape) != tuple(expected[key].shape):
            raise ValueError(
                f"LPIPS ({kind}): backbone parameter {key} has shape "
                f"{tuple(features[key].shape)}, expected {tuple(expected[key].shape)}"
            )
    backbone.load_state_dict({k: features[k] for k in expected})
    model = LPIPS(backbone, [linear[i] for i in range(5)]).to(torch.device(device)).eval()
    log.info("LPIPS: %s backbone from %s", kind, ", ".join(names))
    return model
