"""The store seam: idempotent per-minute aggregation, and every read over it (buckets, the
grouped statistics, the dwell-time histogram of visitor timelines, retention), so no caller
builds SQL or reaches into an adapter. :class:`~emolens.store.sql.SqlStore` serves it on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from emolens.observations import FrameObservations, Totals
from emolens.results import EMOTIONS
from emolens.settings import Settings

By = Literal["camera", "zone", "site"]
Every = Literal["minute", "hour", "day"]
BY: tuple[By, ...] = ("camera", "zone", "site")
EVERY: tuple[Every, ...] = ("minute", "hour", "day")
RowKey = tuple[datetime, str, str, str]  # (period_start, site, zone, camera_id): the order of StatsRows


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


@dataclass(frozen=True)
class StatsRow:
    """One group's figures over one period. ``zone`` is "" when grouped by site, ``camera_id``
    "" unless grouped by camera; the means are None where nothing was counted."""

    site: str
    zone: str
    camera_id: str
    period_start: datetime
    cameras: int
    frames: int
    faces: int
    visitors: int
    low_quality: int
    smiles: int
    smile_rate: float | None
    mean_quality: float | None
    mean_dwell_s: float | None  # None by minute: dwell is kept per hour and day
    emotions: dict[str, int] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.camera_id or self.zone or self.site

    @property
    def key(self) -> RowKey:
        """Where the row sorts: by period, then site, zone and camera."""
        return (self.period_start, self.site, self.zone, self.camera_id)

    @property
    def top_emotion(self) -> str | None:
        return max(EMOTIONS, key=lambda e: self.emotions.get(e, 0)) if self.faces else None


@dataclass(frozen=True)
class StatsFilter:
    """Which cameras a statistics query covers: every filter given must hold; ``camera_ids``
    is a caller's scope (None: all cameras; empty: none)."""

    camera_id: str | None = None
    zone: str | None = None
    site: str | None = None
    camera_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Policy:
    """Retention ages in days (0 = keep forever) and the replay window in seconds."""

    minutes_days: int = Settings.retention_minutes_days
    hourly_days: int = Settings.retention_hourly_days
    daily_days: int = Settings.retention_daily_days
    timelines_days: int = Settings.retention_timelines_days
    replay_window_s: int = Settings.replay_window_s

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(
            s.retention_minutes_days,
            s.retention_hourly_days,
            s.retention_daily_days,
            s.retention_timelines_days,
            s.replay_window_s,
        )


@dataclass
class Removed:
    """What retention removed from one table."""

    table: str
    cutoff: datetime | None  # rows before it went; None: kept forever
    rows: int = 0  # rows deleted, those in dropped partitions included
    partitions: list[str] = field(default_factory=list)  # dropped whole (PostgreSQL)

    def describe(self) -> str:
        if self.cutoff is None:
            return f"{self.table}: kept (no age set)"
        what = f"{self.rows:,} row(s) before {self.cutoff:%Y-%m-%d %H:%M}"
        if self.partitions:
            what += f", {len(self.partitions)} partition(s) dropped ({', '.join(self.partitions)})"
        return f"{self.table}: removed {what}"


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

    def count_groups(self, by: By, where: StatsFilter) -> int:
        """How many ``by`` groups (cameras, zones or sites) the filter covers."""
        ...

    def stats_rows(
        self,
        by: By,
        every: Every,
        since: datetime,
        until: datetime,
        where: StatsFilter,
        *,
        k: int,
        after: RowKey | None = None,
        limit: int | None = None,
    ) -> list[StatsRow]:
        """The figures per ``by`` group and ``every`` period starting in ``[since, until)``
        (naive UTC) whose period saw at least ``k`` visitors, in :attr:`StatsRow.key` order,
        only those after ``after``, at most ``limit``."""
        ...

    def count_suppressed(
        self, by: By, every: Every, since: datetime, until: datetime, where: StatsFilter, k: int
    ) -> int:
        """How many group-periods of the same query had fewer than ``k`` visitors."""
        ...

    def dwell_histogram(self, since: datetime, until: datetime, edges: Sequence[float]) -> list[int] | None:
        """Visitors first seen in ``[since, until)`` per dwell-time bin: bin ``i`` holds visits
        of at least ``edges[i]`` seconds and less than ``edges[i + 1]`` (the last: no upper
        bound). None where the store holds no timelines or the role may not read them."""
        ...

    def apply_retention(self, policy: Policy, now: datetime | None = None) -> list[Removed]:
        """Delete everything older than the policy's ages; returns what went, table by table."""
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
