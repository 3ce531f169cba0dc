"""Training crops shown to the detector as faces in a frame: the canvas they are placed on, the
detection found at a point, and the crop box measured from them (stored in config.pbtxt by the
export; see emolens.vision.align for how the pipeline uses it)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from emolens.errors import ModelError
from emolens.geometry import holds
from emolens.vision.detect import Detection, FaceDetector


def place_on_canvas(crop: np.ndarray, upscale: int, canvas: np.ndarray, oy: int, ox: int) -> np.ndarray:
    """``crop`` upscaled (cubic) and pasted into a copy of the BGR ``canvas`` at (oy, ox)."""
    side = crop.shape[0] * upscale
    frame = canvas.copy()
    big = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
    frame[oy : oy + side, ox : ox + side] = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    return frame


def detection_at(faces: Sequence[Detection], x: float, y: float) -> Detection | None:
    """The most confident of ``faces`` whose box holds the point (x, y), or None."""
    hits = [f for f in faces if holds(f.box, x, y)]
    return max(hits, key=lambda f: f.score) if hits else None


def measure_crop_box(
    crops: Sequence[np.ndarray], detector: FaceDetector, upscale: int, canvas: tuple[int, int] = (480, 640)
) -> tuple[np.ndarray, float]:
    """Median detector box of ``detector`` on training crops, in crop pixels.

    Each crop is upscaled and placed on a grey canvas, as a face in a frame would be.
    Returns ([centre x, centre y, width], fraction of crops where a face was found).
    """
    found = []
    ch, cw = canvas
    grey = np.full((ch, cw, 3), 128, np.uint8)
    for crop in crops:
        side = crop.shape[0] * upscale
        oy, ox = (ch - side) // 2, (cw - side) // 2
        det = detection_at(detector.detect(place_on_canvas(crop, upscale, grey, oy, ox)), cw / 2, ch / 2)
        if det is not None:
            x0, y0, x1, y1 = det.box
            found.append([((x0 + x1) / 2 - ox) / upscale, ((y0 + y1) / 2 - oy) / upscale, (x1 - x0) / upscale])
    if not found:
        raise ModelError(f"{detector.name} found no face in any of {len(crops)} training crops")
    return np.median(np.array(found), axis=0).astype(np.float32), len(found) / len(crops)
