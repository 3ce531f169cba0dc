"""Analyzer: frame pixels -> list[FaceResult]. Every shape (CLI, embedded run, detector
service, gateway) goes through it.

>>> from emolens import Analyzer  # doctest: +SKIP
>>> faces = Analyzer().analyze(cv2.imread("photo.jpg"))  # doctest: +SKIP
>>> [(f.label, round(f.smile, 2)) for f in faces]  # doctest: +SKIP
[('happy', 0.97)]
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from emolens import logs
from emolens.errors import InputError, ModelError
from emolens.inference import EMOTION, SMILE, Classifier, ModelInfo, make_classifier, predict_many, softmax
from emolens.results import EMOTIONS, FaceResult
from emolens.settings import Settings
from emolens.track import Tracker, TrackerState, unique_first_id
from emolens.vision.align import align_face
from emolens.vision.detect import BlazeFaceDetector, Detection, FaceDetector, make_detector
from emolens.vision.follow import REGION_MIN_SCORE, FaceFollower, confidence, second_opinion
from emolens.vision.preprocess import preprocess
from emolens.vision.quality import FACENESS_RAMP, STILL_FACENESS_RAMP, Quality, assess

log = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over calls (for benchmarks and logs)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    frames: int = 0
    faces: int = 0

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] += dt

    def per_frame_ms(self) -> dict[str, float]:
        return {k: 1000 * v / max(self.frames, 1) for k, v in self.seconds.items()}


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Accept gray, BGR, BGRA, 16-bit or float images; return uint8 BGR. Raises InputError."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise InputError("empty image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(f"unsupported image shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class Analyzer:
    """Detect -> quality -> align -> preprocess -> classify (one batch per model per call).

    With ``track=True`` (video), faces get track ids and their probabilities are smoothed
    per track, and with ``settings.detect_interval`` > 0 the full detector runs every that
    many seconds of video while a :class:`FaceFollower` follows the faces between (frames
    without a timestamp are taken ``1 / settings.fps`` apart); call ``reset()`` between
    unrelated clips (the first frame after it gets full detection, so a still image analysed
    after ``reset()`` always does). With the follower on, a followed face (not a fresh detection)
    is classified again only once ``settings.classify_interval`` seconds have passed since its
    last classification or its box moved or scaled a lot (``_Classified.holds``); between, it
    keeps that classification's probabilities (its quality is still assessed on every frame).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        classifier: Classifier | None = None,
        detector: FaceDetector | None = None,
        track: bool = False,
        unique_track_ids: bool = False,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.classifier = classifier or make_classifier(self.settings.inference, threads=self.settings.threads)
        self.detector = detector or make_detector(
            self.settings.detector,
            min_score=self.settings.min_detection_score,
            threads=self.settings.threads,
            min_face_px=self.settings.min_face_px,
        )
        self.smile_info = self.classifier.info(SMILE)
        self.emotion_info = self.classifier.info(EMOTION)
        if tuple(self.emotion_info.labels) != EMOTIONS:
            raise ModelError(f"emotion model labels {self.emotion_info.labels} differ from {EMOTIONS}")
        self.track = track
        self.unique_track_ids = unique_track_ids
        self.tracker = self._new_tracker() if track else None
        self.checker = self._new_checker(self.settings.threads)
        self.follower = self._new_follower() if track and self.settings.detect_interval > 0 else None
        # the last classification of each face of the previous frame (follower on only)
        self._classified: list[_Classified] = []
        self.times = StageTimes()

    def _new_tracker(self) -> Tracker:
        first = unique_first_id() if self.unique_track_ids else 1
        return Tracker(smoothing=self.settings.smoothing, first_id=first)

    def _new_follower(self) -> FaceFollower | None:
        """Short-range BlazeFace (the checker) for the regions; without LiteRT (the Haar
        fallback) every frame gets full detection."""
        if self.checker is None:
            logs.event(log.warning, "detect_interval_off", reason="no region detector (LiteRT missing)")
            return None
        return FaceFollower(
            self.detector,
            self.checker,
            self.settings.detect_interval,
            fps=self.settings.fps,
            tile_interval_s=self.settings.tile_interval,
        )

    @staticmethod
    def _new_checker(threads: int) -> FaceDetector | None:
        """Short-range BlazeFace that reads a second score for each freshly detected face (it
        reports down to REGION_MIN_SCORE, so the score itself is the opinion) and follows faces
        between full detections; None without LiteRT."""
        try:
            return BlazeFaceDetector("short", min_score=REGION_MIN_SCORE, threads=threads)
        except ModelError:
            return None

    def _confidence(self, frame: np.ndarray, det: Detection) -> float:
        """The lowest of the detector's score and two more opinions on regions around the face
        (the follower reads both itself: see ``FaceFollower.confidences``)."""
        if self.checker is None:
            return det.score
        opinion = second_opinion(frame, det, self.checker)
        return confidence(frame, det, self.checker, opinion) if opinion > 0 else 0.0

    def snapshot(self) -> _Saved:
        """The per-camera state a batch changes (tracks, followed faces, kept classifications)."""
        return _Saved(
            None if self.tracker is None else self.tracker.snapshot(),
            None if self.follower is None else self.follower.snapshot(),
            list(self._classified),
        )

    def restore(self, saved: _Saved) -> None:
        """Back to ``saved``: a batch whose model call failed left no trace, so its retry sees
        the frames exactly as the first attempt did and gives what a run without the failure
        gives (docs/reliability.md, "Restarts do not change the numbers")."""
        if self.tracker is not None and saved.tracker is not None:
            self.tracker.restore(saved.tracker)
        if self.follower is not None and saved.follower is not None:
            self.follower.restore(saved.follower)
        self._classified = list(saved.classified)

    def warm(self, frames: Sequence[Sequence[FaceResult]]) -> None:
        """Replay faces this camera's previous analyzer gave, oldest first (one sequence of
        :class:`FaceResult` per frame, with their track ids and smoothed probabilities) into
        the tracker, which then goes on from them (``Tracker.observe``)."""
        if self.tracker is None:
            return
        for faces in frames:
            kept = [f for f in faces if f.track_id is not None]
            ids = [f.track_id for f in kept if f.track_id is not None]
            probs = np.array([[f.smile, *(f.emotions[e] for e in EMOTIONS)] for f in kept], np.float64)
            self.tracker.observe([f.box for f in kept], ids, probs.reshape(len(kept), 1 + len(EMOTIONS)))

    def reset(self) -> None:
        if self.tracker is not None:
            self.tracker = self._new_tracker()
        if self.follower is not None:
            self.follower.reset()
        self._classified = []

    def analyze(self, image: np.ndarray, timestamp: float | None = None) -> list[FaceResult]:
        """Faces of one image or video frame (gray, BGR or BGRA) taken at ``timestamp`` seconds
        (video; any origin, see ``FaceFollower.detect``)."""
        return self.analyze_batch([image], None if timestamp is None else [timestamp])[0]

    def analyze_batch(
        self, images: Sequence[np.ndarray], timestamps: Sequence[float] | None = None
    ) -> list[list[FaceResult]]:
        """Faces of many images or consecutive frames (taken at ``timestamps`` seconds, for the
        detection interval); all their faces share one model call."""
        return analyze_together([(self, images, timestamps)])[0]

    def _prepare(self, images: Sequence[np.ndarray], timestamps: Sequence[float] | None) -> _Prepared:
        """Decode, detect (the follower's state runs frame to frame), assess and crop."""
        t0 = time.perf_counter()
        frames = [to_bgr(im) for im in images]
        if timestamps is not None and len(timestamps) != len(frames):
            raise InputError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        t1 = time.perf_counter()
        if any(c.probs is None for c in self._classified):  # the model call after the last one failed
            self._classified = []
        prepared = _Prepared()
        confidences: list[float] = []
        grays: list[np.ndarray | None] = []
        for i, f in enumerate(frames):
            gray = None
            if self.follower is not None:
                # one gray copy of the frame: the follower's motion thumbnail and the crops share it
                gray = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
                dets = self.follower.detect(f, None if timestamps is None else timestamps[i], gray=gray)
                confidences.extend(self.follower.confidences)
                prepared.origins.append(list(self.follower.origins))
                prepared.times.append(self.follower.now or 0.0)
            else:
                dets = self.detector.detect(f)
                confidences.extend(self._confidence(f, d) for d in dets)
                prepared.origins.append([None] * len(dets))
                prepared.times.append(0.0)
            prepared.detections.append(dets)
            grays.append(gray)
        t2 = time.perf_counter()
        for f, gray, dets, origins, now in zip(
            frames, grays, prepared.detections, prepared.origins, prepared.times, strict=True
        ):
            if not dets:
                self._classified = []
                continue
            if gray is None:
                gray = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
            classified: list[_Classified] = []
            for det, origin in zip(dets, origins, strict=True):
                kept = self._keeps(origin, det, now)
                if kept is None:
                    kept = _Classified(now, det.box, slot=len(prepared.smile_crops))
                    prepared.pending.append(kept)
                    prepared.smile_crops.append(self._crop(gray, det, self.smile_info))
                    prepared.emotion_crops.append(self._crop(gray, det, self.emotion_info))
                classified.append(kept)
                prepared.classified.append(kept)
                prepared.qualities.append(
                    assess(
                        self._box_pixels(gray, det),
                        det.landmarks,
                        det.width,
                        confidences[len(prepared.qualities)],
                        FACENESS_RAMP if self.track else STILL_FACENESS_RAMP,
                    )
                )
            if self.follower is not None:
                self._classified = classified
        t3 = time.perf_counter()
        for stage, dt in (("decode", t1 - t0), ("detect", t2 - t1), ("align", t3 - t2)):
            self.times.add(stage, dt)
        self.times.frames += len(frames)
        self.times.faces += len(prepared.qualities)
        return prepared

    def _keeps(self, origin: int | None, det: Detection, now: float) -> _Classified | None:
        """The classification a followed face keeps (None: classify it)."""
        interval = self.settings.classify_interval
        if origin is None or interval <= 0 or origin >= len(self._classified):
            return None
        last = self._classified[origin]
        return last if last.holds(det.box, now, interval) else None

    def _finish(self, prepared: _Prepared, smile_p: np.ndarray, emo_p: np.ndarray) -> list[list[FaceResult]]:
        """Track, smooth and build the results of ``prepared`` from its faces' probabilities
        (``smile_p``, ``emo_p``: of its crops; faces that kept a classification reuse it)."""
        t0 = time.perf_counter()
        for c in prepared.pending:
            c.probs = np.concatenate([smile_p[c.slot, 1:2], emo_p[c.slot]])
        out: list[list[FaceResult]] = []
        k = 0
        width = 1 + len(EMOTIONS)
        for dets in prepared.detections:
            probs = np.array([c.probs for c in prepared.classified[k : k + len(dets)]], np.float32).reshape(-1, width)
            ids: list[int | None] = [None] * len(dets)
            if self.tracker is not None:
                tracked = self.tracker.update([d.box for d in dets], probs)
                probs = np.stack([self.tracker.smoothed(i) for i in tracked]) if dets else probs
                ids = list(tracked)
            faces = []
            for j, det in enumerate(dets):
                q = prepared.qualities[k + j]
                faces.append(
                    FaceResult(
                        box=det.box,
                        landmarks=[(float(x), float(y)) for x, y in det.landmarks],
                        detection_score=det.score,
                        quality=q.score,
                        low_quality=not q.usable(self.settings.quality_threshold),
                        smile=float(probs[j, 0]),
                        emotions={e: float(p) for e, p in zip(EMOTIONS, probs[j, 1:], strict=True)},
                        track_id=ids[j],
                        yaw_deg=q.yaw_deg,
                    )
                )
            k += len(dets)
            out.append(faces)
        self.times.add("track", time.perf_counter() - t0)
        return out

    def _crop(self, gray: np.ndarray, det: Detection, info: ModelInfo) -> np.ndarray:
        crop = align_face(gray, det.box, info.crop_box, info.size)
        return preprocess(crop, self.settings.preprocess, det.width, float(info.crop_box[2]))

    @staticmethod
    def _box_pixels(gray: np.ndarray, det: Detection) -> np.ndarray:
        x0, y0, x1, y1 = (round(v) for v in det.box)
        return gray[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]


# A followed face keeps its classification while its box centre stays within this share of its
# width, and its width within this factor, of where it was classified: a face that turned or
# came closer is looked at again at once.
KEEP_SHIFT = 0.25
KEEP_SCALE = 1.2


@dataclass
class _Classified:
    """One classification of a face: when (seconds of video), where (box), and its
    probabilities (smile, then the emotions; set once the batch's model call returns, the
    crop's index in that batch being ``slot``)."""

    at: float
    box: tuple[float, float, float, float]
    slot: int = -1
    probs: np.ndarray | None = None

    def holds(self, box: tuple[float, float, float, float], now: float, interval: float) -> bool:
        """Whether a followed face at ``box`` at ``now`` may keep this classification."""
        if not 0 <= now - self.at < interval - 1e-3:
            return False
        w0, w1 = self.box[2] - self.box[0], box[2] - box[0]
        if w0 <= 0 or w1 <= 0 or not 1 / KEEP_SCALE <= w1 / w0 <= KEEP_SCALE:
            return False
        dx = (box[0] + box[2] - self.box[0] - self.box[2]) / 2
        dy = (box[1] + box[3] - self.box[1] - self.box[3]) / 2
        return float(np.hypot(dx, dy)) <= KEEP_SHIFT * w0


@dataclass(frozen=True)
class _Saved:
    """An analyzer's per-camera state before a batch (``Analyzer.snapshot``); the
    classifications in ``classified`` are complete (their ``probs`` set) and never change."""

    tracker: TrackerState | None
    follower: dict[str, Any] | None
    classified: list[_Classified]


@dataclass
class _Prepared:
    """One camera's frames between detection and classification: per face, its quality and
    its classification (``classified``; those in ``pending`` wait for this batch's model call
    on the crops)."""

    detections: list[list[Detection]] = field(default_factory=list)
    origins: list[list[int | None]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    classified: list[_Classified] = field(default_factory=list)
    pending: list[_Classified] = field(default_factory=list)
    qualities: list[Quality] = field(default_factory=list)
    smile_crops: list[np.ndarray] = field(default_factory=list)
    emotion_crops: list[np.ndarray] = field(default_factory=list)


def analyze_together(
    jobs: Sequence[tuple[Analyzer, Sequence[np.ndarray], Sequence[float] | None]],
) -> list[list[list[FaceResult]]]:
    """Frames of several cameras, each ``(analyzer, frames, timestamps)`` with the camera's own
    Analyzer (its tracker and follower): detection per camera, then ONE call per model for the
    faces of every camera whose analyzers share a classifier, then tracking per camera. What
    each camera gets is what its own ``analyze_batch`` would give; the models see one batch.

    All or nothing: when anything raises (the models are away, one frame the detector cannot
    take), every analyzer is put back as it was before the call, so a retry of the same frames
    (or of a part of them) gives what a call that never failed gives.

    >>> analyze_together([(Analyzer(), [frame], None)])  # doctest: +SKIP
    [[[FaceResult(...)]]]
    """
    saved = [analyzer.snapshot() for analyzer, _, _ in jobs]
    try:
        return _analyze_together(jobs)
    except BaseException:
        for (analyzer, _, _), state in reversed(list(zip(jobs, saved, strict=True))):
            analyzer.restore(state)
        raise


def _analyze_together(
    jobs: Sequence[tuple[Analyzer, Sequence[np.ndarray], Sequence[float] | None]],
) -> list[list[list[FaceResult]]]:
    prepared = [analyzer._prepare(images, stamps) for analyzer, images, stamps in jobs]
    probs: list[tuple[np.ndarray, np.ndarray]] = [
        (np.zeros((0, 2), np.float32), np.zeros((0, len(EMOTIONS)), np.float32))
    ] * len(jobs)
    by_classifier: dict[int, list[int]] = defaultdict(list)
    for i, (analyzer, _, _) in enumerate(jobs):
        if prepared[i].smile_crops:
            by_classifier[id(analyzer.classifier)].append(i)
    for members in by_classifier.values():
        t0 = time.perf_counter()
        classifier = jobs[members[0]][0].classifier
        logits = predict_many(
            classifier,
            {
                SMILE: np.stack([c for i in members for c in prepared[i].smile_crops])[:, None].astype(np.float32),
                EMOTION: np.stack([c for i in members for c in prepared[i].emotion_crops])[:, None].astype(np.float32),
            },
        )
        smile_p, emo_p = softmax(logits[SMILE]), softmax(logits[EMOTION])
        spent, total = time.perf_counter() - t0, len(smile_p)
        k = 0
        for i in members:
            n = len(prepared[i].smile_crops)
            probs[i] = (smile_p[k : k + n], emo_p[k : k + n])
            k += n
            jobs[i][0].times.add("classify", spent * n / total)  # the batch's time, shared by faces
    return [analyzer._finish(prepared[i], *probs[i]) for i, (analyzer, _, _) in enumerate(jobs)]
