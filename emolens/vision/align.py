"""Alignment: warp a detected face onto the exact crop geometry a model was trained on.

The geometry is a *template*: where the eyes, nose tip and mouth centre sit, in pixels of the
model's input crop. It is measured on the training images themselves (``measure_template``)
and stored in the model's config.pbtxt, so the crop the pipeline feeds a model matches what
the model saw in training.

>>> import numpy as np
>>> tpl = np.array([[15, 20], [32, 19], [24, 29], [25, 36]], np.float32)
>>> src = tpl * 4 + 100  # the same face, 4x larger, shifted
>>> m = similarity_to_template(src, tpl)
>>> bool(np.allclose(m[:, :2], np.eye(2) / 4, atol=1e-4))
True
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from emolens.vision.detect import FaceDetector

# Landmarks used for alignment (BlazeFace order): eyes, nose tip, mouth. Ears vanish under yaw.
ALIGN_POINTS = (0, 1, 2, 3)
# Eyes weigh more: they are the most precise landmarks, and the mouth moves with expression.
_WEIGHTS = np.array([2.0, 2.0, 1.0, 1.0], np.float32)


def similarity_to_template(points: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, shift) mapping
    ``points`` [K, 2] onto ``template`` [K, 2]; returns a 2x3 matrix."""
    w = _WEIGHTS[: len(points)] if len(points) == len(_WEIGHTS) else np.ones(len(points), np.float32)
    w = w / w.sum()
    mu_p = (points * w[:, None]).sum(0)
    mu_t = (template * w[:, None]).sum(0)
    p = points - mu_p
    t = template - mu_t
    # Umeyama in complex form: t ~ z * p with z = s * e^{i theta}
    pc = p[:, 0] + 1j * p[:, 1]
    tc = t[:, 0] + 1j * t[:, 1]
    denom = float((w * np.abs(pc) ** 2).sum())
    if denom < 1e-9:
        raise ValueError("degenerate landmarks: all points coincide")
    z = (w * tc * np.conj(pc)).sum() / denom
    a, b = float(z.real), float(z.imag)
    rot = np.array([[a, -b], [b, a]], np.float32)
    shift = mu_t - rot @ mu_p
    return np.hstack([rot, shift[:, None]]).astype(np.float32)


def align_face(gray: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` uint8 crop of ``gray`` in which ``landmarks`` land on ``template``.

    A large face is first shrunk by the integer part of the scale with area averaging, the way
    the training crops were made, and only the remaining fraction is done by the warp (measured
    on `val`: about half a point better than blurring before one big warp).
    """
    points = landmarks[list(ALIGN_POINTS)].astype(np.float32)
    m = similarity_to_template(points, template)
    k = int(1.0 / max(float(np.hypot(m[0, 0], m[1, 0])), 1e-6))
    h, w = gray.shape[:2]
    if k > 1 and min(h, w) // k >= 1:
        gray = cv2.resize(gray, (w // k, h // k), interpolation=cv2.INTER_AREA)
        # exact per-axis factors: w // k need not be w / k
        m = similarity_to_template(points * np.array([(w // k) / w, (h // k) / h], np.float32), template)
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def measure_template(
    crops: Sequence[np.ndarray], detector: FaceDetector, upscale: int, canvas: tuple[int, int] = (480, 640)
) -> tuple[np.ndarray, float]:
    """Median landmark positions of ``detector`` on training crops, in crop pixels.

    Each crop is upscaled and placed on a grey canvas, as a face in a frame would be.
    Returns (template [4, 2], fraction of crops where a face was found).
    """
    found = []
    ch, cw = canvas
    for crop in crops:
        side = crop.shape[0] * upscale
        big = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
        frame = np.full((ch, cw), 128, np.uint8)
        oy, ox = (ch - side) // 2, (cw - side) // 2
        frame[oy : oy + side, ox : ox + side] = big
        faces = detector.detect(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        if faces:
            best = max(faces, key=lambda f: f.score)
            found.append((best.landmarks[list(ALIGN_POINTS)] - [ox, oy]) / upscale)
    if not found:
        raise RuntimeError("the detector found no face in any training crop")
    return np.median(np.stack(found), axis=0).astype(np.float32), len(found) / len(crops)
