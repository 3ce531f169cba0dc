"""Annotated output images and videos: boxes, track ids, labels; faces optionally blurred.

Opt-in and local only: the services never write face pixels anywhere.
"""

from __future__ import annotations

import cv2
import numpy as np

from emolens.results import FaceResult

_COLORS = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (40, 200, 240),
    "sad": (200, 120, 40),
    "surprise": (240, 200, 40),
    "neutral": (200, 200, 200),
}


def annotate(image: np.ndarray, faces: list[FaceResult], blur: bool = False) -> np.ndarray:
    out = image.copy()
    for face in faces:
        x0, y0, x1, y1 = (round(v) for v in face.box)
        x0, y0 = max(x0, 0), max(y0, 0)
        if blur and x1 > x0 and y1 > y0:
            region = out[y0:y1, x0:x1]
            k = max(3, (min(region.shape[:2]) // 3) | 1)
            out[y0:y1, x0:x1] = cv2.GaussianBlur(region, (k, k), 0)
        color = (128, 128, 128) if face.low_quality else _COLORS[face.label]
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
        tag = f"#{face.track_id} " if face.track_id is not None else ""
        text = f"{tag}{face.label} {face.emotions[face.label]:.0%} smile {face.smile:.0%}"
        if face.low_quality:
            text += " (low q)"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = y0 - 4 if y0 - th - 6 > 0 else y1 + th + 4
        cv2.rectangle(out, (x0, ty - th - 3), (x0 + tw + 4, ty + 3), color, -1)
        cv2.putText(out, text, (x0 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out
