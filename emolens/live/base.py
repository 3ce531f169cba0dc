"""The live-state seam: per-camera counters since start (frames, faces, smiles, emotions) that
the aggregator adds accepted frames to and the gateway's WatchLive reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from emolens.observations import FrameObservations, Totals
from emolens.results import EMOTIONS


@dataclass
class LiveCounters:
    camera_id: str
    frames: int = 0
    faces: int = 0
    smiles: int = 0
    emotions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0))
    updated_at: datetime | None = None


def deltas(frames: Sequence[FrameObservations]) -> dict[str, LiveCounters]:
    """What ``frames`` add to each camera's counters (low-quality faces count as frames only)."""
    out: dict[str, LiveCounters] = {}
    for fr in frames:
        c = out.setdefault(fr.camera_id, LiveCounters(fr.camera_id))
        c.frames += 1
        for face in fr.faces:
            if face.low_quality:
                continue
            c.faces += 1
            c.smiles += int(face.smiling)
            c.emotions[face.label] += 1
    return out


class LiveState(Protocol):
    def add(self, frames: Sequence[FrameObservations]) -> None: ...

    def lost(self) -> bool:
        """True when the counters were lost since the last :meth:`reset` (a restarted Redis)."""
        ...

    def reset(self, totals: Mapping[str, Totals]) -> None:
        """Set every camera's counters to ``totals`` (rebuilt from the store)."""
        ...

    def get(self, camera_id: str) -> LiveCounters: ...

    def cameras(self) -> list[str]: ...
