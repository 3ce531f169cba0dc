"""A short demo clip built from a real photo that scikit-image ships (``astronaut``, a NASA
portrait in the public domain): the face pans, zooms, turns up to ~30 degrees of roll,
passes through dim and side-lit stretches, and a second and third (mirrored, smaller)
copy come and go, so a frame holds 1-3 faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emolens.errors import EmolensError


def astronaut_bgr() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as exc:
        raise EmolensError("the demo needs scikit-image: pip install 'emolens[demo]'") from exc
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _paste(frame: np.ndarray, patch: np.ndarray, cx: float, cy: float) -> None:
    h, w = patch.shape[:2]
    x0, y0 = int(cx - w / 2), int(cy - h / 2)
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + w, frame.shape[1]), min(y0 + h, frame.shape[0])
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]


def demo_frames(seconds: float = 12.0, fps: int = 15, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    w, h = size
    photo = astronaut_bgr()
    head = photo[30:230, 120:330]  # the astronaut's head and shoulders
    background = cv2.resize(photo, (w, h))
    background = cv2.GaussianBlur(background, (0, 0), 6)
    frames = []
    n = int(seconds * fps)
    _yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        t = i / max(n - 1, 1)
        frame = background.copy()
        # main face: pans left to right, zooms in and out, rolls
        scale = 0.9 + 0.6 * np.sin(np.pi * t)
        angle = 30 * np.sin(2 * np.pi * t)
        patch = cv2.resize(head, None, fx=scale, fy=scale)
        m = cv2.getRotationMatrix2D((patch.shape[1] / 2, patch.shape[0] / 2), angle, 1.0)
        patch = cv2.warpAffine(patch, m, (patch.shape[1], patch.shape[0]), borderMode=cv2.BORDER_REFLECT)
        _paste(frame, patch, 140 + 360 * t, 230 + 30 * np.sin(4 * np.pi * t))
        if 0.25 < t < 0.8:  # a second, smaller mirrored face
            small = cv2.resize(head[:, ::-1], None, fx=0.55, fy=0.55)
            _paste(frame, small, 520 - 300 * (t - 0.25), 120)
        if 0.5 < t < 0.7:  # a third, farther away
            _paste(frame, cv2.resize(head, None, fx=0.4, fy=0.4), 90, 390)
        # lighting: a dim stretch, then light from the side
        if 0.35 < t < 0.55:
            frame = (frame.astype(np.float32) * 0.35).astype(np.uint8)
        elif t >= 0.75:
            ramp = np.clip(0.25 + xx / w, 0.25, 1.0)[:, :, None]
            frame = (frame.astype(np.float32) * ramp).astype(np.uint8)
        frames.append(frame)
    return frames


def write_demo_clip(path: Path, seconds: float = 12.0, fps: int = 15) -> Path:
    return write_clip(path, demo_frames(seconds, fps), fps)


def small_face_frames(
    size: tuple[int, int], seconds: float, fps: int, widths: tuple[int, ...] = (40, 56, 72)
) -> list[np.ndarray]:
    """Frames of a surveillance-style shot: the astronaut's head and shoulders at each of
    ``widths`` (face width in pixels), walking slowly across a sharp, busy ``size`` (w, h)
    background (scikit-image's brick texture tiled at its own scale)."""
    from skimage import data

    w, h = size
    photo = astronaut_bgr()
    head = photo[0:300, 60:400]  # her face box is 105 px wide at (174..279, 70..175)
    brick = cv2.cvtColor(data.brick(), cv2.COLOR_GRAY2BGR)
    background = np.tile(brick, (h // brick.shape[0] + 1, w // brick.shape[1] + 1, 1))[:h, :w]
    background = (background.astype(np.float32) * 0.8).astype(np.uint8)
    figures = [
        cv2.resize(head if i % 2 else head[:, ::-1], None, fx=fw / 105, fy=fw / 105) for i, fw in enumerate(widths)
    ]
    n = int(seconds * fps)
    frames = []
    for i in range(n):
        t = i / max(n - 1, 1)
        frame = background.copy()
        for j, fig in enumerate(figures):
            x = (0.15 + 0.7 * ((t + j / len(figures)) % 1.0)) * w
            y = (0.3 + 0.5 * j / max(len(figures) - 1, 1)) * h
            _paste(frame, fig, x, y)
        frames.append(frame)
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """``frames`` as an MP4 (mp4v) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    if not writer.isOpened():
        raise EmolensError(f"cannot write video {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
