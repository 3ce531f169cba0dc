"""The store seam: idempotent per-minute aggregation and queries over it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from emolens.observations import FrameObservations, Totals
from emolens.results import EMOTIONS


@dataclass
class Bucket:
    """One camera-minute. Low-quality faces count in ``low_quality`` only."""

    camera_id: str
    minute: datetime
    frames: int = 0
    faces: int = 0
    tracks: int = 0
    low_quality: int = 0
    smiles: int = 0
    smile_sum: float = 0.0
    quality_sum: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0))
    prob_sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0.0))

    @property
    def mean_quality(self) -> float:
        return self.quality_sum / self.faces if self.faces else 0.0

    def suppressed(self, k: int) -> bool:
        """k-anonymity: fewer than ``k`` distinct faces (tracks; faces where untracked)."""
        distinct = self.tracks if self.tracks else self.faces
        return distinct < k


@dataclass
class Sighting:
    """One track in one camera-minute: when first and last seen there, and its usable faces."""

    camera_id: str
    minute: datetime
    track_id: int
    first_seen: datetime
    last_seen: datetime
    faces: int = 0
    smiles: int = 0
    smile_sum: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0))


@dataclass
class Folded:
    """New frames summed per camera-minute: what :meth:`SqlStore.apply_folded` writes. Buckets
    carry no ``tracks`` yet (those need the store's memory of tracks seen in that minute);
    ``untracked`` counts usable faces without a track id, each its own visitor."""

    buckets: dict[tuple[str, datetime], Bucket] = field(default_factory=dict)
    sightings: dict[tuple[str, datetime, int], Sighting] = field(default_factory=dict)
    untracked: dict[tuple[str, datetime], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Camera:
    camera_id: str
    zone: str = ""
    site: str = ""


class Store(Protocol):
    def ensure_camera(self, camera: Camera) -> None:
        """Register ``camera`` with its zone and site, or move it there: configuration only
        (a run's or the chart's camera list, ``emolens cameras --set``), never a message."""
        ...

    def register_camera(self, camera: Camera) -> Camera:
        """The camera as registered: ``camera`` itself when its id was unknown, or known with
        neither zone nor site (registered now, as its ingest declares it), else the registered
        one, unchanged."""
        ...

    def apply(self, frames: Sequence[FrameObservations]) -> list[FrameObservations]:
        """Add frames to their buckets in one transaction; frames seen before are skipped.
        Returns the frames that were new (each once, in delivery order): the only ones the
        live counters may count, so a redelivery cannot inflate them."""
        ...

    def prune_seen(self, older_than: timedelta) -> int:
        """Forget the frames accepted more than ``older_than`` ago (the replay window): a
        redelivery within it is skipped, after it the frame counts again. Returns how many."""
        ...

    def buckets(
        self,
        camera_id: str | None = None,
        zone: str | None = None,
        site: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        camera_ids: Collection[str] | None = None,
    ) -> list[Bucket]:
        """Buckets matching every filter given; ``camera_ids`` limits them to those cameras
        (an empty collection matches none: a caller who may see no camera gets nothing)."""
        ...

    def cameras(self) -> list[Camera]: ...

    def camera(self, camera_id: str) -> Camera | None:
        """The camera as declared (registered), or None when nobody declared it."""
        ...

    def totals(self) -> dict[str, Totals]:
        """Each camera's frames, faces, smiles and emotion counts over all stored minutes."""
        ...

    def close(self) -> None: ...


def fold_frames(frames: Sequence[FrameObservations]) -> Folded:
    """Buckets, track sightings and untracked faces of ``frames`` (low-quality faces count in
    ``low_quality`` only: they are neither faces nor visitors)."""
    out = Folded(buckets=fold(frames))
    for fr in frames:
        minute = fr.minute()
        ts = fr.timestamp.astimezone(UTC).replace(tzinfo=None) if fr.timestamp.tzinfo else fr.timestamp
        for face in fr.faces:
            if face.low_quality:
                continue
            if face.track_id is None:
                out.untracked[(fr.camera_id, minute)] = out.untracked.get((fr.camera_id, minute), 0) + 1
                continue
            key = (fr.camera_id, minute, face.track_id)
            s = out.sightings.get(key)
            if s is None:
                s = out.sightings[key] = Sighting(fr.camera_id, minute, face.track_id, ts, ts)
            s.first_seen, s.last_seen = min(s.first_seen, ts), max(s.last_seen, ts)
            s.faces += 1
            s.smiles += int(face.smiling)
            s.smile_sum += face.smile
            s.counts[face.label] += 1
    return out


def fold(frames: Sequence[FrameObservations]) -> dict[tuple[str, datetime], Bucket]:
    """Sum frames into buckets (no tracks: those need the store's memory of seen ids)."""
    out: dict[tuple[str, datetime], Bucket] = {}
    for fr in frames:
        key = (fr.camera_id, fr.minute())
        b = out.get(key)
        if b is None:
            b = out[key] = Bucket(camera_id=fr.camera_id, minute=key[1])
        b.frames += 1
        for face in fr.faces:
            if face.low_quality:
                b.low_quality += 1
                continue
            b.faces += 1
            b.smiles += int(face.smiling)
            b.smile_sum += face.smile
            b.quality_sum += face.quality
            b.counts[face.label] += 1
            for emo, p in face.emotions.items():
                b.prob_sums[emo] += p
    return out
