"""Face detection: MediaPipe BlazeFace (weights shipped in the package, see blazeface/NOTICE)
run with ``ai-edge-litert``, and an OpenCV Haar-cascade fallback.

>>> import numpy as np
>>> detector = make_detector("auto")
>>> detector.detect(np.zeros((480, 640, 3), np.uint8))
[]
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import ClassVar, Protocol

import cv2
import numpy as np

from emolens import logs
from emolens.errors import ConfigError, ModelError
from emolens.geometry import centre, overlap_of_smaller
from emolens.settings import DETECTORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """One face in frame pixel coordinates."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    # float32 [6, 2] in BlazeFace's order: right eye, left eye, nose tip, mouth, right ear, left
    # ear ("right" is the subject's right: image left for a frontal face)
    landmarks: np.ndarray = field(repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    def shifted(self, x0: float, y0: float) -> Detection:
        """The detection moved by (x0, y0): from a crop's pixels to the frame's."""
        b = self.box
        return Detection(
            (b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0), self.score, self.landmarks + np.array([x0, y0], np.float32)
        )

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 image [H, W, 3]."""
        ...


def _weights_dir() -> Path:
    """BlazeFace's .tflite files, shipped in the package (see blazeface/NOTICE)."""
    return Path(str(files("emolens.vision") / "blazeface"))


# What the LiteRT runtime prints from C++ on file descriptor 2 when it applies its default CPU
# delegate: on every run, at INFO, and no setting (TF_CPP_MIN_LOG_LEVEL included) turns it off.
_NATIVE_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextmanager
def _without_native_notice() -> Iterator[None]:
    """Runs the block with file descriptor 2 sent to a temporary file, then writes what arrived
    there back to stderr less ``_NATIVE_NOTICE``: anything else (an error from the runtime, a
    line another thread wrote meanwhile) still shows, only later."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()  # what Python holds for stderr belongs before the block, not in the file
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (closed, or a stream already closed)
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            rest = b"".join(line for line in caught if line.rstrip(b"\r\n") != _NATIVE_NOTICE)
            if rest:
                os.write(2, rest)


def _anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    rows = []
    for stride, reps in zip(strides, per_cell, strict=True):
        n = size // stride
        centers = (np.arange(n, dtype=np.float32) + 0.5) / n
        yy, xx = np.meshgrid(centers, centers, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
        rows.append(np.repeat(grid, reps, axis=0))
    return np.concatenate(rows)


def nms_groups(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[np.ndarray]:
    """Greedy NMS that keeps the suppressed candidates: per kept face, the indices of every
    candidate overlapping it by more than ``iou`` (the caller blends them, as MediaPipe does),
    in descending score order.

    The overlaps of all pairs are computed at once (the region detector reports candidates
    down to a score of 0.05, dozens a run, and one vector call per kept face cost more than
    the rest of its post-processing); each value is the one ``overlaps`` gives for that pair.

    >>> boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    >>> [g.tolist() for g in nms_groups(boxes, np.array([0.6, 0.9, 0.7], np.float32), 0.3)]
    [[1, 0], [2]]
    """
    order = np.argsort(-scores)
    ranked = np.asarray(boxes)[order]
    b = ranked.astype(np.float64)
    w = np.clip(np.minimum(b[None, :, 2], b[:, None, 2]) - np.maximum(b[None, :, 0], b[:, None, 0]), 0, None)
    h = np.clip(np.minimum(b[None, :, 3], b[:, None, 3]) - np.maximum(b[None, :, 1], b[:, None, 1]), 0, None)
    inter = w * h
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    # the kept box's own area in the boxes' precision, as ``overlaps`` reads it from a row
    own = ((ranked[:, 2] - ranked[:, 0]) * (ranked[:, 3] - ranked[:, 1])).astype(np.float64)
    denom = areas[None, :] + own[:, None] - inter
    above = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0) > iou
    alive = np.ones(len(order), bool)
    groups: list[np.ndarray] = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        member = alive & above[i]
        member[i] = True  # a box always holds itself (an empty one too)
        groups.append(order[member])
        alive &= ~member
    return groups


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` centred in a black square, resized to ``size`` x ``size`` (area averaging when
    it shrinks).

    When the padding and the image both map onto whole output pixels (640x480 to 128 or
    192: 80 rows of padding are 16 or 24), the image alone is resized and the black rows are
    added after: the same pixels, without averaging a quarter of zeros (the full detector
    letterboxes every frame twice).

    >>> letterbox(np.full((480, 640, 3), 200, np.uint8), 128)[[0, 16, 111, 112], 0, 0].tolist()
    [0, 200, 200, 0]
    """
    h, w = image.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    if side > size and all(v * size % side == 0 for v in (h, w, top, left)):
        sw, sh, st, sl = (v * size // side for v in (w, h, top, left))
        small = cv2.resize(image, (sw, sh), interpolation=interp)
        return cv2.copyMakeBorder(small, st, size - sh - st, sl, size - sw - sl, cv2.BORDER_CONSTANT)
    square = cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT)
    return cv2.resize(square, (size, size), interpolation=interp)


# BlazeFace's inputs are small (128 and 192 px): past a few threads there is little work left to split.
MAX_DETECTOR_THREADS = 4


def detector_threads(threads: int) -> int:
    """LiteRT threads for ``threads`` (Settings.threads): as given, or for 0 one per usable core
    up to MAX_DETECTOR_THREADS. On 2 cores two threads run the short-range pass in 0.38 ms
    instead of 0.63 and the demo clip at 199-212 instead of 172-178 frames/s
    (docs/benchmarks.md)."""
    if threads > 0:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_DETECTOR_THREADS))


class BlazeFaceDetector:
    """BlazeFace full-range (192 px input, faces down to ~5% of the frame side) or short-range."""

    _MODELS: ClassVar[dict[str, tuple[str, int, tuple[int, ...], tuple[int, ...]]]] = {
        "full": ("face_detection_full_range.tflite", 192, (4,), (1,)),
        "short": ("face_detection_short_range.tflite", 128, (8, 16), (2, 6)),
    }

    def __init__(self, variant: str = "full", min_score: float = 0.5, nms_iou: float = 0.3, threads: int = 0) -> None:
        if variant not in self._MODELS:
            raise ConfigError(f"unknown BlazeFace variant {variant!r}; choose from {sorted(self._MODELS)}")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - depends on the platform's wheels
            raise ModelError("package ai-edge-litert is not installed") from exc
        filename, self.size, strides, per_cell = self._MODELS[variant]
        path = _weights_dir() / filename
        if not path.exists():
            raise ModelError(f"BlazeFace weights not found at {path}")
        self.name = f"blazeface-{variant}"
        with _without_native_notice():
            self._interpreter = Interpreter(model_path=str(path), num_threads=detector_threads(threads))
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))
        self._boxes_out, self._scores_out = outputs[0]["index"], outputs[1]["index"]
        self._anchors = _anchors(self.size, strides, per_cell)
        self.min_score = min_score
        self.nms_iou = nms_iou

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        side = max(h, w)
        # Letterbox into a square so the aspect ratio survives the resize.
        pad_x, pad_y = (side - w) / 2, (side - h) / 2
        small = letterbox(image, self.size)
        tensor = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._boxes_out)[0] / self.size
        logits = np.clip(self._interpreter.get_tensor(self._scores_out)[0, :, 0], -80, 80)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        centers = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centers - half, centers + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, points = boxes[valid], scores[valid], points[valid]
        out = []
        for group in nms_groups(boxes, scores, self.nms_iou):
            wts = scores[group][:, None]
            box = (boxes[group] * wts).sum(0) / wts.sum()
            pts = (points[group] * wts[:, :, None]).sum(0) / wts.sum()
            # back to frame pixels: undo the resize, then the letterbox
            box = box * side - np.array([pad_x, pad_y, pad_x, pad_y])
            pts = pts * side - np.array([pad_x, pad_y])
            x0, y0, x1, y1 = (float(v) for v in box)
            out.append(
                Detection(
                    box=(max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))),
                    score=float(scores[group].max()),
                    landmarks=pts.astype(np.float32),
                )
            )
        return out


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade: no weights package needed, frontal faces only.

    Landmarks are placed at average positions inside the box, so alignment is coarser.
    """

    # Mean landmark positions relative to a Haar box, in BlazeFace order (eyes, nose, mouth, ears).
    _RELATIVE = np.array(
        [[0.32, 0.38], [0.68, 0.38], [0.50, 0.58], [0.50, 0.76], [0.10, 0.45], [0.90, 0.45]], np.float32
    )

    def __init__(self, min_size: int = 24) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ModelError(f"OpenCV Haar cascade missing at {path}")
        self.name = "haar"
        self.min_size = min_size

    def detect(self, image: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_size, self.min_size)
        )
        out = []
        for x, y, w, h in found:
            pts = self._RELATIVE * np.array([w, h], np.float32) + np.array([x, y], np.float32)
            out.append(Detection(box=(float(x), float(y), float(x + w), float(y + h)), score=1.0, landmarks=pts))
        return out


class TiledDetector:
    """Runs a detector on the whole frame and on square tiles along its long side.

    In a tile a face fills a larger part of the detector's small input (128 px for short
    range), which is what finds large, tightly framed faces the whole-frame pass misses.
    """

    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector
        self.name = f"tiled-{detector.name}"

    @staticmethod
    def tiles(width: int, height: int) -> list[tuple[int, int, int]]:
        """(x0, y0, side) of the square tiles: start, middle and end of the long side."""
        side = min(width, height)
        if max(width, height) < 1.15 * side:
            return []
        span = max(width, height) - side
        offsets = sorted({0, span // 2, span})
        return [(o, 0, side) if width >= height else (0, o, side) for o in offsets]

    def detect(self, image: np.ndarray) -> list[Detection]:
        found = self.detector.detect(image)
        h, w = image.shape[:2]
        for x0, y0, side in self.tiles(w, h):
            found += [d.shifted(x0, y0) for d in self.detector.detect(image[y0 : y0 + side, x0 : x0 + side])]
        return found


class MergedDetector:
    """Runs several detectors and keeps one detection per face (the higher score wins).

    BlazeFace short range finds large, close faces that full range misses, and full range
    finds the small faces of a wide shot: together they cover both. Two boxes are the same
    face when they overlap by more than ``overlap`` of the *smaller* box: detectors at
    different scales put boxes of different sizes around one face, which plain IoU misses,
    and one face's box never holds most of another face.
    """

    def __init__(self, detectors: list[FaceDetector], overlap: float = 0.5) -> None:
        self.detectors = detectors
        self.overlap = overlap
        self.name = "+".join(d.name for d in detectors)

    def detect(self, image: np.ndarray) -> list[Detection]:
        return merge_detections([f for d in self.detectors for f in d.detect(image)], self.overlap)


# Small faces: the width (pixels of BlazeFace full range's 192 px input) a face is brought to in
# the tiles that look for the smallest faces. Measured on real head-and-shoulder photos pasted
# into frames (issue 21), full range finds 86% of faces at 19 px, 78% at 16 px and 97-99% from
# 20-24 px; on the small-face set (emolens_tools.testframes.cctv_scenes) see docs/architecture.md.
TILE_FACE_PX = 22
# A tile level covers faces from its smallest to this many times that: the next level's tiles
# are this much larger, and a level's tiles overlap by its largest face (plus a margin), so
# every face it covers lies wholly inside one of its tiles.
TILE_LEVEL_SPAN = 2.5
# A face found only by the tiles (smaller than the whole-frame pass sees) is kept when BlazeFace
# full range, run on a region CONFIRM_REGION times its width around it (the face then fills a
# fifth of the input, with its head and shoulders around it), scores a face there at
# CONFIRM_SCORE or more. Measured (720p, val faces of the small-face set, 32-64 px): true faces
# score 0.56 and up there; the one usable false face of the non-face photos scaled into HD
# frames (a coin, 46 px, detector score 0.59) scored 0.0.
CONFIRM_REGION = 5.0
CONFIRM_SCORE = 0.3
# The most tiles one frame gets (about 0.2 s of detection on 2 cores): a larger frame looks for
# somewhat larger faces instead (SmallFaceDetector.tiles).
MAX_TILES = 160


@dataclass(frozen=True)
class Tile:
    """A rectangle of the frame that the small-face pass runs the detector on, and the face
    widths (frame pixels) it is there for."""

    x0: int
    y0: int
    x1: int
    y1: int
    min_face: float
    max_face: float

    def holds(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one side: evenly spread, the first at 0 and the last at the end."""
    if length <= tile:
        return [0]
    n = int(np.ceil((length - tile) / stride)) + 1
    return sorted({round(i * (length - tile) / (n - 1)) for i in range(n)})


def small_face_tiles(width: int, height: int, min_face_px: float, input_px: int = 192) -> list[Tile]:
    """The tiles a ``width`` x ``height`` frame needs for faces down to ``min_face_px`` wide, in
    levels: the first level's tiles bring a ``min_face_px`` face to ``TILE_FACE_PX`` pixels of
    the detector's ``input_px`` input, each next level covers faces ``TILE_LEVEL_SPAN`` times
    larger, and none is needed for faces the whole-frame pass already sees at that size.

    >>> small_face_tiles(640, 480, 80)  # the whole frame brings an 80 px face to 24 px
    []
    >>> sorted({(t.x1 - t.x0, t.y1 - t.y0) for t in small_face_tiles(640, 480, 48)})
    [(418, 418)]
    >>> len(small_face_tiles(1280, 720, 32)), len(small_face_tiles(1920, 1080, 48))
    (34, 34)
    """
    if min_face_px <= 0:
        return []
    side = max(width, height)
    tiles: list[Tile] = []
    face = float(min_face_px)
    while face * input_px / side < TILE_FACE_PX:
        tile = int(face * input_px / TILE_FACE_PX)  # floor: the smallest face gets at least TILE_FACE_PX
        top = face * TILE_LEVEL_SPAN
        stride = max(int(tile - 1.1 * top), tile // 4)
        for y0 in _starts(height, tile, stride):
            for x0 in _starts(width, tile, stride):
                tiles.append(Tile(x0, y0, min(x0 + tile, width), min(y0 + tile, height), face, top))
        face = top
    return tiles


class SmallFaceDetector:
    """A whole-frame detector plus BlazeFace full range over tiles (:func:`small_face_tiles`),
    so faces down to ``min_face_px`` are found on HD frames, where the whole frame shrunk to
    the detector's 192 px input leaves a 64 px face 6 px wide. Detections from every tile and
    the whole frame are merged once (the higher score wins, as in :class:`MergedDetector`); a
    tile's detection that touches one of its inner edges is dropped, since the overlapping
    tile beside it holds that face whole.

    ``detect(image, tiles=...)`` runs only some tiles (the face follower scans those where
    something moved or a small face is followed, and all of them at longer intervals).

    A face smaller than the whole-frame pass sees must be confirmed by ``confirm`` (BlazeFace
    full range reporting low scores) on a wider region around it (``CONFIRM_REGION``,
    ``CONFIRM_SCORE``): a tile shows the detector many more small patches of texture than the
    whole frame did, and a face has a head and shoulders around it where a coin does not.
    """

    def __init__(
        self,
        whole: FaceDetector,
        tiled: FaceDetector,
        min_face_px: float,
        confirm: FaceDetector | None = None,
        overlap: float = 0.5,
    ) -> None:
        self.whole, self.tiled, self.confirm = whole, tiled, confirm
        self.min_face_px = float(min_face_px)
        self.overlap = overlap
        self.name = f"{whole.name}+tiles{min_face_px:g}px-{tiled.name}"
        self._tiles: dict[tuple[int, int], list[Tile]] = {}

    def tiles(self, width: int, height: int) -> list[Tile]:
        """The tiles of a ``width`` x ``height`` frame: for ``min_face_px``, or, on a frame so
        large that they would be more than ``MAX_TILES`` (8 MP at 32 px; a 4 MP camera needs
        132), for the smallest face width that keeps them within it (logged once per size), so
        one huge image cannot cost seconds of detection."""
        key = (width, height)
        if key not in self._tiles:
            face = self.min_face_px
            tiles = small_face_tiles(width, height, face)
            while len(tiles) > MAX_TILES:
                face *= 1.1
                tiles = small_face_tiles(width, height, face)
            if face != self.min_face_px:
                logs.event(
                    log.info,
                    "min_face_raised",
                    width=width,
                    height=height,
                    min_face_px=round(face, 0),
                    tiles=len(tiles),
                )
            self._tiles[key] = tiles
        return self._tiles[key]

    def whole_frame_min_face(self, width: int, height: int) -> float:
        """The smallest face width the whole-frame pass is relied on for (the tiles below it)."""
        tiles = self.tiles(width, height)
        return max((t.max_face for t in tiles), default=0.0)

    def detect(
        self,
        image: np.ndarray,
        tiles: list[Tile] | None = None,
        known: list[tuple[float, float, float, float]] | None = None,
    ) -> list[Detection]:
        """Faces in ``image``; ``tiles``: only these tiles (None: all); ``known``: boxes of faces
        confirmed before (followed faces), whose detections need no confirmation again."""
        h, w = image.shape[:2]
        found = list(self.whole.detect(image))
        for t in self.tiles(w, h) if tiles is None else tiles:
            for d in self.tiled.detect(image[t.y0 : t.y1, t.x0 : t.x1]):
                b = d.box
                inner = (
                    (t.x0 > 0 and b[0] <= 1)
                    or (t.y0 > 0 and b[1] <= 1)
                    or (t.x1 < w and b[2] >= t.x1 - t.x0 - 1)
                    or (t.y1 < h and b[3] >= t.y1 - t.y0 - 1)
                )
                if not inner:
                    found.append(d.shifted(t.x0, t.y0))
        merged = merge_detections(found, self.overlap)
        if self.confirm is None:
            return merged
        small = self.whole_frame_min_face(w, h)
        return [
            d
            for d in merged
            if d.width >= small
            or any(overlap_of_smaller(d.box, k) > self.overlap for k in known or ())
            or self._confirmed(image, d)
        ]

    def _confirmed(self, image: np.ndarray, det: Detection) -> bool:
        """Whether ``confirm`` finds a face at ``det`` in a region ``CONFIRM_REGION`` times its size."""
        assert self.confirm is not None
        h, w = image.shape[:2]
        cx, cy = centre(det.box)
        half = CONFIRM_REGION * max(det.width, det.height) / 2
        x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
        x1, y1 = int(min(cx + half, w)), int(min(cy + half, h))
        for cand in self.confirm.detect(image[y0:y1, x0:x1]):
            ccx, ccy = centre(cand.box) + np.array([x0, y0])
            near = np.hypot(ccx - cx, ccy - cy) < det.width / 2
            if near and cand.score >= CONFIRM_SCORE and 0.5 <= cand.width / max(det.width, 1e-6) <= 2.0:
                return True
        return False


# Two boxes more than this factor apart in width are never one face: a large box around a whole
# figure (or a false face) must not swallow the small true face inside it (measured: 3 of 60
# faces at 64 px were lost that way, inside boxes 4.6x their width), while the passes' boxes of
# one face differ by up to about 2.3x (short range's loose box of a small face).
SAME_FACE_SCALE = 3.0


def merge_detections(found: list[Detection], overlap: float = 0.5) -> list[Detection]:
    """One detection per face, the most confident: two boxes are one face when they overlap by
    more than ``overlap`` of the smaller box and their widths are within ``SAME_FACE_SCALE``
    (see :class:`MergedDetector`)."""
    kept: list[Detection] = []
    for face in sorted(found, key=lambda f: -f.score):
        if all(not _same_face(face, k, overlap) for k in kept):
            kept.append(face)
    return kept


def _same_face(a: Detection, b: Detection, overlap: float) -> bool:
    wa, wb = max(a.width, 1e-6), max(b.width, 1e-6)
    return max(wa, wb) / min(wa, wb) <= SAME_FACE_SCALE and overlap_of_smaller(a.box, b.box) > overlap


def make_detector(name: str = "auto", min_score: float = 0.5, threads: int = 0, min_face_px: float = 0) -> FaceDetector:
    """``blazeface`` (short range on the frame and its tiles + full range, merged),
    ``blazeface-full``, ``blazeface-short``,
    ``haar``, or ``auto``: BlazeFace when its packages load on this platform, else Haar.
    ``threads``: BlazeFace's LiteRT threads (:func:`detector_threads`). ``min_face_px`` > 0
    adds BlazeFace full range over tiles (:class:`SmallFaceDetector`) for faces down to that
    width wherever the whole frame would leave them too small (``blazeface`` and ``auto``)."""
    if name == "blazeface" and min_face_px > 0:
        return SmallFaceDetector(
            make_detector("blazeface", min_score, threads),
            BlazeFaceDetector("full", min_score=min_score, threads=threads),
            min_face_px,
            confirm=BlazeFaceDetector("full", min_score=CONFIRM_SCORE, threads=threads),
        )
    if name == "blazeface":
        return MergedDetector(
            [
                TiledDetector(BlazeFaceDetector("short", min_score=min_score, threads=threads)),
                BlazeFaceDetector("full", min_score=min_score, threads=threads),
            ]
        )
    if name == "blazeface-full":
        return BlazeFaceDetector("full", min_score=min_score, threads=threads)
    if name == "blazeface-short":
        return BlazeFaceDetector("short", min_score=min_score, threads=threads)
    if name == "haar":
        return HaarFaceDetector()
    if name == "auto":
        try:
            return make_detector("blazeface", min_score=min_score, threads=threads, min_face_px=min_face_px)
        except ModelError as exc:
            logs.event(log.warning, "detector_fallback", reason=str(exc), fallback="haar")
            return HaarFaceDetector()
    raise ConfigError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
