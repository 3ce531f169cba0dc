"""Writing what new frames add: minute buckets, hourly and daily rollups with distinct visitors,
and visitor timelines, all in the caller's transaction.

Why in the same transaction as the minute buckets, by the aggregator, rather than by a later
rollup job: ``SqlStore.apply`` is already the single writer of a camera's numbers (Kafka keys
frames by camera, and apply locks each camera's row on PostgreSQL for the rare moment two
aggregators share one during a rebalance) and already idempotent (a frame counts once). Adding
the rollups there keeps them exactly as idempotent, never behind the minutes, and costs a
handful of upserts per batch; a separate job would need its own bookkeeping of what it had
rolled up, and a reader could see minutes that the hours do not hold yet.

Definitions (docs/analytics.md):

- ``visitors``: distinct track ids the camera saw in the period (a usable face without a track
  id counts as one visitor); a visitor present in 30 minutes of an hour counts once in it.
- ``dwell_s_sum``: over the period's visitors, the seconds between their first and last
  sighting *within that period* (so an hour's dwell never exceeds 3,600 s per visitor, and a
  visit across midnight is split between the two days). ``visitor_timelines`` holds the whole
  visit: ``last_seen - first_seen`` over all periods.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, select, tuple_
from sqlalchemy.engine import Connection

from emolens.results import EMOTIONS
from emolens.store.base import Bucket, Folded, Sighting
from emolens.store.schema import (
    bucket_tracks,
    minute_buckets,
    rollup_daily,
    rollup_daily_tracks,
    rollup_hourly,
    rollup_hourly_tracks,
    visitor_timelines,
)

SUMMED = ["frames", "faces", "low_quality", "smiles", "smile_sum", "quality_sum"] + [
    f"{p}_{e}" for p in ("n", "p") for e in EMOTIONS
]
_KEYS_PER_SELECT = 2000  # (camera, period, track) keys per IN list: SQLite allows 32,766 variables


def hour_of(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def day_of(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Grain:
    name: str  # hour | day
    rollup: Table
    tracks: Table
    start: Callable[[datetime], datetime]


GRAINS = (
    Grain("hour", rollup_hourly, rollup_hourly_tracks, hour_of),
    Grain("day", rollup_daily, rollup_daily_tracks, day_of),
)


def bucket_row(b: Bucket) -> dict[str, Any]:
    row: dict[str, Any] = {
        "camera_id": b.camera_id,
        "minute": b.minute,
        "frames": b.frames,
        "faces": b.faces,
        "tracks": b.tracks,
        "low_quality": b.low_quality,
        "smiles": b.smiles,
        "smile_sum": b.smile_sum,
        "quality_sum": b.quality_sum,
    }
    row.update({f"n_{e}": b.counts[e] for e in EMOTIONS})
    row.update({f"p_{e}": b.prob_sums[e] for e in EMOTIONS})
    return row


def _chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def write(conn: Connection, dialect: Any, folded: Folded) -> None:
    """Add ``folded`` (frames already known to be new) to every table that sums them."""
    buckets = folded.buckets
    if folded.sightings:
        fresh = conn.execute(
            dialect.insert(bucket_tracks)
            .on_conflict_do_nothing()
            .returning(bucket_tracks.c.camera_id, bucket_tracks.c.minute),
            [{"camera_id": s.camera_id, "minute": s.minute, "track_id": s.track_id} for s in folded.sightings.values()],
        ).all()
        for c, m in fresh:
            buckets[(c, m)].tracks += 1
    minute_rows = [bucket_row(b) for b in buckets.values()]
    for grain in GRAINS:
        _write_grain(conn, dialect, grain, folded, minute_rows)
    if folded.sightings:
        _write_timelines(conn, dialect, folded.sightings.values())
    stmt = dialect.insert(minute_buckets)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["camera_id", "minute"],
        set_={col: minute_buckets.c[col] + excluded[col] for col in [*SUMMED, "tracks"]},
    )
    conn.execute(stmt, minute_rows)


def _write_grain(
    conn: Connection, dialect: Any, grain: Grain, folded: Folded, minute_rows: list[dict[str, Any]]
) -> None:
    visitors, dwell = _write_tracks(conn, dialect, grain, _spans(grain, folded))
    for (camera_id, minute), n in folded.untracked.items():
        visitors[(camera_id, grain.start(minute))] += n
    sums = _period_sums(grain, minute_rows)
    for period, acc in sums.items():
        acc["visitors"] = visitors.get(period, 0)
        acc["dwell_s_sum"] = dwell.get(period, 0.0)
    rollup = grain.rollup
    upsert = dialect.insert(rollup)
    upsert = upsert.on_conflict_do_update(
        index_elements=["camera_id", "period_start"],
        set_={c: rollup.c[c] + upsert.excluded[c] for c in [*SUMMED, "visitors", "dwell_s_sum"]},
    )
    if sums:
        conn.execute(upsert, list(sums.values()))


_TrackKey = tuple[str, datetime, int]  # camera, period start, track id


def _spans(grain: Grain, folded: Folded) -> dict[_TrackKey, list[datetime]]:
    """First and last sighting of each track in each of the grain's periods, from this batch."""
    seen: dict[_TrackKey, list[datetime]] = {}
    for s in folded.sightings.values():
        key = (s.camera_id, grain.start(s.minute), s.track_id)
        span = seen.get(key)
        if span is None:
            seen[key] = [s.first_seen, s.last_seen]
        else:
            span[0], span[1] = min(span[0], s.first_seen), max(span[1], s.last_seen)
    return seen


def _write_tracks(
    conn: Connection, dialect: Any, grain: Grain, seen: dict[_TrackKey, list[datetime]]
) -> tuple[defaultdict[tuple[str, datetime], int], defaultdict[tuple[str, datetime], float]]:
    """Merge ``seen`` into the grain's per-track spans; the visitors new to each period and the
    dwell seconds each period gains (a known track adds only how much longer it now stayed)."""
    visitors: defaultdict[tuple[str, datetime], int] = defaultdict(int)
    dwell: defaultdict[tuple[str, datetime], float] = defaultdict(float)
    if not seen:
        return visitors, dwell
    t = grain.tracks
    known: dict[_TrackKey, tuple[datetime, datetime]] = {}
    for chunk in _chunks(list(seen), _KEYS_PER_SELECT):
        found = conn.execute(
            select(t.c.camera_id, t.c.period_start, t.c.track_id, t.c.first_seen, t.c.last_seen).where(
                tuple_(t.c.camera_id, t.c.period_start, t.c.track_id).in_(chunk)
            )
        ).all()
        known.update({(r[0], r[1], r[2]): (r[3], r[4]) for r in found})
    changed = []
    for key, (first, last) in seen.items():
        old = known.get(key)
        if old is None:
            visitors[key[:2]] += 1
            dwell[key[:2]] += (last - first).total_seconds()
        else:
            first, last = min(first, old[0]), max(last, old[1])
            if (first, last) == old:
                continue
            dwell[key[:2]] += (last - first).total_seconds() - (old[1] - old[0]).total_seconds()
        changed.append(
            {"camera_id": key[0], "period_start": key[1], "track_id": key[2], "first_seen": first, "last_seen": last}
        )
    if changed:
        stmt = dialect.insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=["camera_id", "period_start", "track_id"],
            set_={"first_seen": stmt.excluded.first_seen, "last_seen": stmt.excluded.last_seen},
        )
        conn.execute(stmt, changed)
    return visitors, dwell


def _period_sums(grain: Grain, minute_rows: list[dict[str, Any]]) -> dict[tuple[str, datetime], dict[str, Any]]:
    """The summed columns of this batch's minute rows, per camera and period of the grain."""
    sums: dict[tuple[str, datetime], dict[str, Any]] = {}
    for src in minute_rows:
        period = (src["camera_id"], grain.start(src["minute"]))
        acc = sums.get(period)
        if acc is None:
            sums[period] = {"camera_id": period[0], "period_start": period[1], **{c: src[c] for c in SUMMED}}
        else:
            for c in SUMMED:
                acc[c] += src[c]
    return sums


def _write_timelines(conn: Connection, dialect: Any, sightings: Iterable[Sighting]) -> None:
    per: dict[tuple[str, int], dict[str, Any]] = {}
    for s in sightings:
        row = per.get((s.camera_id, s.track_id))
        if row is None:
            per[(s.camera_id, s.track_id)] = {
                "camera_id": s.camera_id,
                "track_id": s.track_id,
                "first_seen": s.first_seen,
                "last_seen": s.last_seen,
                "faces": s.faces,
                "smiles": s.smiles,
                "smile_sum": s.smile_sum,
                **{f"n_{e}": s.counts[e] for e in EMOTIONS},
            }
            continue
        row["first_seen"] = min(row["first_seen"], s.first_seen)
        row["last_seen"] = max(row["last_seen"], s.last_seen)
        for c, add in (("faces", s.faces), ("smiles", s.smiles), ("smile_sum", s.smile_sum)):
            row[c] += add
        for e in EMOTIONS:
            row[f"n_{e}"] += s.counts[e]
    v: Table = visitor_timelines
    stmt = dialect.insert(v)
    ex = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["camera_id", "track_id"],
        set_={
            "first_seen": case((ex.first_seen < v.c.first_seen, ex.first_seen), else_=v.c.first_seen),
            "last_seen": case((ex.last_seen > v.c.last_seen, ex.last_seen), else_=v.c.last_seen),
            **{c: v.c[c] + ex[c] for c in ["faces", "smiles", "smile_sum", *[f"n_{e}" for e in EMOTIONS]]},
        },
    )
    conn.execute(stmt, list(per.values()))
