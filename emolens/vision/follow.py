"""Detection interval with tracking: the full detector every ``interval`` frames, and between
them each face followed cheaply in a region around where it is expected.

The full detector (BlazeFace short range on the frame and its tiles, plus full range) costs
five network runs a frame. Between two full detections a face moves little, so one
short-range run on a square region about twice its size, centred on where its last motion
puts it, finds it again for a fraction of the cost: in that region the face fills half the
detector's input, the scale short range is best at. The full detector runs again at once
when a followed face is lost (it left, turned away, or something covered it), when something
moved outside the followed faces and their bodies (someone may have walked in), or when the
picture changed as a whole (a scene cut, seen as a jump in the frame's brightness
histogram), and in any case once ``interval_s`` seconds have passed since the last one: a face
that turns towards the camera without moving, or that another face uncovers as it walks on, may
go unseen that long. The interval is in seconds, not frames, because that time is what bounds
the faces missed: a camera sampled at 5 fps and a 15 fps video miss the same share.

Each face is re-found with its own score threshold, taken from how the region detector scored
it at its last full detection (``second_opinion``, which is also the quality score's faceness
input): a blurred face the full detector finds at 0.55 and the region detector scores 0.42 is
followed, instead of being declared lost on every frame.

>>> import numpy as np
>>> from emolens.vision.detect import make_detector
>>> follower = FaceFollower(make_detector("blazeface"), make_detector("blazeface-short", min_score=0.05), 0.33)
>>> follower.detect(np.zeros((480, 640, 3), np.uint8), timestamp=0.0), follower.last_pass
([], 'full')
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from emolens.errors import ConfigError
from emolens.geometry import centre, overlap_of_smaller, overlaps
from emolens.vision.detect import Detection, FaceDetector, SmallFaceDetector, Tile

log = logging.getLogger(__name__)

# The region detector's score a followed face needs: FOLLOW_RATIO times its score in the region
# at its last full detection, within FOLLOW_SCORES. A face was there a moment ago, so less
# evidence than the full detector's 0.5 suffices; a face the region detector scores low from
# the start (blurred, in the background) keeps a threshold it can meet. Measured: see
# docs/architecture.md (Detection).
FOLLOW_RATIO = 0.7
FOLLOW_SCORES = (0.25, 0.5)
# The region detector's own floor: it must report scores that low for the thresholds above,
# and for the second opinion (which reads the score itself).
REGION_MIN_SCORE = 0.05

# Histogram of a frame shrunk to this size: cheap, and blind to noise and small motion.
_THUMB = (80, 60)
_BINS = 32
_MOTION_LEVEL = 24  # gray levels a thumbnail pixel must change by to count as motion


def thumbnail(image: np.ndarray) -> np.ndarray:
    """The frame in gray at 1/8 of 640x480: cheap, and blind to noise and small motion."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(gray, _THUMB, interpolation=cv2.INTER_AREA)


def brightness_histogram(thumb: np.ndarray) -> np.ndarray:
    """Normalised gray-level histogram (32 bins) of a thumbnail."""
    hist = np.bincount((thumb.ravel() >> 3).astype(np.intp), minlength=_BINS).astype(np.float32)
    return hist / hist.sum()


def histogram_change(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the pixels that moved to another brightness bin (total variation, 0..1)."""
    return float(np.abs(a - b).sum() / 2)


@dataclass(frozen=True)
class _Found:
    detection: Detection
    confidence: float  # what the quality score's faceness reads (see FaceFollower.confidences)
    min_score: float  # the region score that re-finds it in the next frame
    fresh: float  # its confidence at its last full detection
    calibration: _Calibration  # the full detector's framing on the region detector's


@dataclass
class _Followed:
    detection: Detection
    velocity: np.ndarray  # box centre motion, pixels per frame
    found: _Found


def follow_threshold(opinion: float) -> float:
    """The region score a face needs to stay followed, from its region score at detection."""
    return float(np.clip(FOLLOW_RATIO * opinion, *FOLLOW_SCORES))


def region_look(image: np.ndarray, det: Detection, detector: FaceDetector, region: float = 2.0) -> Detection | None:
    """The face ``detector`` finds with the best score in a square region ``region`` times the
    size of ``det`` around it, with its centre within a third of the face width of ``det``'s
    centre and a width within 0.6-1.6x (None if none), in frame pixels: a second look at the
    face at another scale."""
    h, w = image.shape[:2]
    width = max(det.width, det.height)
    middle = centre(det.box)
    half = region * width / 2
    x0, y0 = int(max(middle[0] - half, 0)), int(max(middle[1] - half, 0))
    x1, y1 = int(min(middle[0] + half, w)), int(min(middle[1] + half, h))
    best: Detection | None = None
    for cand in detector.detect(image[y0:y1, x0:x1]):
        cand = cand.shifted(x0, y0)
        near = float(np.hypot(*(centre(cand.box) - middle))) < width / 3
        if near and 0.6 <= cand.width / max(det.width, 1e-6) <= 1.6 and (best is None or cand.score > best.score):
            best = cand
    return best


def second_opinion(image: np.ndarray, det: Detection, detector: FaceDetector, region: float = 2.0) -> float:
    """The score of :func:`region_look`'s face (0.0 if none)."""
    found = region_look(image, det, detector, region)
    return 0.0 if found is None else found.score


# A third look, on a region only this much larger than the face: there the face fills most of
# the short-range detector's input, where a real face scores as high as anywhere and a cat's
# face does not. Measured (scikit-image's cat as PNG, JPEG q75/q90, scaled 0.75-2x: 0.41-0.54;
# 79 pasted val faces: 0.60 and up, 0.70 at the 5th percentile). Without it the cat as
# PIL saves a JPEG (q75) came out a usable "happy" face (quality 0.41).
TIGHT_REGION = 1.4


def confidence(image: np.ndarray, det: Detection, detector: FaceDetector, opinion: float) -> float:
    """What the quality score's faceness reads for a freshly detected face: the lowest of the
    detector's score, its ``opinion`` (the score at ``second_opinion``'s region) and the
    score on the tighter ``TIGHT_REGION``."""
    return min(det.score, opinion, second_opinion(image, det, detector, TIGHT_REGION))


@dataclass(frozen=True)
class _Calibration:
    """How the full detector's box of a face sits on the region detector's box of it: the two
    detectors frame a face differently (the region one up to 20% larger on small faces), and
    the crops, the size term of the quality score and the motion prediction all expect the
    full detector's framing."""

    scale: tuple[float, float] = (1.0, 1.0)  # full box width, height / region box width, height
    offset: tuple[float, float] = (0.0, 0.0)  # full box centre - region box centre, in region box widths

    @staticmethod
    def between(full: Detection, region: Detection | None) -> _Calibration:
        if region is None or region.width <= 0 or region.height <= 0:
            return _Calibration()
        d = centre(full.box) - centre(region.box)
        return _Calibration(
            (full.width / region.width, full.height / region.height),
            (float(d[0]) / region.width, float(d[1]) / region.width),
        )

    def apply(self, region: Detection) -> Detection:
        cx, cy = centre(region.box) + np.array(self.offset) * region.width
        hw, hh = region.width * self.scale[0] / 2, region.height * self.scale[1] / 2
        return Detection((cx - hw, cy - hh, cx + hw, cy + hh), region.score, region.landmarks)


class FaceFollower:
    """A :class:`FaceDetector` for consecutive frames of one camera (stateful: one per camera,
    ``reset()`` between unrelated clips).

    ``full`` finds faces anywhere; ``local`` (BlazeFace short range, reporting scores down to
    ``REGION_MIN_SCORE``) re-finds one face in a region ``region`` times its size around its
    predicted box, and gives each freshly detected face its second opinion. ``interval_s=0``
    runs ``full`` on every frame. A face counts as followed when the local detector finds a
    face in its region, scoring at least that face's threshold (``follow_threshold``), whose
    centre lies within ``max_shift`` face widths of the prediction and whose width is within
    ``max_scale`` of the last one; otherwise it is lost and the frame gets a full detection.
    ``scene_cut`` is the histogram change (0..1) that forces a full detection, and
    ``motion_pixels`` the number of thumbnail pixels (80x60) that changed outside the followed
    faces and their bodies that does (12 such pixels are about a 30 px face at 640x480).

    Frames without a timestamp are taken to come ``1 / fps`` seconds apart.

    After each ``detect``, ``last_pass`` says what ran (``full`` or ``follow``) and
    ``confidences`` holds, per face found, the lower of its detection score and its region
    score (fresh faces) or its region score (followed faces); ``origins`` holds, per face found,
    the index of the face it was followed from among the previous frame's faces (None: a fresh
    detection); ``now`` is the frame's time; ``passes`` counts the passes (``full`` with the
    reason, and ``follow``).
    """

    def __init__(
        self,
        full: FaceDetector,
        local: FaceDetector,
        interval_s: float,
        *,
        fps: float = 5.0,
        region: float = 2.0,
        max_shift: float = 0.5,
        max_scale: float = 1.5,
        scene_cut: float = 0.25,
        motion_pixels: int = 12,
        body: float = 2.0,
        tile_interval_s: float = 3.0,
    ) -> None:
        if not interval_s >= 0:
            raise ConfigError(f"detection interval must be 0 s (every frame) or more, got {interval_s}")
        if not fps > 0:
            raise ConfigError(f"frame rate must be positive, got {fps}")
        self.full, self.local = full, local
        self.interval_s, self.frame_s = interval_s, 1.0 / fps
        self.region, self.max_shift, self.max_scale, self.scene_cut = region, max_shift, max_scale, scene_cut
        self.motion_pixels, self.body = motion_pixels, body
        if not tile_interval_s >= 0:
            raise ConfigError(f"tile interval must be 0 s (every full detection) or more, got {tile_interval_s}")
        self.tile_interval_s = tile_interval_s
        self.tiles_scanned: Counter[str] = Counter()
        self.name = f"{full.name}/{interval_s:g}s+follow-{local.name}"
        self.passes: Counter[str] = Counter()
        self.last_pass = ""
        self.confidences: list[float] = []
        self.origins: list[int | None] = []
        self.reset()

    # what detect() changes: saved before a batch, put back when the batch's model call failed
    _STATE = (
        "_faces", "_full_at", "_sweep_at", "_motion", "_now", "_thumb", "_hist",
        "last_pass", "confidences", "origins",
    )  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        """The follower's state between frames (its faces, clocks, last thumbnail and counters),
        to :meth:`restore` when the frames it has just seen must be seen again (a retried batch):
        ``detect`` replaces these values and never changes one in place."""
        saved: dict[str, Any] = {name: getattr(self, name) for name in self._STATE}
        saved["passes"], saved["tiles_scanned"] = Counter(self.passes), Counter(self.tiles_scanned)
        return saved

    def restore(self, saved: dict[str, Any]) -> None:
        for name, value in saved.items():
            setattr(self, name, Counter(value) if isinstance(value, Counter) else value)

    def reset(self) -> None:
        """Forget the faces and the last frame: the next frame gets a full detection."""
        self._faces: list[_Followed] = []
        self._full_at = 0.0
        self._sweep_at: float | None = None
        self._motion: np.ndarray | None = None
        self._now: float | None = None
        self._thumb: np.ndarray | None = None
        self._hist: np.ndarray | None = None

    def detect(
        self, image: np.ndarray, timestamp: float | None = None, *, gray: np.ndarray | None = None
    ) -> list[Detection]:
        """Faces in ``image``, a frame taken at ``timestamp`` seconds (any origin; None: one
        frame period after the previous frame); ``gray``, the frame in gray when the caller
        has it already (the pipeline cuts its crops from it), saves converting it again."""
        if timestamp is None:
            timestamp = 0.0 if self._now is None else self._now + self.frame_s
        thumb = thumbnail(image if gray is None else gray)
        hist = brightness_histogram(thumb)
        # one motion mask a frame: it decides a full detection for motion and, then, the tiles to scan
        self._motion = (
            None if self._thumb is None or self._thumb.shape != thumb.shape else self._moved(thumb, *image.shape[1::-1])
        )
        reason = self._full_reason(hist, timestamp)
        self._thumb, self._hist, self._now = thumb, hist, timestamp
        followed: list[tuple[int, _Found]] | None = None
        if reason is None:
            followed = self._follow(image)
            if followed is None:
                reason = "lost"
        if followed is None:
            found = self._detect_fully(image, self._tiles_to_scan(image, timestamp, reason))
            self._full_at = timestamp
            self.passes[f"full_{reason}"] += 1
            self.last_pass = "full"
            self.origins = [None] * len(found)
        else:
            found = [f for _, f in followed]
            self.origins = [j for j, _ in followed]
            self.passes["follow"] += 1
            self.last_pass = "follow"
        self.confidences = [f.confidence for f in found]
        self._remember(found)
        return [f.detection for f in found]

    def _tiles_to_scan(self, image: np.ndarray, timestamp: float, reason: str | None) -> list[Tile] | None:
        """The small-face tiles this full detection scans (None: all of them). Every tile once
        ``tile_interval_s`` has passed since the last sweep (and on a first frame); between, the
        tiles where something moved outside the followed faces (none after a scene cut, where
        everything changed), and the tile holding each followed face too small for the
        whole-frame pass (it must be found again, or the full detection would drop it)."""
        if not isinstance(self.full, SmallFaceDetector):
            return None
        h, w = image.shape[:2]
        every = self.full.tiles(w, h)
        due = self._sweep_at is None or self._period(timestamp) > self._period(self._sweep_at)
        if due or reason == "first" or self._motion is None:
            self._sweep_at = timestamp
            self.tiles_scanned["sweep"] += len(every)
            return None
        chosen: dict[int, Tile] = {}
        # after a scene cut (the light changed, say) every pixel moved: motion tells nothing
        ty, tx = np.nonzero(self._motion) if reason != "scene_cut" else (np.zeros(0), np.zeros(0))
        mx, my = (tx + 0.5) * w / self._motion.shape[1], (ty + 0.5) * h / self._motion.shape[0]
        for i, t in enumerate(every):
            if np.count_nonzero((mx >= t.x0) & (mx < t.x1) & (my >= t.y0) & (my < t.y1)) >= 2:
                chosen[i] = t
        for face in self._faces:
            box = face.detection.box
            fw = box[2] - box[0]
            cx, cy = centre(box) + face.velocity
            fits = [
                (float(np.hypot(cx - (t.x0 + t.x1) / 2, cy - (t.y0 + t.y1) / 2)), i)
                for i, t in enumerate(every)
                if t.min_face / 1.3 <= fw <= t.max_face and t.holds(cx, cy)
            ]
            if fits:
                i = min(fits)[1]
                chosen[i] = every[i]
        self.tiles_scanned["targeted"] += len(chosen)
        return list(chosen.values())

    def _period(self, timestamp: float) -> float:
        """Which ``tile_interval_s`` period of the clock ``timestamp`` falls in: sweeps are due
        once per period of the video's own clock, not ``tile_interval_s`` after the last one,
        so a detector that took a camera over mid-stream (a restart, a rebalance) sweeps on the
        frames its predecessor would have, and finds the same small faces at the same frames.
        A little slack: 5 frames at 15 fps are 0.333 s on a clock that rounds to milliseconds."""
        if self.tile_interval_s <= 0:
            return timestamp  # every full detection sweeps
        return float(np.floor((timestamp + 1e-3) / self.tile_interval_s))

    def _detect_fully(self, image: np.ndarray, tiles: list[Tile] | None = None) -> list[_Found]:
        out = []
        if isinstance(self.full, SmallFaceDetector):
            found = self.full.detect(image, tiles, known=[f.detection.box for f in self._faces])
        else:
            found = self.full.detect(image)
        for det in found:
            look = region_look(image, det, self.local, self.region)
            opinion = 0.0 if look is None else look.score
            sure = confidence(image, det, self.local, opinion) if opinion > 0 else 0.0
            out.append(_Found(det, sure, follow_threshold(opinion), sure, _Calibration.between(det, look)))
        return out

    def _full_reason(self, hist: np.ndarray, timestamp: float) -> str | None:
        """Why this frame needs a full detection (None: follow), from ``self._motion`` (this
        frame's, None for a first frame or a new frame size) and the last frame's state."""
        if self._motion is None or self._hist is None or self._now is None:
            return "first"
        if timestamp < self._now:  # another clip, or a clock that went back
            return "first"
        # a little slack: 5 frames at 15 fps are 0.333 s on a clock that rounds to milliseconds
        if timestamp - self._full_at >= self.interval_s - 1e-3:
            return "interval"
        if histogram_change(hist, self._hist) > self.scene_cut:
            return "scene_cut"
        # something changed outside the followed faces and their bodies: a person walking in is
        # detected on arrival, not up to ``interval_s`` later
        if int(np.count_nonzero(self._motion)) >= self.motion_pixels:
            return "motion"
        return None

    def _moved(self, thumb: np.ndarray, width: int, height: int) -> np.ndarray:
        """The thumbnail pixels that changed since the last frame outside the followed faces
        and the bodies below them."""
        assert self._thumb is not None
        moved = cv2.absdiff(thumb, self._thumb) > _MOTION_LEVEL
        sx, sy = thumb.shape[1] / width, thumb.shape[0] / height
        for face in self._faces:
            x0, y0, x1, y1 = face.detection.box
            w = x1 - x0
            # the region the face is followed in, and its body down to the frame's edge
            cx, cy = (x0 + x1) / 2 + face.velocity[0], (y0 + y1) / 2 + face.velocity[1]
            half = self.body * w
            left, right = int(max(cx - half, 0) * sx), int(np.ceil((cx + half) * sx))
            top = int(max(cy - half, 0) * sy)
            moved[top:, left:right] = False
        return moved

    @property
    def now(self) -> float | None:
        """The time of the last frame (seconds, the caller's clock; None before the first)."""
        return self._now

    def _follow(self, image: np.ndarray) -> list[tuple[int, _Found]] | None:
        """Every face re-found in its region, with the index of the face it was followed from,
        or None as soon as one is lost."""
        h, w = image.shape[:2]
        out: list[tuple[int, _Found]] = []
        for j, face in enumerate(self._faces):
            box = face.detection.box
            width = max(box[2] - box[0], box[3] - box[1])
            predicted = centre(box) + face.velocity
            half = self.region * width / 2
            x0, y0 = int(max(predicted[0] - half, 0)), int(max(predicted[1] - half, 0))
            x1, y1 = int(min(predicted[0] + half, w)), int(min(predicted[1] + half, h))
            if x1 - x0 < width / 2 or y1 - y0 < width / 2:  # mostly out of the frame
                return None
            best: Detection | None = None
            best_shift = self.max_shift
            for cand in self.local.detect(image[y0:y1, x0:x1]):
                if cand.score < face.found.min_score:
                    continue
                cand = face.found.calibration.apply(cand.shifted(x0, y0))
                shift = float(np.hypot(*(centre(cand.box) - predicted))) / width
                scale = cand.width / max(box[2] - box[0], 1e-6)
                if shift <= best_shift and 1 / self.max_scale <= scale <= self.max_scale:
                    best, best_shift = cand, shift
            if best is None:
                return None
            # two followed faces that ran into one box are one face now
            if any(overlap_of_smaller(best.box, o.detection.box) > 0.5 for _, o in out):
                continue
            # no more confident than at its full detection: the full detector's score is noisy
            # (+-0.07 frame to frame) and a region score alone would rate some faces higher
            # than a full detection does, which would move them across the quality threshold
            fresh = face.found.fresh
            out.append((j, _Found(best, min(best.score, fresh), face.found.min_score, fresh, face.found.calibration)))
        return out

    def _remember(self, found: list[_Found]) -> None:
        """Keep ``found`` with each face's motion, taken from the remembered face it overlaps most."""
        previous = self._faces
        boxes = np.array([p.detection.box for p in previous], np.float64).reshape(-1, 4)
        faces = []
        for f in found:
            velocity = np.zeros(2)
            if len(previous):
                match = overlaps(f.detection.box, boxes)
                i = int(np.argmax(match))
                if match[i] > 0.3:
                    velocity = centre(f.detection.box) - centre(previous[i].detection.box)
            faces.append(_Followed(f.detection, velocity, f))
        self._faces = faces
