"""Daily range partitions of the per-minute tables on PostgreSQL (migration 0003).

``minute_buckets`` and ``bucket_tracks`` are partitioned by ``RANGE (minute)``, one partition a
day named ``<table>_pYYYYMMDD``. There is no default partition (a new partition would have to
scan it); instead the store makes the partitions a batch needs before its transaction, in one
short transaction of its own under an advisory lock (two aggregators may race for the same
day), plus the next day's ahead of time so that the DDL rarely lands on a busy partition.
Retention drops whole partitions (:mod:`emolens.store.retention`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from emolens import logs

log = logging.getLogger(__name__)

PARTITIONED = ("minute_buckets", "bucket_tracks")
_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")
_LOCK_KEY = 0x656D6F6C656E73  # "emolens": serialises partition DDL between writers


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    day: datetime  # first instant it holds; it holds [day, day + 1 day)

    @property
    def end(self) -> datetime:
        return self.day + timedelta(days=1)


def day_of(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def partition_name(table: str, day: datetime) -> str:
    """The partition of ``table`` that holds ``day`` (the year in four digits: strftime's
    ``%Y`` writes year 1 as ``1``, a name :func:`list_partitions` would not recognise).

    >>> partition_name("minute_buckets", datetime(2026, 3, 1))
    'minute_buckets_p20260301'
    >>> partition_name("minute_buckets", datetime(1, 1, 1))
    'minute_buckets_p00010101'
    """
    return f"{table}_p{day.year:04d}{day.month:02d}{day.day:02d}"


def bounds(day: datetime) -> tuple[str, str]:
    """The range literals of ``day``'s partition. ISO dates with four-digit years: PostgreSQL
    reads ``'1-01-01'`` (what ``%Y`` writes for year 1) as 2001-01-01, which made the
    partition for year 1 hold a day of 2001 instead; the day after 9999-12-31 is beyond
    Python's dates but not PostgreSQL's.

    >>> bounds(datetime(1, 1, 1))
    ('0001-01-01', '0001-01-02')
    >>> bounds(datetime(9999, 12, 31))
    ('9999-12-31', '10000-01-01')
    """
    start = day.date()
    end = "10000-01-01" if start == date.max else (start + timedelta(days=1)).isoformat()
    return start.isoformat(), end


def create(conn: Connection, days: Iterable[datetime]) -> list[str]:
    """Make the partitions of every partitioned table for ``days`` that do not exist yet;
    returns the names made. Run in its own transaction (the lock is held to its end)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    existing = {p.name for p in list_partitions(conn)}
    made = []
    for day in sorted({day_of(d) for d in days}):
        for table in PARTITIONED:
            name = partition_name(table, day)
            if name in existing:
                continue
            start, end = bounds(day)
            conn.execute(
                text(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES FROM ('{start}') TO ('{end}')")
            )
            made.append(name)
    if made:
        logs.event(log.info, "partitions_created", names=",".join(made))
    return made


def list_partitions(conn: Connection) -> list[Partition]:
    """Every daily partition of the partitioned tables, oldest first."""
    rows = conn.execute(
        text(
            "SELECT parent.relname, child.relname FROM pg_inherits i "
            "JOIN pg_class parent ON parent.oid = i.inhparent "
            "JOIN pg_class child ON child.oid = i.inhrelid "
            "JOIN pg_namespace n ON n.oid = child.relnamespace "
            "WHERE n.nspname = current_schema() AND parent.relname IN :tables"
        ).bindparams(bindparam("tables", expanding=True)),
        {"tables": list(PARTITIONED)},
    ).all()
    out = []
    for parent, child in rows:
        m = _NAME.match(child)
        if m and m["table"] == parent:
            out.append(Partition(parent, child, datetime.strptime(m["day"], "%Y%m%d")))
    return sorted(out, key=lambda p: (p.day, p.table))
