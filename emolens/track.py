"""Face tracking across frames and temporal smoothing of each track's probabilities.

Greedy IoU matching (faces of a camera move little between sampled frames), then an
exponential moving average per track so a label does not flicker frame to frame.

>>> import numpy as np
>>> t = Tracker(smoothing=0.5)
>>> ids = t.update([(0, 0, 10, 10)], np.array([[1.0, 0.0]]))
>>> ids2 = t.update([(1, 0, 11, 10)], np.array([[0.0, 1.0]]))
>>> ids == ids2, t.smoothed(ids2[0]).tolist()
(True, [0.5, 0.5])
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from emolens.errors import ConfigError
from emolens.geometry import Box, centre, iou


@dataclass
class _Track:
    track_id: int
    box: Box
    state: np.ndarray  # smoothed feature vector (probabilities)
    missed: int = 0
    hits: int = 1
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre motion per update

    def predicted(self) -> Box:
        """The box moved by its last motion for every update since it was seen."""
        dx, dy = (v * (self.missed + 1) for v in self.velocity)
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


@dataclass(frozen=True)
class TrackerState:
    """A :class:`Tracker`'s tracks and next id at one moment (:meth:`Tracker.snapshot`)."""

    tracks: dict[int, _Track]
    next_id: int


def unique_first_id() -> int:
    """A first track id no other tracker of any process is likely to reach: the wall clock in
    microseconds, shifted left 10 bits, plus 10 random bits (about 2^61, inside int64).

    Distinct visitors are counted from track ids per camera, so a restarted or rebalanced
    detector must not number its tracks from 1 again and reuse ids already stored. A tracker
    started one second later begins about 10^9 ids higher.
    """
    return (time.time_ns() // 1000) << 10 | secrets.randbelow(1024)


class Tracker:
    """Assigns stable ids to faces of one camera and smooths their probability vectors.

    ``smoothing`` is the weight of the past (0 = no smoothing); a track that goes unseen
    for more than ``max_missed`` frames ends.
    """

    def __init__(
        self,
        min_iou: float = 0.3,
        max_missed: int = 10,
        smoothing: float = 0.6,
        first_id: int = 1,
        max_jump: float = 1.5,
        max_scale: float = 1.5,
    ) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {smoothing}")
        self.min_iou = min_iou
        self.max_jump, self.max_scale = max_jump, max_scale
        self.max_missed = max_missed
        self.smoothing = smoothing
        self._tracks: dict[int, _Track] = {}
        self._next_id = first_id

    def update(self, boxes: Sequence[Box], features: np.ndarray) -> list[int]:
        """Match this frame's faces to tracks; returns a track id per face, in input order."""
        assigned = self._match(boxes)
        self._age(set(assigned.values()))
        ids = []
        for i, box in enumerate(boxes):
            feat = np.asarray(features[i], np.float64)
            if i in assigned:
                track = self._tracks[assigned[i]]
                track.state = self.smoothing * track.state + (1 - self.smoothing) * feat
                (x0, y0), (x1, y1) = centre(track.box), centre(box)
                steps = track.missed + 1
                track.velocity = ((x1 - x0) / steps, (y1 - y0) / steps)
                track.box, track.missed, track.hits = box, 0, track.hits + 1
            else:
                track = _Track(self._next_id, box, feat.copy())
                self._tracks[track.track_id] = track
                self._next_id += 1
            ids.append(track.track_id)
        return ids

    def _match(self, boxes: Sequence[Box]) -> dict[int, int]:
        """Face index -> track id: by overlap with each track's predicted box first (best pairs
        first, at least ``min_iou``), then what is left by the nearest centre."""
        predicted = {tid: t.predicted() for tid, t in self._tracks.items()}
        pairs = sorted(
            ((iou(predicted[tid], b), tid, i) for tid in self._tracks for i, b in enumerate(boxes)),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        used: set[int] = set()
        for score, tid, i in pairs:
            if score < self.min_iou:
                break
            if i in assigned or tid in used:
                continue
            assigned[i] = tid
            used.add(tid)
        for _, tid, i in self._near(boxes, predicted, assigned, used):
            if i in assigned or tid in used:
                continue
            assigned[i] = tid
            used.add(tid)
        return assigned

    def _near(
        self, boxes: Sequence[Box], predicted: dict[int, Box], assigned: dict[int, int], used: set[int]
    ) -> list[tuple[float, int, int]]:
        """(jump, track id, face index) of every unmatched face within ``max_jump`` widths of an
        unmatched track's predicted centre and within ``max_scale`` of its size, nearest first."""
        near = []
        for tid, box in predicted.items():
            if tid in used:
                continue
            width = max(box[2] - box[0], 1e-6)
            cx, cy = centre(box)
            for i, b in enumerate(boxes):
                if i in assigned or not 1 / self.max_scale <= (b[2] - b[0]) / width <= self.max_scale:
                    continue
                bx, by = centre(b)
                jump = float(np.hypot(bx - cx, by - cy)) / width
                if jump <= self.max_jump:
                    near.append((jump, tid, i))
        return sorted(near)

    def _age(self, seen: set[int]) -> None:
        """Tracks not in ``seen`` miss a frame; those that missed more than ``max_missed`` end."""
        for tid, track in list(self._tracks.items()):
            if tid not in seen:
                track.missed += 1
                if track.missed > self.max_missed:
                    del self._tracks[tid]

    def observe(self, boxes: Sequence[Box], ids: Sequence[int], features: np.ndarray) -> None:
        """Replay a frame another tracker numbered (its faces' boxes, track ids and smoothed
        features, as a previous detector process emitted them): tracks take those ids and
        states, the others age as in :meth:`update`. A restarted detector goes on with the ids
        its predecessor gave, so a visitor in view across the restart stays one visitor."""
        self._age(set(ids))
        for box, tid, feat in zip(boxes, ids, features, strict=True):
            state = np.asarray(feat, np.float64).copy()
            known = self._tracks.get(tid)
            if known is None:
                self._tracks[tid] = _Track(tid, box, state)
            else:
                known.box, known.state, known.missed, known.hits = box, state, 0, known.hits + 1

    def snapshot(self) -> TrackerState:
        """Everything :meth:`update` changes, to :meth:`restore` when the batch it served
        failed (a retried batch must find the tracks as the failed attempt found them)."""
        return TrackerState({tid: replace(t, state=t.state.copy()) for tid, t in self._tracks.items()}, self._next_id)

    def restore(self, saved: TrackerState) -> None:
        self._tracks = {tid: replace(t, state=t.state.copy()) for tid, t in saved.tracks.items()}
        self._next_id = saved.next_id

    def smoothed(self, track_id: int) -> np.ndarray:
        return self._tracks[track_id].state

    @property
    def active(self) -> int:
        return len(self._tracks)
