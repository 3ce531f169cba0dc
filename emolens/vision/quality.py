"""Per-face quality: size, sharpness, exposure and pose, each 0..1, and one combined score.

A face below ``threshold`` is still reported, but flagged: its labels should not be trusted,
and aggregates can leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Quality:
    score: float  # geometric mean of the parts, 0..1
    size: float
    sharpness: float
    exposure: float
    pose: float
    yaw_deg: float
    roll_deg: float

    def usable(self, threshold: float) -> bool:
        return self.score >= threshold


def _ramp(value: float, bad: float, good: float) -> float:
    return float(np.clip((value - bad) / (good - bad), 0.0, 1.0))


def estimate_yaw_roll(landmarks: np.ndarray) -> tuple[float, float]:
    """Yaw from how far the nose tip sits off the eye midline, roll from the eye line (degrees)."""
    right_eye, left_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_vec = left_eye - right_eye
    eye_dist = float(np.hypot(*eye_vec)) + 1e-6
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    mid = (left_eye + right_eye) / 2
    # Signed offset of the nose along the eye line, relative to half the eye distance.
    offset = float(np.dot(nose - mid, eye_vec) / eye_dist) / (eye_dist / 2)
    yaw = float(np.degrees(np.arcsin(np.clip(offset, -1.0, 1.0))))
    return yaw, roll


def assess(face_gray: np.ndarray, landmarks: np.ndarray, face_width: float) -> Quality:
    """Quality of one face from its source pixels (the box region) and its landmarks."""
    size = _ramp(face_width, 20.0, 64.0)
    small = cv2.resize(face_gray, (64, 64), interpolation=cv2.INTER_AREA) if face_gray.size else face_gray
    sharp_raw = float(cv2.Laplacian(small, cv2.CV_32F).var()) if small.size else 0.0
    sharpness = _ramp(sharp_raw, 10.0, 120.0)
    mean = float(small.mean()) if small.size else 0.0
    exposure = min(_ramp(mean, 15.0, 60.0), _ramp(255.0 - mean, 15.0, 60.0))
    yaw, roll = estimate_yaw_roll(landmarks)
    pose = 1.0 - _ramp(abs(yaw), 35.0, 70.0)
    parts = np.array([size, sharpness, exposure, pose])
    score = float(np.prod(np.maximum(parts, 1e-3)) ** (1 / len(parts)))
    return Quality(score, size, sharpness, exposure, pose, yaw, roll)
