"""Retention: delete what is older than the configured ages (``emolens retention apply``).

| data | age setting (``EMOLENS_...``) | by |
| --- | --- | --- |
| ``minute_buckets``, ``bucket_tracks`` | ``RETENTION_MINUTES_DAYS`` | ``minute`` |
| ``rollup_hourly`` | ``RETENTION_HOURLY_DAYS`` | ``period_start`` |
| ``rollup_daily`` | ``RETENTION_DAILY_DAYS`` | ``period_start`` |
| ``visitor_timelines`` | ``RETENTION_TIMELINES_DAYS`` | ``last_seen`` |
| ``rollup_hourly_tracks``, ``rollup_daily_tracks`` | ``RETENTION_TIMELINES_DAYS`` | ``period_start`` |
| ``frames_seen_blocks`` | ``REPLAY_WINDOW_S`` | ``seen_at``, 1024 frames a row (:meth:`SqlStore.prune_seen`) |

A row goes when its time is before ``now - age``; an age of 0 keeps a table forever. On
PostgreSQL the per-minute tables drop every daily partition that ends at or before the cutoff
(no row-by-row delete, no bloat) and delete rows only in the one partition the cutoff falls
in. The per-period track lists are anonymous track ids, so they share the timelines' shorter
age: after it, a late frame for such an old hour would count its visitor again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Table, delete, text

from emolens.settings import Settings
from emolens.store import partitions
from emolens.store.schema import (
    bucket_tracks,
    minute_buckets,
    rollup_daily,
    rollup_daily_tracks,
    rollup_hourly,
    rollup_hourly_tracks,
    visitor_timelines,
)
from emolens.store.sql import SqlStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """Ages in days (0 = keep forever) and the replay window in seconds."""

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


def _cutoff(now: datetime, days: int) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


def apply_retention(store: SqlStore, policy: Policy, now: datetime | None = None) -> list[Removed]:
    """Delete everything older than the policy's ages; returns what went, table by table."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    plan: list[tuple[Table, Column, datetime | None]] = [
        (minute_buckets, minute_buckets.c.minute, _cutoff(now, policy.minutes_days)),
        (bucket_tracks, bucket_tracks.c.minute, _cutoff(now, policy.minutes_days)),
        (rollup_hourly, rollup_hourly.c.period_start, _cutoff(now, policy.hourly_days)),
        (rollup_daily, rollup_daily.c.period_start, _cutoff(now, policy.daily_days)),
        (rollup_hourly_tracks, rollup_hourly_tracks.c.period_start, _cutoff(now, policy.timelines_days)),
        (rollup_daily_tracks, rollup_daily_tracks.c.period_start, _cutoff(now, policy.timelines_days)),
        (visitor_timelines, visitor_timelines.c.last_seen, _cutoff(now, policy.timelines_days)),
    ]
    postgres = store.engine.dialect.name == "postgresql"
    out = []
    with store._outage():
        for table, column, cutoff in plan:
            removed = Removed(table.name, cutoff)
            if cutoff is not None:
                with store.engine.begin() as conn:
                    if postgres and table.name in partitions.PARTITIONED:
                        for p in partitions.list_partitions(conn):
                            if p.table == table.name and p.end <= cutoff:
                                removed.rows += conn.execute(text(f"SELECT count(*) FROM {p.name}")).scalar_one()
                                conn.execute(text(f"DROP TABLE {p.name}"))
                                removed.partitions.append(p.name)
                    removed.rows += conn.execute(delete(table).where(column < cutoff)).rowcount
                store._partitions.clear()  # a dropped day is made again if a backfill needs it
                log.info(
                    "event=retention table=%s cutoff=%s rows=%d partitions=%d",
                    table.name,
                    cutoff.isoformat(),
                    removed.rows,
                    len(removed.partitions),
                )
            out.append(removed)
    seen = Removed("frames_seen_blocks", now - timedelta(seconds=policy.replay_window_s))
    seen.rows = store.prune_seen(timedelta(seconds=policy.replay_window_s))
    out.append(seen)
    return out
