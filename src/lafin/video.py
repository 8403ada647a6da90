"""Video restoration: photo-mode inpainting frame by frame, with landmarks smoothed over time.

Faces are tracked from frame to frame (nearest box centre). Each track smooths, with an
exponential moving average, both the detector's landmarks (which fix the alignment) and the
predicted landmarks (which guide generation), so the generated face neither jitters nor swims.
Frames are read and written with the ffmpeg binary that ``imageio-ffmpeg`` ships; the input's
audio is copied into the output when it has any.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lafin.io import InputError, load_mask

log = logging.getLogger(__name__)


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError("video needs imageio-ffmpeg: pip install 'lafin[video]'") from None
    return imageio_ffmpeg


@dataclass
class _Track:
    centre: np.ndarray
    size: float
    values: dict[str, np.ndarray] = field(default_factory=dict)
    seen: int = 0


class LandmarkSmoother:
    """Per-face exponential smoothing of landmark sets across frames.

    Args:
        alpha: weight of the new frame's landmarks (1 = no smoothing, smaller = smoother).
        max_jump: a face whose box centre moved more than this fraction of its size starts a
            new track (a cut, or another person).
    """

    def __init__(self, alpha: float = 0.5, max_jump: float = 0.5) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("smoothing alpha must be in (0, 1]")
        self.alpha, self.max_jump = alpha, max_jump
        self.tracks: list[_Track] = []
        self.frame = 0

    def assign(self, boxes: list[tuple[float, float, float, float]]) -> list[int]:
        """Match this frame's face boxes to tracks (creating new ones); returns track indices."""
        self.frame += 1
        taken: set[int] = set()
        out = []
        for box in boxes:
            centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            size = max(box[2] - box[0], box[3] - box[1], 1.0)
            best, best_d = -1, np.inf
            for i, t in enumerate(self.tracks):
                d = np.linalg.norm(t.centre - centre) / max(t.size, size)
                if i not in taken and t.seen == self.frame - 1 and d < best_d:
                    best, best_d = i, d
            if best < 0 or best_d > self.max_jump:
                self.tracks.append(_Track(centre, size))
                best = len(self.tracks) - 1
            track = self.tracks[best]
            track.centre, track.size, track.seen = centre, size, self.frame
            taken.add(best)
            out.append(best)
        return out

    def smooth(self, track: int, key: str, points: np.ndarray) -> np.ndarray:
        t = self.tracks[track]
        previous = t.values.get(key)
        value = points if previous is None else self.alpha * points + (1 - self.alpha) * previous
        t.values[key] = value.astype(np.float32)
        return t.values[key]


@dataclass
class VideoReport:
    frames: int
    fps: float
    size: tuple[int, int]
    faces_per_frame: list[int]
    audio: bool
    output: Path
    landmarks: list[list[np.ndarray]] = field(default_factory=list)  # per frame, per face


def _mask_source(mask: str | Path, size: tuple[int, int]):
    """Yield one HxW mask per frame: a still mask forever, or the frames of a mask video."""
    path = Path(mask)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
        still = load_mask(path, shape=(size[1], size[0]))
        while True:
            yield still
    ff = _ffmpeg()
    reader = ff.read_frames(str(path))
    meta = next(reader)
    if tuple(meta["size"]) != tuple(size):
        raise InputError(f"mask video size {meta['size']} differs from the video's {size}")
    for raw in reader:
        frame = np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3)
        yield (frame.max(axis=2) >= 128).astype(np.uint8)


def _has_audio(path: Path) -> bool:
    exe = _ffmpeg().get_ffmpeg_exe()
    probe = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return "Audio:" in probe.stderr


def inpaint_video(model, video: str | Path, mask: str | Path, output: str | Path,
                  smoothing: float = 0.5, lossless: bool = False, progress: bool = True
                  ) -> VideoReport:
    """Inpaint every frame of ``video`` (photo mode) and write ``output`` with the input's audio.

    Args:
        model: a :class:`lafin.pipeline.LaFInModel`.
        mask: a mask image (the same hole in every frame) or a mask video (frame by frame).
        smoothing: landmark smoothing, the weight of each new frame (1 = none).
        lossless: encode losslessly (libx264rgb, qp 0) so known pixels stay bit-identical;
            otherwise H.264 at high quality (crf 17), as players expect.
    """
    from tqdm import tqdm

    from lafin.photo import fill_regions, find_faces, robust_alignment

    ff = _ffmpeg()
    video, output = Path(video), Path(output)
    if not video.is_file():
        raise InputError(f"video not found: {video}")
    if output.resolve() in (video.resolve(), Path(mask).resolve()):
        raise InputError(f"refusing to overwrite an input file: {output}")
    reader = ff.read_frames(str(video))
    try:
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise InputError(f"cannot read video {video}: {exc}") from None
    w, h = meta["size"]
    fps = float(meta.get("fps") or 25.0)
    n_frames = int(round(meta.get("duration", 0) * fps)) or None
    masks = _mask_source(mask, (w, h))
    smoother = LandmarkSmoother(alpha=smoothing)
    s = model.image_size
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, silent = tempfile.mkstemp(suffix=output.suffix or ".mp4", dir=output.parent)
    os.close(fd)
    params = (dict(codec="libx264rgb", pix_fmt_out="rgb24", output_params=["-qp", "0"])
              if lossless else dict(codec="libx264", pix_fmt_out="yuv420p",
                                    output_params=["-crf", "17"]))
    writer = ff.write_frames(silent, (w, h), fps=fps, macro_block_size=1, quality=None, **params)
    writer.send(None)
    faces_per_frame: list[int] = []
    landmarks: list[list[np.ndarray]] = []
    try:
        for raw in tqdm(reader, total=n_frames, desc="frames", disable=not progress, unit="frame"):
            frame = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
            try:
                hole = next(masks)
            except StopIteration:
                hole = np.zeros((h, w), np.uint8)  # the mask video ended: keep frames as they are
            if not hole.any():
                writer.send(np.ascontiguousarray(frame))
                faces_per_frame.append(0)
                landmarks.append([])
                continue
            content = fill_regions(frame, hole)
            frames = find_faces(frame, hole, s, filled=content)
            tracks = smoother.assign([f.box for f in frames])
            for f, track in zip(frames, tracks):
                if f.landmarks is None:
                    continue
                f.landmarks = smoother.smooth(track, "align", f.landmarks)
                xy = np.clip(np.round(f.landmarks).astype(int), 0, [w - 1, h - 1])
                f.matrix = robust_alignment(f.landmarks, hole[xy[:, 1], xy[:, 0]] == 0, s)
            # no re-alignment on each frame's own first landmark pass: the frames' alignment is
            # smoothed over time above, and re-aligning every frame anew would make faces jitter
            reports = model.render_faces(
                frame, hole, content, frames,
                point_filter=lambda i, pts: smoother.smooth(tracks[i], "points", pts), refine=False)
            faces_per_frame.append(len(reports))
            landmarks.append([r.landmarks for r in reports])
            writer.send(np.ascontiguousarray(content))
    finally:
        writer.close()
    audio = _has_audio(video)
    if audio:
        exe = ff.get_ffmpeg_exe()
        cmd = [exe, "-y", "-hide_banner", "-loglevel", "error", "-i", silent, "-i", str(video),
               "-map", "0:v:0", "-map", "1:a?", "-c:v", "copy", "-c:a", "copy", "-shortest",
               str(output)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            log.warning("could not copy the audio (%s); writing the video without it",
                        done.stderr.strip()[-200:])
            os.replace(silent, output)
            audio = False
        else:
            os.unlink(silent)
    else:
        os.replace(silent, output)
    return VideoReport(len(faces_per_frame), fps, (w, h), faces_per_frame, audio, output, landmarks)
