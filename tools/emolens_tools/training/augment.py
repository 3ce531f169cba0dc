"""Image degradations: fixed ones for the robustness report, random ones for training.

Every function takes and returns a float32 grayscale image in 0..255 so they chain freely.
The training mix is aimed at the mission: head pose (rotation, affine and perspective warps,
flips), lighting (gamma, brightness, contrast, shadows), resolution (downscale, blur, JPEG)
and sensor noise.
"""

from __future__ import annotations

import cv2
import numpy as np


def low_light(img: np.ndarray, gamma: float = 2.5, gain: float = 0.35) -> np.ndarray:
    return np.clip(255.0 * (img / 255.0) ** gamma * gain, 0, 255)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.float32)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def downscale(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return decoded.astype(np.float32)


def _random_warp(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    c = np.array([w / 2 - 0.5, h / 2 - 0.5])
    angle = np.deg2rad(rng.uniform(-25, 25))
    scale = rng.uniform(0.88, 1.15)
    shear = rng.uniform(-0.1, 0.1)
    a = (
        scale
        * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        @ np.array([[1, shear], [0, 1]])
    )
    t = c - a @ c + rng.uniform(-0.08, 0.08, 2) * np.array([w, h])
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = a, t
    if rng.random() < 0.4:
        # Perspective squeeze of one side: a cheap stand-in for yaw up to ~45 degrees.
        k = rng.uniform(-0.0025, 0.0025) * 48 / w
        m = np.array([[1, 0, 0], [0, 1, 0], [k, 0, 1]]) @ m
        m = np.array([[1, 0, c[0] * (1 + k * c[0]) - c[0]], [0, 1, k * c[0] * c[1]], [0, 0, 1]]) @ m
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _random_light(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        img = 255.0 * (img / 255.0) ** np.exp(rng.uniform(np.log(0.4), np.log(2.8)))
    if rng.random() < 0.5:
        img = (img - img.mean()) * rng.uniform(0.5, 1.4) + img.mean() * rng.uniform(0.3, 1.3)
    if rng.random() < 0.3:
        h, w = img.shape
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        ramp = (np.cos(theta) * (xx / w - 0.5) + np.sin(theta) * (yy / h - 0.5)) * 2
        img = img * (1.0 - rng.uniform(0.2, 0.7) * np.clip(ramp, 0, 1))
    return np.clip(img, 0, 255)


def random_augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random training view of ``img`` (uint8 or float32 HxW)."""
    out = img.astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1].copy()
    if rng.random() < 0.8:
        out = _random_warp(out, rng)
    out = _random_light(out, rng)
    if rng.random() < 0.5:
        # One degradation at a time: stacking them all would drown the clean signal.
        kind = rng.integers(4)
        if kind == 0:
            out = downscale(out, int(rng.integers(16, 36)))
        elif kind == 1:
            out = blur(out, rng.uniform(0.4, 2.0))
        elif kind == 2:
            out = gaussian_noise(out, rng.uniform(2, 15), rng)
        else:
            out = jpeg(out, int(rng.integers(12, 60)))
    if rng.random() < 0.15:
        h, w = out.shape
        eh, ew = int(rng.integers(h // 8, h // 3)), int(rng.integers(w // 8, w // 3))
        y0, x0 = int(rng.integers(0, h - eh)), int(rng.integers(0, w - ew))
        out[y0 : y0 + eh, x0 : x0 + ew] = rng.uniform(0, 255)
    return np.ascontiguousarray(out, dtype=np.float32)


def augment_batch(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, H, W] -> float32 [N, 1, H, W] of random views."""
    return np.stack([random_augment(im, rng) for im in images])[:, None]
