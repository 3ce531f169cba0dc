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

from emolens_tools.training.canvas import place_on_canvas
from emolens_tools.training.crops import photo_frames
from emolens_tools.training.data import load_split
from emolens_tools.training.tasks import TASKS

FRAME_H, FRAME_W = 480, 640
# Photos scikit-image ships, with no face in them, that the test faces are pasted on: here and
# in the model card's pipeline evaluation (training uses others:
# emolens_tools.training.crops.TRAIN_BACKGROUNDS).
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
    Raises ``emolens_tools.training.data.DatasetMissingError`` without the data."""
    data = load_split(TASKS[model], split, data_dir, native=True)
    backgrounds = _backgrounds()
    rng = np.random.default_rng(seed)
    for crop, label in zip(data.images[:limit], data.labels[:limit], strict=True):
        upscale = UPSCALES[model]
        side = crop.shape[0] * upscale
        oy, ox = int(rng.integers(0, FRAME_H - side)), int(rng.integers(0, FRAME_W - side))
        frame = place_on_canvas(crop, upscale, backgrounds[int(rng.integers(len(backgrounds)))], oy, ox)
        yield PastedFace(frame, (ox + side / 2, oy + side / 2), side, int(label))


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


# --- Faces at CCTV distance ------------------------------------------------------------------
# Frame sizes of the small-face set (emolens_tools.bench, docs/model-card.md): VGA, 720p and 1080p.
CCTV_FRAMES = ((640, 480), (1280, 720), (1920, 1080))
# Skin tones (BGR) a grayscale dataset face is tinted with, light to dark.
_SKIN = np.array([[190, 205, 235], [150, 175, 215], [110, 140, 190], [75, 100, 150], [50, 70, 110]], np.float32)


@dataclass(frozen=True)
class SceneFace:
    """One face of a :class:`Scene`: its centre and width (the detector box's width) in frame
    pixels, the dataset it came from (``smile`` or ``emotion``) and its label there."""

    centre: tuple[float, float]
    width: float
    model: str
    label: int


@dataclass(frozen=True)
class Scene:
    """A frame holding several known faces, each with head, hair, neck and shoulders."""

    image: np.ndarray
    faces: tuple[SceneFace, ...]


def _tint(gray: np.ndarray, tone: np.ndarray) -> np.ndarray:
    """A grayscale face in a skin tone: each channel scaled by the tone's share of its brightest."""
    return np.clip(gray.astype(np.float32)[:, :, None] * (tone / tone.max())[None, None, :] * 1.05, 0, 255)


def portrait(
    crop: np.ndarray, crop_box: np.ndarray, width: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """A head-and-shoulders figure around a dataset face crop, drawn so that the face's detector
    box (``crop_box`` in crop pixels: centre x, centre y, width) is ``width`` pixels wide.

    Returns the figure (BGR float32), its alpha (0..1) and where the face box's centre lies in it.
    The crop is tinted a random skin tone and pasted with a feathered oval edge over a head of
    hair, a neck and shoulders in random colours, so the detector sees a face as a camera does
    (with a head and a body around it), not a square sticker.
    """
    k = width / float(crop_box[2])
    side = max(round(crop.shape[0] * k), 4)
    interp = cv2.INTER_AREA if side < crop.shape[0] else cv2.INTER_CUBIC
    face = cv2.resize(crop, (side, side), interpolation=interp)
    tone = _SKIN[int(rng.integers(len(_SKIN)))] * float(rng.uniform(0.9, 1.1))
    w = float(width)
    ph, pw = int(4.2 * w), int(3.2 * w)
    cx, cy = pw / 2, 1.45 * w  # the face box's centre in the figure
    fig = np.zeros((ph, pw, 3), np.float32)
    alpha = np.zeros((ph, pw), np.float32)
    hair = np.array(rng.choice([[25, 25, 30], [30, 45, 70], [60, 90, 130], [120, 150, 180], [15, 15, 15]]), np.float32)
    cloth = rng.uniform(20, 230, 3).astype(np.float32)

    def fill(mask: np.ndarray, colour: np.ndarray) -> None:
        fig[mask > 0] = colour
        alpha[mask > 0] = 1.0

    def ellipse(centre: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
        m = np.zeros((ph, pw), np.uint8)
        cv2.ellipse(m, (int(centre[0]), int(centre[1])), (max(int(axes[0]), 1), max(int(axes[1]), 1)), 0, 0, 360, 1, -1)
        return m

    fill(ellipse((cx, cy + 2.05 * w), (1.45 * w, 1.1 * w)), cloth)  # shoulders
    neck = np.zeros((ph, pw), np.uint8)
    cv2.rectangle(neck, (int(cx - 0.24 * w), int(cy + 0.3 * w)), (int(cx + 0.24 * w), int(cy + 1.2 * w)), 1, -1)
    fill(neck, tone * 0.75)
    fill(ellipse((cx, cy - float(rng.uniform(0.05, 0.2)) * w), (0.62 * w, 0.72 * w)), hair)  # head of hair
    # the face: its crop placed so that the crop box's centre lands on (cx, cy)
    fx0, fy0 = round(cx - crop_box[0] * k), round(cy - crop_box[1] * k)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r = np.hypot((xx - side / 2) / (0.5 * side), (yy - side / 2) / (0.56 * side))
    oval = np.clip((1.0 - r) / 0.12, 0.0, 1.0)
    x0, y0 = max(fx0, 0), max(fy0, 0)
    x1, y1 = min(fx0 + side, pw), min(fy0 + side, ph)
    sub = (slice(y0 - fy0, y1 - fy0), slice(x0 - fx0, x1 - fx0))
    a = oval[sub][:, :, None]
    fig[y0:y1, x0:x1] = fig[y0:y1, x0:x1] * (1 - a) + _tint(face, tone)[sub] * a
    alpha[y0:y1, x0:x1] = np.maximum(alpha[y0:y1, x0:x1], oval[sub])
    # a little texture on hair and clothes, and the softness of a real lens at this scale
    fig += rng.normal(0, 6, fig.shape).astype(np.float32) * (alpha[:, :, None] > 0)
    return cv2.GaussianBlur(fig, (0, 0), 0.6), cv2.GaussianBlur(alpha, (0, 0), 0.8), (cx, cy)


def _background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A background of ``size`` (w, h): a photo scikit-image ships, enlarged, or a texture it
    ships tiled at its own scale (sharp, like a real wall or pavement), with sensor noise."""
    w, h = size
    if rng.random() < 0.6:
        base = _backgrounds()[int(rng.integers(len(_backgrounds())))]
        frame = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        tex = _photo(str(rng.choice(["brick", "gravel", "grass"])), native=True)
        if tex is None:
            tex = _backgrounds()[0]
        reps = (h // tex.shape[0] + 1, w // tex.shape[1] + 1, 1)
        frame = np.tile(tex, reps)[:h, :w].copy()
    gain = float(rng.uniform(0.6, 1.2))
    noise = rng.normal(0, 3, frame.shape)
    return np.clip(frame.astype(np.float32) * gain + noise, 0, 255).astype(np.uint8)


def cctv_scenes(
    frame: tuple[int, int],
    width: float,
    count: int,
    *,
    per_frame: int = 4,
    seed: int = 21,
    split: str = "test",
    data_dir: Path | None = None,
) -> list[Scene]:
    """``count`` frames of size ``frame`` (w, h), each with up to ``per_frame`` faces ``width``
    pixels wide (the detector box's width) at random, non-overlapping places: faces of ``split``
    (alternately SMILEsmileD's and FER2013's, in order, so every call shows other faces) as
    :func:`portrait` draws them. A stand-in for a surveillance camera's view of a crowd, built
    from the data at hand; the detector is checked elsewhere on other real photos.
    Raises ``emolens_tools.training.data.DatasetMissingError`` without the data."""
    from emolens.inference import EMOTION, SMILE, make_classifier

    info = make_classifier("onnx://")
    boxes = {SMILE: info.info(SMILE).crop_box, EMOTION: info.info(EMOTION).crop_box}
    data = {m: load_split(TASKS[m], split, data_dir, native=True) for m in (SMILE, EMOTION)}
    fer = data[EMOTION]
    if fer.extra_labels is not None:
        # FER2013 holds drawings, non-faces and faces its crowd could not read: only the faces
        # whose FER+ majority is an expression (the data's README: "clean faces")
        keep = fer.extra_labels >= 0
        data[EMOTION] = type(fer)(images=fer.images[keep], labels=fer.labels[keep], extra_labels=fer.extra_labels[keep])
    rng = np.random.default_rng(seed)
    w, h = frame
    fig_w, fig_h = 3.2 * width, 4.2 * width
    fits = max(1, min(per_frame, int((w // fig_w) * (h // (0.75 * fig_h)))))
    taken = {SMILE: 0, EMOTION: 0}
    out = []
    for _ in range(count):
        image = _background(frame, rng).astype(np.float32)
        placed: list[tuple[float, float, float, float]] = []
        faces: list[SceneFace] = []
        for _try in range(40):
            if len(faces) >= fits:
                break
            x = float(rng.uniform(0, max(w - fig_w, 1)))
            y = float(rng.uniform(-0.2 * fig_h, max(h - 0.75 * fig_h, 1)))  # shoulders may leave the frame
            rect = (x, y, x + fig_w, y + 0.75 * fig_h)
            if any(not (rect[2] < p[0] or p[2] < rect[0] or rect[3] < p[1] or p[3] < rect[1]) for p in placed):
                continue
            model = SMILE if (taken[SMILE] + taken[EMOTION]) % 2 == 0 else EMOTION
            split_data = data[model]
            i = taken[model] % len(split_data.images)
            taken[model] += 1
            fig, alpha, (fcx, fcy) = portrait(split_data.images[i], boxes[model], width, rng)
            if y + fcy - width / 2 < 0:  # the face itself must be in the frame
                continue
            ix, iy = round(x), round(y)
            fx0, fy0 = max(ix, 0), max(iy, 0)
            fx1, fy1 = min(ix + fig.shape[1], w), min(iy + fig.shape[0], h)
            a = alpha[fy0 - iy : fy1 - iy, fx0 - ix : fx1 - ix, None]
            image[fy0:fy1, fx0:fx1] = (
                image[fy0:fy1, fx0:fx1] * (1 - a) + fig[fy0 - iy : fy1 - iy, fx0 - ix : fx1 - ix] * a
            )
            placed.append(rect)
            faces.append(SceneFace((ix + fcx, iy + fcy), float(width), model, int(split_data.labels[i])))
        out.append(Scene(np.clip(image, 0, 255).astype(np.uint8), tuple(faces)))
    return out
