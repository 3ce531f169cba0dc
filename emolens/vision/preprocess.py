"""Crop preprocessing before classification: illumination normalisation, denoising, sharpening.

Which steps run is a measured choice (see docs/model-card.md, "Preprocessing"); ``auto``
applies each only where the crop needs it.
"""

from __future__ import annotations

import cv2
import numpy as np

from emolens.errors import ConfigError
from emolens.settings import PREPROCESS_MODES as MODES

_CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))


def noise_sigma(crop: np.ndarray) -> float:
    """Robust estimate of Gaussian noise (Immerkaer's method) on a uint8 crop."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = cv2.filter2D(crop.astype(np.float32), -1, kernel)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).mean() / 6.0)


def preprocess(crop: np.ndarray, mode: str, source_width: float, crop_width: float) -> np.ndarray:
    """Return the crop to classify (uint8, same shape).

    ``source_width`` is the face box width in the frame and ``crop_width`` its width in the
    crop: a face smaller in the frame than in the crop was upsampled.
    """
    if mode == "none":
        return crop
    if mode == "clahe":
        return _CLAHE.apply(crop)
    if mode != "auto":
        raise ConfigError(f"unknown preprocessing mode {mode!r}; choose from {MODES}")
    out = crop
    sigma = noise_sigma(out)
    noisy = sigma > 8.0
    if noisy:
        out = cv2.fastNlMeansDenoising(out, None, h=max(10.0, 1.3 * sigma), templateWindowSize=5, searchWindowSize=11)
    if not noisy and (float(out.std()) < 25.0 or float(out.mean()) < 50.0):
        # Stretching a noisy crop's contrast would amplify the noise just removed.
        out = _CLAHE.apply(out)
    if source_width < 0.8 * crop_width:
        # Upsampled face: unsharp mask restores some of the edges the upscale smeared.
        blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=1.0)
        out = cv2.addWeighted(out, 1.5, blurred, -0.5, 0)
    return out
