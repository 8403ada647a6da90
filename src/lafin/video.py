"""Video restoration: photo-mode inpainting of each frame, faces followed from frame to frame.

The face detectors run on key frames only: the first, every ``key_interval`` frames, and when a
face is lost or the hole reaches where no followed face is. In between, each face's crop is
aligned on the landmarks the predictor placed in the frames before (smoothed over time with a
trend-following exponential average, so the generated face neither jitters nor swims nor lags),
and the predictor finds the face again in that crop. The generator and the refiner take
``batch`` frames at a time through the photo path
(:meth:`lafin.pipeline.LaFInModel.render_photos`), in a second thread while the first reads,
follows and places the landmarks of the next batch (the two overlap on a multi-core CPU). A
face keeps the refiner's noise of its place in the frame, so its texture does not flicker. When
one followed face holds the whole hole, nothing is filled by OpenCV first (the face covers it
all). Frames are read and written with the ffmpeg binary that ``imageio-ffmpeg`` ships; the
input's audio is copied into the output when it has any.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lafin.atomic import atomic_write
from lafin.io import InputError, load_mask
from lafin.outputs import same_file

log = logging.getLogger(__name__)


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError("video needs imageio-ffmpeg: pip install 'lafin[video]'") from None
    return imageio_ffmpeg


# ffmpeg's container (muxer) for an output's extension: the files are written under temporary
# names (lafin.atomic), from which ffmpeg cannot guess it
CONTAINERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".ts": "mpegts",
    ".flv": "flv",
}


def container_for(path: str | Path) -> str:
    """ffmpeg's container name for a video path's extension (mp4 when it has none); an
    extension of no container the encoder can fill is an :class:`InputError`."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "mp4"
    if suffix not in CONTAINERS:
        raise InputError(f"{path}: a video output must end in {', '.join(CONTAINERS)}, not {suffix}")
    return CONTAINERS[suffix]


def open_writer(
    path: str | Path, size: tuple[int, int], fps: float, lossless: bool = False, container: str | None = None
):
    """A started ffmpeg writer of (h, w, 3) uint8 RGB frames of ``size`` (w, h): H.264 of the RGB
    planes at qp 0 (``lossless``: every pixel kept) or yuv420p at crf 17, in ``container``
    (default: ffmpeg's guess from the extension). ``send`` frames, then ``close``."""
    params = (
        dict(codec="libx264rgb", pix_fmt_out="rgb24", output_params=["-qp", "0"])
        if lossless
        else dict(codec="libx264", pix_fmt_out="yuv420p", output_params=["-crf", "17"])
    )
    if container is not None:
        params["output_params"] += ["-f", container]
    writer = _ffmpeg().write_frames(str(path), size, fps=fps, macro_block_size=1, quality=None, **params)
    writer.send(None)
    return writer


def write_video(
    path: str | Path, frames: Sequence[np.ndarray], fps: float = 25.0, lossless: bool = True
) -> None:
    """Write RGB frames to a video file (lossless by default: clips for tests and benchmarks)."""
    h, w = frames[0].shape[:2]
    writer = open_writer(path, (w, h), fps, lossless)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


@dataclass
class _Track:
    centre: np.ndarray
    size: float
    values: dict[str, np.ndarray] = field(default_factory=dict)
    seen: int = 0


class LandmarkSmoother:
    """Per-face smoothing of landmark sets across frames: exponential smoothing with a trend
    (Holt's linear method), so a moving face's smoothed landmarks do not lag behind it.

    Args:
        alpha: weight of the new frame's landmarks (1 = no smoothing, smaller = smoother).
        max_jump: a face whose box centre moved more than this fraction of its size starts a
            new track (a cut, or another person).
        trend: weight of the newest change in the landmarks' velocity (0 = plain exponential
            smoothing, which lags a face moving v px a frame by v (1 - alpha) / alpha px).
    """

    def __init__(self, alpha: float = 0.5, max_jump: float = 0.5, trend: float = 0.3) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("smoothing alpha must be in (0, 1]")
        if not 0 <= trend <= 1:
            raise ValueError("smoothing trend must be in [0, 1]")
        self.alpha, self.max_jump, self.trend = alpha, max_jump, trend
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
        """The smoothed value of ``key`` for ``track`` after this frame's ``points``."""
        t = self.tracks[track]
        previous = t.values.get(key)
        if previous is None:
            value, slope = np.asarray(points, np.float32), np.zeros_like(points, np.float32)
        else:
            slope = t.values[key + "/trend"]
            value = self.alpha * points + (1 - self.alpha) * (previous + slope)
            slope = self.trend * (value - previous) + (1 - self.trend) * slope
        t.values[key], t.values[key + "/trend"] = value.astype(np.float32), slope.astype(np.float32)
        return t.values[key]

    def forget(self, track: int, key: str) -> None:
        """Drop the smoothed ``key`` of ``track`` (its next value starts afresh)."""
        self.tracks[track].values.pop(key, None)
        self.tracks[track].values.pop(key + "/trend", None)

    def extrapolate(self, track: int, key: str, steps: int) -> np.ndarray | None:
        """Where ``key`` of ``track`` will be ``steps`` frames after its last value (None if it
        has none)."""
        t = self.tracks[track]
        if key not in t.values:
            return None
        return (t.values[key] + steps * t.values[key + "/trend"]).astype(np.float32)


@dataclass
class VideoReport:
    frames: int
    fps: float
    size: tuple[int, int]
    faces_per_frame: list[int]
    audio: bool
    output: Path
    landmarks: list[list[np.ndarray]] = field(default_factory=list)  # per frame, per face
    key_frames: int = 0  # frames on which the face detectors ran
    # per stage (see StageClock), summed over the frames: wall-clock and CPU seconds of the
    # thread that ran it (the two threads overlap, so the wall-clock times add up to more than
    # the call took)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)
    opencv_fills: int = 0  # frames whose hole OpenCV filled first (not one face holding it all)


class StageClock:
    """Wall-clock and CPU time (of the calling thread) per named stage, summed over calls;
    ``start(name)`` ends the running stage and starts the next, as
    :meth:`lafin.pipeline.LaFInModel.render_photos` expects of its ``stages``."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._name: str | None = None
        self._wall = self._cpu = 0.0

    @property
    def running(self) -> str | None:
        """The stage being timed now."""
        return self._name

    def start(self, name: str) -> None:
        self.stop()
        self._name, self._wall, self._cpu = name, time.perf_counter(), time.thread_time()

    def stop(self) -> dict[str, float]:
        if self._name is not None:
            self.wall[self._name] = self.wall.get(self._name, 0.0) + time.perf_counter() - self._wall
            self.cpu[self._name] = self.cpu.get(self._name, 0.0) + time.thread_time() - self._cpu
            self._name = None
        return self.wall

    def add(self, other: StageClock) -> None:
        for mine, theirs in ((self.wall, other.wall), (self.cpu, other.cpu)):
            for name, seconds in theirs.items():
                mine[name] = mine.get(name, 0.0) + seconds


class FaceTracker:
    """Follows the faces a video's hole touches, running the detectors on key frames only.

    Each followed face carries landmarks in frame pixels: dlib's from its key frame at first,
    then the smoothed predicted ones; the next frame is aligned on them, carried forward by
    their trend (see :class:`LandmarkSmoother`).

    Args:
        size: the model's crop side.
        alpha: landmark smoothing, the weight of each new frame (1 = none).
        key_interval: detect again after this many frames (new faces, faces gone).
    """

    def __init__(self, size: int, alpha: float = 0.5, key_interval: int = 30) -> None:
        if not isinstance(key_interval, int) or key_interval < 1:
            raise InputError(f"key_interval must be a positive integer, not {key_interval!r}")
        self.size, self.key_interval = size, key_interval
        self.smoother = LandmarkSmoother(alpha=alpha)
        self.faces: dict[int, object] = {}  # track -> its last FaceFrame (landmarks: for alignment)
        self.since_detection: int | None = None
        self.unheld_at_detection = 0
        self.detections = 0
        self.lost = False
        # whether one face's crop holds the current frame's whole hole (see _one_face_holds)
        self.holds_hole = False
        self._tracks: list[int] = []  # the tracks of the current frame's faces

    def frames_for(
        self, image: np.ndarray, hole: np.ndarray, filled: np.ndarray | Callable[[], np.ndarray]
    ) -> list:
        """The face frames of this video frame (detecting on key frames). ``filled``: the frame
        with the hole filled by OpenCV (:func:`lafin.photo.fill_regions`), or a function that
        makes it (called on key frames only)."""
        from lafin.landmark_locator import hole_points as _hole_points, inside_crop as _inside_crop

        frames = [self._follow(f, hole, track) for track, f in self.faces.items()]
        points = _hole_points(hole)
        held = np.zeros(len(points), bool)
        for f in frames:
            held |= _inside_crop(points, f.matrix, self.size)
        unheld = int((~held).sum())
        # key frames: the first, every key_interval-th, after a face was lost, and when the hole
        # reaches (noticeably) further beyond the faces followed than at the last detection
        key = (
            self.since_detection is None
            or self.since_detection >= self.key_interval
            or self.lost
            or unheld > 1.2 * self.unheld_at_detection + 16
        )
        if key:
            frames = self._key_frame(image, hole, filled() if callable(filled) else filled)
            held[:] = False
            for f in frames:
                held |= _inside_crop(points, f.matrix, self.size)
            self.unheld_at_detection = int((~held).sum())
        else:
            self.since_detection += 1
            tracks = self.smoother.assign([f.box for f in frames])
            self.faces = dict(zip(tracks, frames))
        self._tracks = list(self.faces)
        self.holds_hole = self._one_face_holds(points, frames)
        return frames

    def _one_face_holds(self, points: np.ndarray, frames: list) -> bool:
        """Does one face's crop hold every hole pixel (``points``), 4 crop pixels inside its
        edge, and no other face's crop any? Then that face's generated crop covers the whole
        hole and its seam sees only known pixels: the hole needs no OpenCV fill first."""
        from lafin.landmark_locator import inside_crop as _inside_crop

        touching = [f for f in frames if _inside_crop(points, f.matrix, self.size).any()]
        if len(touching) != 1 or not len(points):
            return False
        matrix = np.asarray(touching[0].matrix, np.float64)
        q = points @ matrix[:, :2].T + matrix[:, 2]
        return bool(((q >= 4) & (q <= self.size - 5)).all())

    def _key_frame(self, image, hole, filled) -> list:
        from lafin.photo import find_faces

        found = find_faces(image, hole, self.size, filled=filled)
        self.detections += 1
        self.since_detection, self.lost = 1, False  # frames since the last detection, this one too
        tracks = self.smoother.assign([f.box for f in found])
        faces = {}
        for f, track in zip(found, tracks):
            old = self.faces.get(track)
            # a face followed already keeps its own (smoothed) alignment: no jump at key frames
            faces[track] = (
                self._follow(old, hole, track) if old is not None and old.landmarks is not None else f
            )
        self.faces = faces
        return list(faces.values())

    def _follow(self, frame, hole: np.ndarray, track: int):
        """The frame of a followed face in this video frame: aligned on its landmarks, carried
        forward by their trend."""
        from dataclasses import replace

        from lafin.face import box_from_landmarks
        from lafin.photo import robust_alignment

        if frame.landmarks is None:
            return frame  # no landmarks yet (a hidden face's surroundings): the same crop
        ahead = self.smoother.extrapolate(track, "points", 1)
        lm = frame.landmarks if ahead is None else ahead
        h, w = hole.shape
        xy = np.round(lm).astype(int)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        visible = inside.copy()
        visible[inside] = hole[xy[inside, 1], xy[inside, 0]] == 0
        box = box_from_landmarks(lm)
        path = frame.path if frame.path.endswith("tracked") else f"{frame.path}, tracked"
        return replace(
            frame,
            matrix=robust_alignment(lm, visible, self.size),
            path=path,
            box=(box.left, box.top, box.right, box.bottom),
            notes=list(frame.notes),
        )

    def observe(self, frames: list, points: np.ndarray) -> list:
        """Smooth the landmarks predicted (frame pixels) for ``frames`` (this video frame's, as
        :meth:`frames_for` gave them); returns the frames with the smoothed landmarks, which also
        align the faces' next frame when plausible. A face whose new landmarks would move its
        crop implausibly far in one frame (scale, turn, shift) keeps its old alignment and the
        next frame is a key frame."""
        from dataclasses import replace

        from lafin.alignment import canonical_landmarks, similarity_transform

        out = []
        for frame, track, lm in zip(frames, self._tracks, points):
            smoothed = self.smoother.smooth(track, "points", lm)
            matrix = similarity_transform(smoothed.astype(np.float64), canonical_landmarks(self.size))
            change = matrix[:, :2] @ np.linalg.inv(frame.matrix[:, :2])
            scale = float(np.sqrt(abs(np.linalg.det(change))))
            angle = float(np.degrees(np.arctan2(change[1, 0], change[0, 0])))
            centre = np.full(2, (self.size - 1) / 2)
            # where the old crop's centre goes in the new crop, in crop pixels
            shift = float(
                np.linalg.norm(change @ centre + matrix[:, 2] - change @ frame.matrix[:, 2] - centre)
            )
            if frame.landmarks is None or (  # a first guess is re-aligned freely by the predictor
                0.8 <= scale <= 1 / 0.8 and abs(angle) <= 20 and shift <= 0.25 * self.size
            ):
                self.faces[track] = replace(self.faces[track], landmarks=smoothed)
            else:
                log.debug(
                    "face %d lost (scale %.2f, turn %.0f deg, shift %.0f px)", track, scale, angle, shift
                )
                self.smoother.forget(track, "points")  # its next frame: the last plausible ones
                self.lost = True
            out.append(replace(frame, landmarks=smoothed))
        return out


class _LazyFill:
    """A video frame's OpenCV fill (:func:`lafin.photo.fill_regions`), made on the first call."""

    def __init__(self, frame: np.ndarray, hole: np.ndarray, clock: StageClock) -> None:
        self.frame, self.hole, self.clock = frame, hole, clock
        self.filled: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        from lafin.photo import fill_regions

        if self.filled is None:
            running = self.clock.running
            self.clock.start("fill")
            self.filled = fill_regions(self.frame, self.hole)
            if running is not None:
                self.clock.start(running)
        return self.filled


def _hidden_copy(frame: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """A writable copy of ``frame`` with its hole grey: what lay under the hole is never kept
    where a face's crop is to cover it."""
    content = frame.copy()
    x, y, bw, bh = cv2.boundingRect(hole)
    box = content[y : y + bh, x : x + bw]
    box[hole[y : y + bh, x : x + bw] > 0] = 128
    return content


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
        yield (np.maximum(np.maximum(frame[..., 0], frame[..., 1]), frame[..., 2]) >= 128).astype(np.uint8)


def _has_audio(path: Path) -> bool:
    exe = _ffmpeg().get_ffmpeg_exe()
    probe = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return "Audio:" in probe.stderr


def _copy_audio(video: Path, silent: Path, output: Path, container: str) -> bool:
    """Write ``silent``'s frames with ``video``'s audio into ``output``; False (and a warning)
    when ffmpeg cannot copy the audio."""
    cmd = [
        _ffmpeg().get_ffmpeg_exe(),
        "-y",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(silent),
        "-i",
        str(video),
        "-map",
        "0:v:0",
        "-map",
        "1:a?",
        "-c:v",
        "copy",
        "-c:a",
        "copy",
        "-shortest",
        "-f",
        container,
        str(output),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("could not copy the audio (%s); writing the video without it", done.stderr.strip()[-200:])
        return False
    return True


def inpaint_video(
    model,
    video: str | Path,
    mask: str | Path,
    output: str | Path,
    smoothing: float = 0.5,
    lossless: bool = False,
    progress: bool = True,
    batch: int = 8,
    key_interval: int = 30,
) -> VideoReport:
    """Inpaint every frame of ``video`` (photo mode) and write ``output`` with the input's audio.

    Args:
        model: a :class:`lafin.pipeline.LaFInModel`.
        mask: a mask image (the same hole in every frame) or a mask video (frame by frame).
        smoothing: landmark smoothing, the weight of each new frame (1 = none).
        lossless: encode losslessly (libx264rgb, qp 0) so known pixels stay bit-identical;
            otherwise H.264 at high quality (crf 17), as players expect.
        batch: frames that go through the networks together.
        key_interval: run the face detectors again after this many frames (see module docstring).
    """
    from tqdm import tqdm

    from lafin.photo import fill_regions
    from lafin.pipeline import FramedPhoto

    if not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, not {batch!r}")
    ff = _ffmpeg()
    video, output = Path(video), Path(output)
    if not video.is_file():
        raise InputError(f"video not found: {video}")
    if any(same_file(output, given) for given in (video, Path(mask))):
        raise InputError(f"refusing to overwrite an input file: {output}")
    container = container_for(output)
    reader = ff.read_frames(str(video))
    try:
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise InputError(f"cannot read video {video}: {exc}") from None
    w, h = meta["size"]
    fps = float(meta.get("fps") or 25.0)
    n_frames = int(round(meta.get("duration", 0) * fps)) or None
    masks = _mask_source(mask, (w, h))
    tracker = FaceTracker(model.image_size, alpha=smoothing, key_interval=key_interval)
    faces_per_frame: list[int] = []
    landmarks: list[list[np.ndarray]] = []
    reader_clock, render_clock = StageClock(), StageClock()  # one per thread
    opencv_fills = 0

    def render(batch_items: list) -> None:
        """The networks and the paste for a batch, then its frames to the encoder (in order)."""
        photos = [p for p in batch_items if isinstance(p, FramedPhoto)]
        # the landmarks are the tracker's (smoothed); the networks take the batch at once
        reports = iter(model.render_photos(photos, stages=render_clock, given=True) if photos else [])
        for item in batch_items:
            if isinstance(item, FramedPhoto):
                found = next(reports)
                if item.covered is not None:  # no OpenCV fill was made: did the face cover it all?
                    rest = (item.hole > 0) & ~item.covered
                    if rest.any():
                        render_clock.start("fill")
                        item.content[rest] = fill_regions(item.image, item.hole)[rest]
                image = item.content
            else:
                found, image = [], item
            render_clock.start("encode")
            writer.send(np.ascontiguousarray(image))
            faces_per_frame.append(len(found))
            landmarks.append([r.landmarks for r in found])
        render_clock.stop()

    # the output appears whole or not at all: the frames go to a temporary file beside it, the
    # audio is muxed into another, renamed into place at the end (an interruption or an error
    # leaves neither behind)
    with atomic_write(output) as final:
        silent = final.with_name(final.name[: -len(".tmp")] + ".video.tmp")
        try:
            writer = open_writer(silent, (w, h), fps, lossless, container)
            pending: list[FramedPhoto | np.ndarray] = []  # a batch: frames with a hole, or plain frames
            running: Future | None = None
            frames_in = iter(reader)
            bar = tqdm(total=n_frames, desc="frames", disable=not progress, unit="frame")
            # one worker: batches are rendered and written in the order they were handed over
            worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lafin-video")
            try:
                while True:
                    reader_clock.start("decode")
                    raw = next(frames_in, None)
                    if raw is None:
                        break
                    frame = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
                    reader_clock.start("mask")
                    try:
                        hole = next(masks)
                    except StopIteration:
                        hole = np.zeros((h, w), np.uint8)  # the mask video ended: keep frames as they are
                    if not hole.any():
                        pending.append(frame)
                    else:
                        # the hole pre-filled by OpenCV: what background pixels keep, and what a
                        # face's seam is harmonised against (nothing under the hole is read); made
                        # only when needed (key frames; a hole that no single face holds)
                        fill = _LazyFill(frame, hole, reader_clock)
                        reader_clock.start("detect/track")
                        frames = tracker.frames_for(frame, hole, fill)
                        if tracker.holds_hole and fill.filled is None:
                            content, covered = _hidden_copy(frame, hole), np.zeros((h, w), bool)
                        else:
                            content, covered = fill(), None
                            opencv_fills += 1
                        reader_clock.start("landmarks")
                        frames = tracker.observe(frames, model.predict_face_landmarks(frame, hole, frames))
                        pending.append(FramedPhoto(frame, hole, content, frames, covered))
                    reader_clock.stop()
                    if len(pending) == batch:
                        if running is not None:
                            running.result()  # one batch rendering while the next is prepared
                            bar.update(batch)
                        running, pending = worker.submit(render, pending), []
                if running is not None:
                    running.result()
                    bar.update(batch)
                render(pending)
                bar.update(len(pending))
            finally:
                worker.shutdown(wait=True)
                bar.close()
                writer.close()
            log.info("faces detected on %d of %d frames", tracker.detections, len(faces_per_frame))
            audio = _has_audio(video) and _copy_audio(video, silent, final, container)
            if not audio:
                os.replace(silent, final)
        finally:
            silent.unlink(missing_ok=True)
    reader_clock.add(render_clock)
    return VideoReport(
        len(faces_per_frame),
        fps,
        (w, h),
        faces_per_frame,
        audio,
        output,
        landmarks,
        tracker.detections,
        reader_clock.wall,
        reader_clock.cpu,
        opencv_fills,
    )
