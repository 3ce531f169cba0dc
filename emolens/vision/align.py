"""Alignment: cut a detected face out of a frame with the crop geometry a model was trained on.

The geometry is a *crop box*: where the face detector's box sits in the model's input crop
(its centre and width, in crop pixels). It is measured by running the production detector on
the training crops themselves (``emolens_tools.training.canvas.measure_crop_box``) and stored in
the model's config.pbtxt, so the crop the pipeline feeds a model frames the face the way the training crops did.

Why the box and not a landmark fit: both training sets were cut around a face *box* (FER2013
registration, LFW crops for SMILEsmileD), not aligned on the eyes. Measured on `val` faces
pasted over clutter (800 each), the box transform lands the crop corners closer to the true
crop than a weighted similarity fit on eyes, nose and mouth (median 3.1 vs 4.4 px of 48 for
FER2013, 2.4 vs 2.8 for SMILEsmileD at 48 px) and classifies better (emotion 65.8% vs 64.7%); turning
the crop to the eye line made both worse, because the training crops keep the head's roll.

>>> import numpy as np
>>> m = crop_transform((100, 50, 196, 146), np.array([24.0, 25.0, 40.0]))
>>> (m @ [148, 98, 1]).round(3).tolist(), (m @ [196, 98, 1]).round(3).tolist()  # centre, right edge
([24.0, 25.0], [44.0, 25.0])
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from emolens.errors import InputError

Box = tuple[float, float, float, float]


def crop_transform(box: Box | Sequence[float], crop_box: np.ndarray) -> np.ndarray:
    """2x3 affine matrix (uniform scale and shift) taking frame pixels to crop pixels so that
    the centre of ``box`` lands on ``crop_box[:2]`` and its width spans ``crop_box[2]``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    width = x1 - x0
    if width <= 0 or y1 <= y0:
        raise InputError(f"empty face box {box}")
    scale = float(crop_box[2]) / width
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array(
        [[scale, 0.0, float(crop_box[0]) - scale * cx], [0.0, scale, float(crop_box[1]) - scale * cy]],
        np.float32,
    )


def align_face(gray: np.ndarray, box: Box | Sequence[float], crop_box: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` uint8 crop of ``gray`` around ``box`` with the training geometry.

    A large face is first shrunk by the integer part of the scale with area averaging, the way
    the training crops were made, and only the remaining fraction is done by the warp (measured
    on `val`: about half a point better than blurring before one big warp).
    """
    m = crop_transform(box, crop_box)
    k = int(1.0 / max(float(m[0, 0]), 1e-6))
    h, w = gray.shape[:2]
    if k > 1 and min(h, w) // k >= 1:
        gray = cv2.resize(gray, (w // k, h // k), interpolation=cv2.INTER_AREA)
        # exact per-axis factors: w // k need not be w / k
        m = m.copy()
        m[0, 0] *= w / (w // k)
        m[1, 1] *= h / (h // k)
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
