"""In-process live counters: the embedded shape's live state (``memory://``)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from emolens.live.base import LiveCounters, deltas
from emolens.observations import FrameObservations, Totals
from emolens.results import EMOTIONS


class MemoryLiveState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, LiveCounters] = {}

    def add(self, frames: Sequence[FrameObservations]) -> None:
        now = datetime.now(UTC)
        with self._lock:
            for cam, d in deltas(frames).items():
                c = self._counters.setdefault(cam, LiveCounters(cam))
                c.frames += d.frames
                c.faces += d.faces
                c.smiles += d.smiles
                for e in EMOTIONS:
                    c.emotions[e] += d.emotions[e]
                c.updated_at = now

    def lost(self) -> bool:
        return False  # in-process counters die with the process that owns them

    def reset(self, totals: Mapping[str, Totals]) -> None:
        now = datetime.now(UTC)
        with self._lock:
            self._counters = {
                cam: LiveCounters(cam, t.frames, t.faces, t.smiles, dict(t.emotions), now) for cam, t in totals.items()
            }

    def get(self, camera_id: str) -> LiveCounters:
        with self._lock:
            c = self._counters.get(camera_id)
            if c is None:
                return LiveCounters(camera_id)
            return LiveCounters(c.camera_id, c.frames, c.faces, c.smiles, dict(c.emotions), c.updated_at)

    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._counters)
