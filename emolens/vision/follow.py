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
histogram), and in any case after ``interval`` frames: a face that turns towards the camera
without moving may go unseen that long.

>>> import numpy as np
>>> from emolens.vision.detect import make_detector
>>> follower = FaceFollower(make_detector("blazeface"), make_detector("blazeface-short"), interval=5)
>>> follower.detect(np.zeros((480, 640, 3), np.uint8)), follower.last_pass
([], 'full')
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from emolens.errors import ConfigError
from emolens.geometry import overlap_of_smaller, overlaps
from emolens.vision.detect import Detection, FaceDetector

log = logging.getLogger(__name__)

# The local detector's score threshold inside a region: a face was there a frame ago, so less
# evidence suffices. Measured on the demo clip at 15 fps: 0.5 lost a followed face on 59 of 180
# frames (mostly a blurred face in the background that short range scores 0.40-0.48), 0.35 on 22,
# with the same faces found; on 300 drifting test faces the found rate did not change.
FOLLOW_MIN_SCORE = 0.5

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


@dataclass
class _Followed:
    detection: Detection
    velocity: np.ndarray  # box centre motion, pixels per frame


def _centre(box: tuple[float, float, float, float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


def _shift(det: Detection, x0: float, y0: float) -> Detection:
    b = det.box
    return Detection(
        (b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0), det.score, det.landmarks + np.array([x0, y0], np.float32)
    )


def second_opinion(image: np.ndarray, det: Detection, detector: FaceDetector, region: float = 2.0) -> float:
    """The best score ``detector`` gives a face in a square region ``region`` times the size of
    ``det`` around it, with its centre within a third of the face width of ``det``'s centre and a
    width within 0.6-1.6x (0.0 if none): a second look at the face at another scale."""
    h, w = image.shape[:2]
    width = max(det.width, det.height)
    centre = _centre(det.box)
    half = region * width / 2
    x0, y0 = int(max(centre[0] - half, 0)), int(max(centre[1] - half, 0))
    x1, y1 = int(min(centre[0] + half, w)), int(min(centre[1] + half, h))
    best = 0.0
    for cand in detector.detect(image[y0:y1, x0:x1]):
        cand = _shift(cand, x0, y0)
        near = float(np.hypot(*(_centre(cand.box) - centre))) < width / 3
        if near and 0.6 <= cand.width / max(det.width, 1e-6) <= 1.6:
            best = max(best, cand.score)
    return best


class FaceFollower:
    """A :class:`FaceDetector` for consecutive frames of one camera (stateful: one per camera,
    ``reset()`` between unrelated clips).

    ``full`` finds faces anywhere; ``local`` (BlazeFace short range) re-finds one face in a
    region ``region`` times its size around its predicted box. ``interval=1`` runs ``full`` on
    every frame. A face counts as followed when the local detector finds a face in its region
    whose centre lies within ``max_shift`` face widths of the prediction and whose width is
    within ``max_scale`` of the last one; otherwise it is lost and the frame gets a full
    detection. ``scene_cut`` is the histogram change (0..1) that forces a full detection, and
    ``motion_pixels`` the number of thumbnail pixels (80x60) that changed outside the followed
    faces and their bodies that does (12 such pixels are about a 30 px face at 640x480).

    ``passes`` counts what ran: ``full`` (with the reason) and ``follow`` frames.
    """

    def __init__(
        self,
        full: FaceDetector,
        local: FaceDetector,
        interval: int,
        *,
        region: float = 2.0,
        max_shift: float = 0.5,
        max_scale: float = 1.5,
        scene_cut: float = 0.25,
        motion_pixels: int = 12,
        body: float = 2.0,
    ) -> None:
        if interval < 1:
            raise ConfigError(f"detection interval must be at least 1 frame, got {interval}")
        self.full, self.local = full, local
        self.interval = interval
        self.region, self.max_shift, self.max_scale, self.scene_cut = region, max_shift, max_scale, scene_cut
        self.motion_pixels, self.body = motion_pixels, body
        self.name = f"{full.name}/{interval}+follow-{local.name}"
        self.passes: Counter[str] = Counter()
        self.last_pass = ""
        self.reset()

    def reset(self) -> None:
        """Forget the faces and the last frame: the next frame gets a full detection."""
        self._faces: list[_Followed] = []
        self._since_full = 0
        self._thumb: np.ndarray | None = None
        self._hist: np.ndarray | None = None

    def detect(self, image: np.ndarray) -> list[Detection]:
        thumb = thumbnail(image)
        hist = brightness_histogram(thumb)
        reason = self._full_reason(thumb, hist, image.shape[1], image.shape[0])
        self._thumb, self._hist = thumb, hist
        followed: list[Detection] | None = None
        if reason is None:
            followed = self._follow(image)
            if followed is None:
                reason = "lost"
        if followed is None:
            found = self.full.detect(image)
            self._since_full = 1
            self.passes[f"full_{reason}"] += 1
            self.last_pass = "full"
        else:
            found = followed
            self._since_full += 1
            self.passes["follow"] += 1
            self.last_pass = "follow"
        self._remember(found)
        return found

    def _full_reason(self, thumb: np.ndarray, hist: np.ndarray, width: int, height: int) -> str | None:
        if self._thumb is None or self._hist is None or self._thumb.shape != thumb.shape:
            return "first"
        if self._since_full >= self.interval:
            return "interval"
        if histogram_change(hist, self._hist) > self.scene_cut:
            return "scene_cut"
        if self._moved_elsewhere(thumb, width, height):
            return "motion"
        return None

    def _moved_elsewhere(self, thumb: np.ndarray, width: int, height: int) -> bool:
        """Whether something changed outside the followed faces and the bodies below them: a
        person walking in is detected on arrival, not up to ``interval`` frames later."""
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
        return int(np.count_nonzero(moved)) >= self.motion_pixels

    def _follow(self, image: np.ndarray) -> list[Detection] | None:
        """Every face re-found in its region, or None as soon as one is lost."""
        h, w = image.shape[:2]
        out: list[Detection] = []
        for face in self._faces:
            box = face.detection.box
            width = max(box[2] - box[0], box[3] - box[1])
            predicted = _centre(box) + face.velocity
            half = self.region * width / 2
            x0, y0 = int(max(predicted[0] - half, 0)), int(max(predicted[1] - half, 0))
            x1, y1 = int(min(predicted[0] + half, w)), int(min(predicted[1] + half, h))
            if x1 - x0 < width / 2 or y1 - y0 < width / 2:  # mostly out of the frame
                return None
            best: Detection | None = None
            best_shift = self.max_shift
            for cand in self.local.detect(image[y0:y1, x0:x1]):
                cand = _shift(cand, x0, y0)
                shift = float(np.hypot(*(_centre(cand.box) - predicted))) / width
                scale = cand.width / max(box[2] - box[0], 1e-6)
                if shift <= best_shift and 1 / self.max_scale <= scale <= self.max_scale:
                    best, best_shift = cand, shift
            if best is None:
                return None
            # two followed faces that ran into one box are one face now
            if any(overlap_of_smaller(best.box, o.box) > 0.5 for o in out):
                continue
            out.append(best)
        return out

    def _remember(self, found: list[Detection]) -> None:
        """Keep ``found`` with each face's motion, taken from the remembered face it overlaps most."""
        previous = self._faces
        boxes = np.array([p.detection.box for p in previous], np.float64).reshape(-1, 4)
        faces = []
        for det in found:
            velocity = np.zeros(2)
            if len(previous):
                match = overlaps(det.box, boxes)
                i = int(np.argmax(match))
                if match[i] > 0.3:
                    velocity = _centre(det.box) - _centre(previous[i].detection.box)
            faces.append(_Followed(det, velocity))
        self._faces = faces
