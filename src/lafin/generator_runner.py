"""Painting the hole: the generator on masked crops and their landmarks (mirror-averaged and
mixed with a diffusion fill when asked), then the texture refiner at its own size, if the
weights have one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from lafin.alignment import rescale_points
from lafin.blend import diffusion_mix, keep_tone, match_edge_colour, match_softness
from lafin.crop_frame import CropFrame
from lafin.landmarks import landmark_map
from lafin.runtime import Runtime, cpu_call
from lafin.smoothing import gaussian_blur

if TYPE_CHECKING:
    from lafin.config import ModelConfig
    from lafin.options import InferenceOptions
    from lafin.results import Stages

# The refiner runs on each face's hole grown by this margin (px at its size), not on the whole
# crop: further out the crop hardly changes the hole's pixels (benchmarks/refine_window.py
# measures the window against the whole crop; figures in docs/SPEED.md).
REFINE_MARGIN = 40

# With ``refiner_texture_only`` the refiner's change to the hole keeps only what is finer than
# a Gaussian of this sigma (px at the refiner's 256-px side): skin, hair and lip texture; the
# colour and the shapes stay the generator's (the refiner could turn a fill greener and paler
# than the face around it).
TEXTURE_SIGMA = 8.0


def texture_only(
    refined: torch.Tensor, coarse: torch.Tensor, holes: torch.Tensor, sigma: float
) -> torch.Tensor:
    """``coarse`` plus the part of the refiner's change inside ``holes`` finer than ``sigma``:
    the change's local mean over the hole (a Gaussian-weighted mean of hole pixels only) is
    taken out. (B, 3, H, W) and (B, 1, H, W) tensors in [0, 1]; outside the hole, ``coarse``."""
    change = (refined - coarse) * holes
    slow = gaussian_blur(change, sigma) / gaussian_blur(holes, sigma).clamp_min(1e-3)
    return (coarse + (change - slow * holes)).clamp(0, 1)


def hole_windows(holes: torch.Tensor, margin: int, step: int = 8) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of each (B, 1, R, R) crop's hole grown by ``margin``, on the
    ``step`` grid (the refiner's 1/8 scale: a window then sees the same grid as the whole crop)
    and within the crop; an empty window where a crop has no hole."""
    size_y, size_x = holes.shape[-2:]
    windows = []
    for hole in holes[:, 0] > 0.5:
        rows, cols = torch.nonzero(hole.any(dim=1)), torch.nonzero(hole.any(dim=0))
        if not len(rows):
            windows.append((0, 0, 0, 0))
            continue
        top, bottom = int(rows[0]) - margin, int(rows[-1]) + 1 + margin
        left, right = int(cols[0]) - margin, int(cols[-1]) + 1 + margin
        windows.append(
            (
                max(0, top // step * step),
                min(size_y, -(-bottom // step) * step),
                max(0, left // step * step),
                min(size_x, -(-right // step) * step),
            )
        )
    return windows


class GeneratorRunner:
    """The generator and the refiner of one set of weights.

    Args:
        generator: G(masked image, landmark map, hole) -> (B, 3, S, S) in [0, 1].
        image_size: the generator's side S.
        runtime: device and CPU settings.
        refiner: the texture refiner (:mod:`lafin.networks.refiner`) or None.
        output_size: the refiner's side R (``image_size`` without a refiner).
        flip_average: also run the generator on the mirror image and average.
        diffusion_mix: share of OpenCV's Navier-Stokes fill mixed into the hole (0: none).
        seed: the refiner's noise seed.
        channels_last: ``{"generator": bool, "refiner": bool}``, the networks' memory format.
        edge_colour_match: shift each face's fill to the colour of the pixels around the hole
            (:func:`lafin.blend.match_edge_colour`) after the last network.
        refiner_texture_only: keep only the fine part of the refiner's change (:func:`texture_only`).
        coarse_blur: sigma (px at ``image_size``) of the blur of the generator's faces before
            the refiner (0: none; ``refiner.coarse_blur`` of the weights' config).
        refiner_noise: scale of the refiner's noise (1: what it learnt on; 0: none).
        match_softness: soften a soft photo's fill to the photo's softness
            (:func:`lafin.blend.match_softness`) before its tone is kept.
    """

    def __init__(
        self,
        generator: torch.nn.Module | None,
        image_size: int,
        runtime: Runtime,
        refiner: torch.nn.Module | None = None,
        output_size: int | None = None,
        flip_average: bool = True,
        diffusion_mix: float = 0.0,
        seed: int = 0,
        channels_last: dict[str, bool] | None = None,
        edge_colour_match: bool = True,
        refiner_texture_only: bool = True,
        coarse_blur: float = 0.0,
        refiner_noise: float = 1.0,
        match_softness: bool = True,
    ) -> None:
        self.generator = generator
        self.refiner = refiner
        self.image_size = image_size
        self.output_size = image_size if refiner is None else (output_size or image_size)
        self.runtime = runtime
        self.flip_average = flip_average
        self.diffusion_mix = diffusion_mix
        self.seed = seed
        self.channels_last = {"generator": False, "refiner": False, **(channels_last or {})}
        self.edge_colour_match = edge_colour_match
        self.refiner_texture_only = refiner_texture_only
        self.coarse_blur = float(coarse_blur)
        self.refiner_noise = float(refiner_noise)
        self.match_softness = match_softness

    @classmethod
    def for_config(
        cls,
        generator: torch.nn.Module | None,
        refiner: torch.nn.Module | None,
        config: "ModelConfig",
        runtime: Runtime,
        options: "InferenceOptions",
        channels_last: dict[str, bool] | None = None,
    ) -> "GeneratorRunner":
        """The runner of networks of ``config`` under resolved ``options``."""
        return cls(
            generator,
            config.image_size,
            runtime,
            refiner,
            config.refiner.output_size if refiner is not None else None,
            bool(options.generator_flip_average),
            float(options.diffusion_mix or 0.0),
            options.seed,
            channels_last,
            options.edge_colour_match,
            options.refiner_texture_only,
            config.refiner.coarse_blur if options.coarse_blur is None else options.coarse_blur,
            options.refiner_noise,
            options.match_softness,
        )

    def fill_crop(
        self,
        img: np.ndarray,
        hole: np.ndarray,
        frame: CropFrame,
        img_t: torch.Tensor,
        hole_t: torch.Tensor,
        points: np.ndarray,
        stages: "Stages",
    ) -> tuple[np.ndarray, str]:
        """Crop mode's fill: the structure on ``frame``'s tensors guided by ``points`` (68, 2 in
        its pixels), the texture at the refiner's size, the hole pasted back at the input's size
        with the photo's tone kept. Returns (HxWx3 uint8 image, tone)."""
        stages.start("generate")
        generated = self.structure(img_t, hole_t, points[None])
        output_frame = frame
        if self.refiner is not None:
            stages.start("refine")
            output_frame = CropFrame.around(img.shape[:2], self.output_size)
            generated = self.refine(
                *output_frame.tensors(img, hole, self.runtime.device), generated, points[None]
            )
        stages.start("blend")
        return self.finish(img, output_frame.paste(img, hole, generated[0]), hole)

    def finish(self, img: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, str]:
        """The last touches of a filled image (HxWx3 uint8; outside ``hole`` it is ``img``): the
        fill softened to a soft photo's softness (if ``match_softness``), then the photo's tone
        kept (grey, sepia). Returns (image, tone)."""
        if self.match_softness:
            filled = match_softness(img, filled, hole)[0]
        return keep_tone(img, filled, hole)

    @cpu_call
    @torch.inference_mode()
    def generate(self, img_t: torch.Tensor, hole_t: torch.Tensor, points: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) crops, (B, 1, S, S) holes, (B, 68, 2) landmarks -> (B, S, S, 3) in [0, 1]
        (the bare generator, averaged with its mirror pass if ``flip_average``)."""
        if self.generator is None:
            raise ValueError("these networks have no generator (only landmarks can be predicted)")
        device = self.runtime.device
        masked = img_t * (1 - hole_t) + hole_t
        lm_t = torch.from_numpy(np.asarray(points, np.float32)).to(device)
        inputs = [masked, landmark_map(lm_t, self.image_size), hole_t]
        n = masked.shape[0]
        if self.flip_average:
            # the mirror image too (its landmark map is the mirrored map), flipped back, averaged
            inputs = [torch.cat([t, t.flip(3)]) for t in inputs]
        if self.channels_last["generator"]:
            inputs = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
        out = self.generator(*inputs)
        if self.flip_average:
            out = (out[:n] + out[n:].flip(3)) / 2
        return out.permute(0, 2, 3, 1).clamp(0, 1).float().cpu().numpy()

    def mix_diffusion(self, img_t: torch.Tensor, hole_t: torch.Tensor, generated: np.ndarray) -> np.ndarray:
        """Mix ``diffusion_mix`` of the Navier-Stokes fill into (B, S, S, 3) ``generated``."""
        weight = self.diffusion_mix
        if weight == 0:
            return generated
        # the masked crops (white hole, as the generator sees them): OpenCV's fill reads a little
        # of what lies under the hole, and nothing of it may reach the result
        masked = img_t * (1 - hole_t) + hole_t
        crops = (masked.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)
        holes = hole_t[:, 0].float().cpu().numpy() > 0.5
        return np.stack(
            [
                diffusion_mix(c, g * 255.0, h, float(weight)) / 255.0
                for c, g, h in zip(crops, generated, holes)
            ]
        ).astype(np.float32)

    def structure(self, img_t: torch.Tensor, hole_t: torch.Tensor, points: np.ndarray) -> np.ndarray:
        """The generator's faces with the diffusion mix: (B, S, S, 3) in [0, 1] (colour-matched
        at the hole's edge when there is no refiner to follow)."""
        generated = self.mix_diffusion(img_t, hole_t, self.generate(img_t, hole_t, points))
        return generated if self.refiner is not None else self.match_edges(img_t, hole_t, generated)

    def match_edges(self, crops: torch.Tensor, holes: torch.Tensor, faces: np.ndarray) -> np.ndarray:
        """:func:`lafin.blend.match_edge_colour` on (B, N, N, 3) ``faces`` in [0, 1] against the
        known pixels of their (B, 3, N, N) ``crops``; ``faces`` itself when switched off."""
        if not self.edge_colour_match:
            return faces
        known = crops.permute(0, 2, 3, 1).float().cpu().numpy() * 255.0
        hole = holes[:, 0].float().cpu().numpy() > 0.5
        scale = faces.shape[1] / 256
        return np.stack(
            [match_edge_colour(k, f * 255.0, h, scale) / 255.0 for k, f, h in zip(known, faces, hole)]
        ).astype(np.float32)

    @cpu_call
    @torch.inference_mode()
    def refine(
        self,
        crops: torch.Tensor,
        holes: torch.Tensor,
        generated: np.ndarray,
        points: np.ndarray,
        faces: Sequence[int] | None = None,
    ) -> np.ndarray:
        """The refiner on (B, 3, R, R) crops and (B, 1, R, R) holes at its size R, given the
        generator's (B, S, S, 3) faces in [0, 1] and the (B, 68, 2) landmarks they were
        generated with (pixels of the S crops); returns (B, R, R, 3) in [0, 1].

        ``faces`` (default 0, 1, ...): which slice of the seeded noise each face gets (a video
        frame's face gets its place in the frame, so its texture stays from frame to frame).
        A PyTorch refiner runs on each face's hole and ``REFINE_MARGIN`` around it only (the
        rest of the crop is returned as the coarse face: nothing outside the hole is pasted)."""
        from lafin.networks.refiner import landmark_heatmap

        if self.refiner is None:
            raise ValueError("these weights have no refiner")
        device = self.runtime.device
        size = self.output_size
        points_r = torch.from_numpy(
            rescale_points(np.asarray(points, np.float32), size / self.image_size)
        ).to(device)
        coarse = torch.from_numpy(np.ascontiguousarray(generated)).permute(0, 3, 1, 2).to(device)
        if self.coarse_blur > 0:
            coarse = gaussian_blur(coarse, self.coarse_blur)
        coarse = torch.nn.functional.interpolate(
            coarse, size=(size, size), mode="bicubic", align_corners=False
        ).clamp(0, 1)
        coarse = coarse * holes + crops * (1 - holes)
        # the same noise for the same input: a result can be reproduced
        faces = list(range(holes.shape[0])) if faces is None else [int(i) for i in faces]
        noise = torch.randn(
            (max(faces) + 1, 1, size, size), generator=torch.Generator().manual_seed(self.seed)
        )[faces]
        noise = (noise * self.refiner_noise).to(device)
        if not isinstance(self.refiner, torch.nn.Module):  # ONNX: the exported size, in one go
            inputs = [coarse, holes, landmark_heatmap(points_r, size), noise]
            out = self.refiner(*inputs)
            if self.refiner_texture_only:
                out = texture_only(out.float(), coarse.float(), holes.float(), TEXTURE_SIGMA * size / 256)
            return self.match_edges(crops, holes, out.permute(0, 2, 3, 1).float().cpu().numpy())
        out = coarse.clone()
        for i, (top, bottom, left, right) in enumerate(hole_windows(holes, REFINE_MARGIN)):
            if bottom <= top:
                continue  # no hole in this crop: nothing to refine
            view = (slice(i, i + 1), slice(None), slice(top, bottom), slice(left, right))
            inputs = [
                coarse[view],
                holes[view],
                landmark_heatmap(points_r[i : i + 1], (bottom - top, right - left), origin=(left, top)),
                noise[view],
            ]
            if self.channels_last["refiner"]:
                inputs = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
            refined = self.refiner(*inputs)
            if self.refiner_texture_only:
                refined = texture_only(refined, coarse[view], holes[view], TEXTURE_SIGMA * size / 256)
            out[view] = refined
        return self.match_edges(crops, holes, out.permute(0, 2, 3, 1).float().cpu().numpy())
