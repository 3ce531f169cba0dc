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
from datetime import datetime, timedelta

from sqlalchemy import Column, Table, delete, text
from sqlalchemy.engine import Engine

from emolens import logs
from emolens.store import partitions
from emolens.store.base import Policy, Removed
from emolens.store.schema import (
    bucket_tracks,
    minute_buckets,
    rollup_daily,
    rollup_daily_tracks,
    rollup_hourly,
    rollup_hourly_tracks,
    visitor_timelines,
)

__all__ = ["Policy", "Removed", "delete_older"]

log = logging.getLogger(__name__)


def _cutoff(now: datetime, days: int) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


def delete_older(engine: Engine, policy: Policy, now: datetime) -> list[Removed]:
    """Delete what the policy's ages let go, table by table (one transaction each); the frames'
    replay window is :meth:`SqlStore.prune_seen`'s (``SqlStore.apply_retention`` runs both)."""
    plan: list[tuple[Table, Column, datetime | None]] = [
        (minute_buckets, minute_buckets.c.minute, _cutoff(now, policy.minutes_days)),
        (bucket_tracks, bucket_tracks.c.minute, _cutoff(now, policy.minutes_days)),
        (rollup_hourly, rollup_hourly.c.period_start, _cutoff(now, policy.hourly_days)),
        (rollup_daily, rollup_daily.c.period_start, _cutoff(now, policy.daily_days)),
        (rollup_hourly_tracks, rollup_hourly_tracks.c.period_start, _cutoff(now, policy.timelines_days)),
        (rollup_daily_tracks, rollup_daily_tracks.c.period_start, _cutoff(now, policy.timelines_days)),
        (visitor_timelines, visitor_timelines.c.last_seen, _cutoff(now, policy.timelines_days)),
    ]
    postgres = engine.dialect.name == "postgresql"
    out = []
    for table, column, cutoff in plan:
        removed = Removed(table.name, cutoff)
        if cutoff is not None:
            with engine.begin() as conn:
                if postgres and table.name in partitions.PARTITIONED:
                    for p in partitions.list_partitions(conn):
                        if p.table == table.name and p.end <= cutoff:
                            removed.rows += conn.execute(text(f"SELECT count(*) FROM {p.name}")).scalar_one()
                            conn.execute(text(f"DROP TABLE {p.name}"))
                            removed.partitions.append(p.name)
                removed.rows += conn.execute(delete(table).where(column < cutoff)).rowcount
            logs.event(
                log.info,
                "retention",
                table=table.name,
                cutoff=cutoff.isoformat(),
                rows=removed.rows,
                partitions=len(removed.partitions),
            )
        out.append(removed)
    return out
