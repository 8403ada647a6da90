"""The damage detector: a small fully convolutional U-Net giving each pixel a damage logit.

Built for a CPU and for whole photos at their own resolution: a thin full-resolution path
(1-px scratches must be seen where they are), three cheaper coarser levels for context (a
scratch is a long, sharp, thin line across content; a hair strand follows the hair), and skips
back to full resolution. Any input size works (padded to a multiple of 8 inside); large photos are
run in tiles by :func:`lafin.restore.damage_probability`. :func:`inference_detector` gives the same
function in a faster form for inference (what ``lafin restore`` runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lafin.networks.folding import fold_batch_norms

DAMAGE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class DamageDetectorConfig:
    """Widths of the four levels (full, 1/2, 1/4, 1/8 resolution)."""

    widths: tuple[int, int, int, int] = (8, 16, 24, 32)

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ValueError(f"widths must be four positive integers, not {self.widths!r}")

    def to_dict(self) -> dict:
        return {"widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict) -> "DamageDetectorConfig":
        unknown = set(data) - {"widths"}
        if unknown:
            raise ValueError(f"unknown damage detector config keys: {sorted(unknown)}")
        return cls(widths=tuple(int(w) for w in data.get("widths", cls.widths)))


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DamageDetector(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) damage logits."""

    def __init__(self, config: DamageDetectorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DamageDetectorConfig()
        c1, c2, c4, c8 = self.config.widths
        self.stem = _conv(3, c1)
        self.down2 = nn.Sequential(_conv(c1, c2, stride=2), _conv(c2, c2))
        self.down4 = nn.Sequential(_conv(c2, c4, stride=2), _conv(c4, c4))
        self.down8 = nn.Sequential(
            _conv(c4, c8, stride=2), _conv(c8, c8, dilation=2), _conv(c8, c8, dilation=4)
        )
        self.up4 = _conv(c8 + c4, c4)
        self.up2 = _conv(c4 + c2, c2)
        self.up1 = _conv(c2 + c1, c1)
        self.head = nn.Conv2d(c1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        # centre the input on 0 (no learned normalisation needed at inference)
        f1 = self.stem(x - 0.5)
        f2 = self.down2(f1)
        f4 = self.down4(f2)
        f8 = self.down8(f4)
        u = self.up4(torch.cat([F.interpolate(f8, scale_factor=2.0, mode="nearest"), f4], 1))
        u = self.up2(torch.cat([F.interpolate(u, scale_factor=2.0, mode="nearest"), f2], 1))
        u = self.up1(torch.cat([F.interpolate(u, scale_factor=2.0, mode="nearest"), f1], 1))
        return self.head(u)[..., :h, :w]

    def fuse(self) -> "DamageDetector":
        """Fold every batch norm into its convolution (inference only; in place, returns self)."""
        return fold_batch_norms(self)


# how each low-resolution offset (-1, 0, +1) of a 2x nearest upsampling gathers the rows of a
# 3x3 kernel, for an output row of even (0) and odd (1) phase
_PHASE_ROWS = torch.tensor([[[1.0, 0, 0], [0, 1, 1], [0, 0, 0]], [[0.0, 0, 0], [1, 1, 0], [0, 0, 1]]])


class _UpsampleSkipConv(nn.Module):
    """``relu(conv3x3(cat([upsample2x_nearest(low), skip])))`` without building the upsampled
    map or the concatenation (on a CPU they took ~30% of the detector's time): the kernel's
    part on the upsampled channels becomes a convolution at low resolution with one output per
    phase, put in place by a pixel shuffle; the skip's part is a convolution of its own."""

    def __init__(self, conv: nn.Conv2d, low_channels: int) -> None:
        super().__init__()
        weight = conv.weight.detach()
        out_channels = weight.shape[0]
        # (out, phase y, phase x, in, 3, 3): the kernel seen from the low-resolution map
        rows = _PHASE_ROWS.to(weight)
        phases = torch.einsum("pab,oibc,qdc->opqiad", rows, weight[:, :low_channels], rows)
        self.register_buffer("low_weight", phases.reshape(4 * out_channels, low_channels, 3, 3).contiguous())
        self.register_buffer("skip_weight", weight[:, low_channels:].contiguous())
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(out_channels)
        self.register_buffer("bias", bias.clone())

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.pixel_shuffle(F.conv2d(low, self.low_weight, padding=1), 2)
        return F.relu_(up.add_(F.conv2d(skip, self.skip_weight, self.bias, padding=1)))


class InferenceDamageDetector(nn.Module):
    """A folded :class:`DamageDetector` computing the same logits faster (inference only; the
    decoder's upsample-and-concatenate steps replaced by :class:`_UpsampleSkipConv`)."""

    def __init__(self, detector: DamageDetector) -> None:
        super().__init__()
        if any(isinstance(m, nn.BatchNorm2d) for m in detector.modules()):
            raise ValueError("fold the detector's batch norms first (DamageDetector.fuse)")
        self.config = detector.config
        _, c2, c4, c8 = self.config.widths
        self.stem, self.down2, self.down4, self.down8 = (
            detector.stem,
            detector.down2,
            detector.down4,
            detector.down8,
        )
        self.up4 = _UpsampleSkipConv(detector.up4[0], c8)
        self.up2 = _UpsampleSkipConv(detector.up2[0], c4)
        self.up1 = _UpsampleSkipConv(detector.up1[0], c2)
        self.head = detector.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        f1 = self.stem(x - 0.5)
        f2 = self.down2(f1)
        f4 = self.down4(f2)
        u = self.up4(self.down8(f4), f4)
        u = self.up2(u, f2)
        u = self.up1(u, f1)
        return self.head(u)[..., :h, :w]


def inference_detector(detector: DamageDetector) -> InferenceDamageDetector:
    """The faster inference form of a detector (batch norms folded into a copy if need be)."""
    import copy

    if any(isinstance(m, nn.BatchNorm2d) for m in detector.modules()):
        detector = copy.deepcopy(detector).eval().fuse()
    return InferenceDamageDetector(detector).eval()


DAMAGE_FORMAT_NAME = "lafin-damage-detector"


class DamageWeightsError(ValueError):
    """A damage detector weights file that cannot be loaded (the message says why)."""


def save_damage_detector(path, model: DamageDetector, metadata: dict | None = None) -> None:
    """Write the detector (batch norms folded in) as safetensors with its config and format
    version in the metadata; written to a temporary file first, then renamed."""
    import copy
    import json

    from safetensors.torch import save_file

    from lafin.atomic import atomic_write

    fused = copy.deepcopy(model).cpu().eval().fuse()
    tensors = {k: v.detach().contiguous().float() for k, v in fused.state_dict().items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(
        {
            "format": DAMAGE_FORMAT_NAME,
            "format_version": str(DAMAGE_FORMAT_VERSION),
            "config": json.dumps(model.config.to_dict()),
        }
    )
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_damage_detector(path, device: str | torch.device = "cpu") -> tuple[DamageDetector, dict[str, str]]:
    """Build the (fused, eval-mode) detector of a file written by :func:`save_damage_detector`;
    strict: a missing, extra or misshapen tensor is an error. Returns (model, metadata)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise DamageWeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != DAMAGE_FORMAT_NAME:
        raise DamageWeightsError(f"{path}: not a lafin damage detector file (format={meta.get('format')!r})")
    version = int(meta.get("format_version", "0"))
    if version > DAMAGE_FORMAT_VERSION:
        raise DamageWeightsError(
            f"{path}: format version {version} is newer than this lafin "
            f"reads ({DAMAGE_FORMAT_VERSION}); upgrade lafin"
        )
    config = DamageDetectorConfig.from_dict(json.loads(meta["config"]))
    model = DamageDetector(config).fuse()
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise DamageWeightsError(f"{path}: the tensors do not match the stored config ({exc})") from exc
    return model.to(device).eval(), meta
