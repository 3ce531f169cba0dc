"""The unit that travels from detection to aggregation: all faces of one frame of one camera."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from emolens.results import FaceResult


@dataclass(frozen=True)
class FrameObservations:
    camera_id: str
    frame_seq: int  # monotonic per camera; (camera_id, frame_seq) makes redelivery idempotent
    timestamp: datetime  # UTC, when the frame was captured
    faces: list[FaceResult]

    def minute(self) -> datetime:
        """The per-minute bucket this frame counts in (naive UTC)."""
        ts = self.timestamp.astimezone(UTC) if self.timestamp.tzinfo else self.timestamp
        return ts.replace(second=0, microsecond=0, tzinfo=None)
