"""Frames with known content, for measuring the face detector rather than trusting it: real
test faces (FER2013, SMILEsmileD) pasted into 640x480 frames over clutter, still or drifting
through a short clip, and frames that hold no face at all (photos and textures scikit-image
ships, and generated clutter).

Face pixels come from the shared datasets (read-only, never written anywhere); the photos
need the ``demo`` extra (scikit-image).

>>> frames = non_face_frames()  # doctest: +SKIP
>>> frames[0].name, frames[0].image.shape  # doctest: +SKIP
('chelsea', (480, 640, 3))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from emolens.errors import EmolensError
from emolens.training.canvas import place_on_canvas
from emolens.training.data import load_split
from emolens.training.serving import photo_frames
from emolens.training.tasks import TASKS

FRAME_H, FRAME_W = 480, 640
# Photos with no face in them that the test faces are pasted on: the same as the model
# card's pipeline evaluation (emolens.evaluation.run.BACKGROUNDS).
BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "coins", "brick", "gravel")
# How much each dataset's crop is enlarged in the frame (192 px faces), as in the model card.
UPSCALES = {"emotion": 4, "smile": 3}
# Photos and textures with no face (the cat is the one a user reported as a face).
NON_FACE_PHOTOS = (
    "chelsea",
    "coffee",
    "rocket",
    "brick",
    "gravel",
    "grass",
    "coins",
    "clock",
    "horse",
    "moon",
    "text",
    "page",
    "cell",
    "retina",
    "colorwheel",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "checkerboard",
)


@dataclass(frozen=True)
class PastedFace:
    """One frame with one known face: its centre and side in frame pixels and its label."""

    image: np.ndarray
    centre: tuple[float, float]
    side: int
    label: int


@dataclass(frozen=True)
class NonFaceFrame:
    name: str
    image: np.ndarray


@cache
def _backgrounds() -> tuple[np.ndarray, ...]:
    return tuple(photo_frames(BACKGROUNDS))


def _photo(name: str, native: bool = False) -> np.ndarray | None:
    """A photo scikit-image ships as a 640x480 BGR frame, or (``native``) at its own size."""
    try:
        return photo_frames((name,), native)[0]
    except Exception:  # a data file scikit-image would have to download: leave it out
        return None


def pasted_faces(
    model: str, limit: int, seed: int = 7, data_dir: Path | None = None, split: str = "test"
) -> Iterator[PastedFace]:
    """The first ``limit`` faces of ``split``, each in its own frame over a random background
    at a random place, enlarged ``UPSCALES[model]`` times.
    Raises ``emolens.training.data.DatasetMissingError`` without the data."""
    data = load_split(TASKS[model], split, data_dir, native=True)
    backgrounds = _backgrounds()
    rng = np.random.default_rng(seed)
    for crop, label in zip(data.images[:limit], data.labels[:limit], strict=True):
        upscale = UPSCALES[model]
        side = crop.shape[0] * upscale
        oy, ox = int(rng.integers(0, FRAME_H - side)), int(rng.integers(0, FRAME_W - side))
        frame = place_on_canvas(crop, upscale, backgrounds[int(rng.integers(len(backgrounds)))], oy, ox)
        yield PastedFace(frame, (ox + side / 2, oy + side / 2), side, int(label))


def drifting_clip(face: np.ndarray, upscale: int, frames: int, rng: np.random.Generator) -> list[PastedFace]:
    """``frames`` frames in which one face crop drifts across a still background by 4-12 px a
    frame in a random direction (a person walking past a camera sampled at 5-15 fps)."""
    backgrounds = _backgrounds()
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    side = face.shape[0] * upscale
    speed = rng.uniform(4, 12)
    angle = rng.uniform(0, 2 * np.pi)
    step = speed * np.array([np.cos(angle), np.sin(angle)])
    span = np.abs(step) * (frames - 1)
    lo = np.array([0.0, 0.0]) + np.where(step < 0, span, 0)
    hi = np.array([FRAME_W - side, FRAME_H - side], np.float64) - np.where(step > 0, span, 0)
    if np.any(hi <= lo):
        raise EmolensError(f"a {side} px face cannot drift {frames} frames inside a {FRAME_W}x{FRAME_H} frame")
    start = rng.uniform(lo, hi)
    out = []
    for k in range(frames):
        ox, oy = (int(v) for v in start + k * step)
        out.append(
            PastedFace(place_on_canvas(face, upscale, background, oy, ox), (ox + side / 2, oy + side / 2), side, 0)
        )
    return out


def _clutter(rng: np.random.Generator) -> np.ndarray:
    """Random ellipses, rectangles and lines in random grays and colours over noise: blobs that
    can look like eyes and mouths, which is what fools a face detector."""
    noise = rng.integers(0, 256, (FRAME_H // 8, FRAME_W // 8, 3)).astype(np.uint8)
    frame = cv2.resize(noise, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(20, 60))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(3))
        x, y = int(rng.integers(0, FRAME_W)), int(rng.integers(0, FRAME_H))
        if kind == 0:
            axes = (int(rng.integers(5, 80)), int(rng.integers(5, 80)))
            cv2.ellipse(frame, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif kind == 1:
            cv2.rectangle(frame, (x, y), (x + int(rng.integers(5, 120)), y + int(rng.integers(5, 120))), colour, -1)
        else:
            end = (int(rng.integers(0, FRAME_W)), int(rng.integers(0, FRAME_H)))
            cv2.line(frame, (x, y), end, colour, int(rng.integers(1, 8)))
    return cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(0.5, 2.0)))


def non_face_frames(clutter: int = 20, seed: int = 11) -> list[NonFaceFrame]:
    """Frames with no face: each photo of ``NON_FACE_PHOTOS`` whole at 640x480, at the size
    scikit-image ships it (the cat as a user passes the file: 451x300), and its centre enlarged
    2x (the cat's head then fills a third of the frame), plus ``clutter`` generated frames."""
    out = []
    for name in NON_FACE_PHOTOS:
        image = _photo(name)
        if image is None:
            continue
        out.append(NonFaceFrame(name, image))
        native = _photo(name, native=True)
        if native is not None and native.shape[:2] != image.shape[:2]:
            out.append(NonFaceFrame(f"{name}-native", native))
        zoom = cv2.resize(image[FRAME_H // 4 : 3 * FRAME_H // 4, FRAME_W // 4 : 3 * FRAME_W // 4], (FRAME_W, FRAME_H))
        out.append(NonFaceFrame(f"{name}-zoom2", zoom))
    rng = np.random.default_rng(seed)
    out += [NonFaceFrame(f"clutter-{i}", _clutter(rng)) for i in range(clutter)]
    return out
