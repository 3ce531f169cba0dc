"""What the pipeline reports for one face: the record every shape and output format shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emolens.contract import EMOTIONS

__all__ = ["EMOTIONS", "FaceResult"]


@dataclass
class FaceResult:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    landmarks: list[tuple[float, float]]  # right eye, left eye, nose tip, mouth, right ear, left ear
    detection_score: float
    quality: float  # 0..1, see emolens.vision.quality
    low_quality: bool
    smile: float  # probability of "smile"
    emotions: dict[str, float]  # probability per emotion, EMOTIONS order
    track_id: int | None = None
    yaw_deg: float = 0.0

    @property
    def label(self) -> str:
        """The most probable emotion."""
        return max(self.emotions, key=self.emotions.__getitem__)

    @property
    def smiling(self) -> bool:
        return self.smile >= 0.5

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "box": [round(v, 1) for v in self.box],
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "detection_score": round(self.detection_score, 4),
            "quality": round(self.quality, 4),
            "low_quality": self.low_quality,
            "yaw_deg": round(self.yaw_deg, 1),
            "smile": round(self.smile, 4),
            "emotions": {k: round(v, 4) for k, v in self.emotions.items()},
            "label": self.label,
        }
