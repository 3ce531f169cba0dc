"""The SQL behind the store's statistics reads (:class:`~emolens.store.base.Store`'s
``count_groups``, ``stats_rows``, ``count_suppressed`` and ``dwell_histogram``): sums per group
and period from the right table (``minute_buckets``, ``rollup_hourly``, ``rollup_daily``),
aggregated by the database, and the dwell-time bins of ``visitor_timelines``. Every statement
runs on SQLite and PostgreSQL; where their SQL differs (the seconds between two timestamps) the
difference lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, cast, func, literal, null, or_, select, text, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Float

from emolens.results import EMOTIONS
from emolens.store.base import By, Every, RowKey, StatsFilter, StatsRow
from emolens.store.schema import cameras, minute_buckets, rollup_daily, rollup_hourly

GROUP_COLUMNS = {"camera": cameras.c.camera_id, "zone": cameras.c.zone, "site": cameras.c.site}


def _ratio(num: Any, den: Any) -> ColumnElement[Any]:
    return case((den > 0, cast(num, Float) / den), else_=None)


def _filtered(q: Select[Any], where: StatsFilter) -> Select[Any]:
    if where.camera_id:
        q = q.where(cameras.c.camera_id == where.camera_id)
    if where.zone:
        q = q.where(cameras.c.zone == where.zone)
    if where.site:
        q = q.where(cameras.c.site == where.site)
    if where.camera_ids is not None:
        q = q.where(cameras.c.camera_id.in_(sorted(where.camera_ids)))
    return q


def count_groups(conn: Connection, by: By, where: StatsFilter) -> int:
    q = _filtered(select(func.count(func.distinct(GROUP_COLUMNS[by]))).select_from(cameras), where)
    return int(conn.execute(q).scalar_one())


def grouped(by: By, every: Every, since: datetime, until: datetime, where: StatsFilter | None = None) -> Select[Any]:
    """The per-group, per-period sums, before k and pagination (``emolens bench`` EXPLAINs it)."""
    if every == "minute":
        t = minute_buckets
        period = t.c.minute
        # the minute's distinct tracks; a minute of untracked faces counts its faces (Bucket.suppressed)
        visitors: Any = case((t.c.tracks > 0, t.c.tracks), else_=t.c.faces)
        dwell: Any = None
    else:
        t = rollup_hourly if every == "hour" else rollup_daily
        period = t.c.period_start
        visitors = t.c.visitors
        dwell = t.c.dwell_s_sum
    site = cameras.c.site
    zone_col: Any = cameras.c.zone if by in ("camera", "zone") else literal("")
    camera: Any = cameras.c.camera_id if by == "camera" else literal("")
    keys = (
        [site]
        + ([cameras.c.zone] if by in ("camera", "zone") else [])
        + ([cameras.c.camera_id] if by == "camera" else [])
    )
    faces, smiles, visitors_sum = func.sum(t.c.faces), func.sum(t.c.smiles), func.sum(visitors)
    cols: list[Any] = [
        site.label("site"),
        zone_col.label("zone"),
        camera.label("camera_id"),
        period.label("period_start"),
        func.count(func.distinct(t.c.camera_id)).label("cameras"),
        func.sum(t.c.frames).label("frames"),
        faces.label("faces"),
        visitors_sum.label("visitors"),
        func.sum(t.c.low_quality).label("low_quality"),
        smiles.label("smiles"),
        _ratio(smiles, faces).label("smile_rate"),
        _ratio(func.sum(t.c.quality_sum), faces).label("mean_quality"),
        # a typed NULL: a bare parameter reaches PostgreSQL as text, whose OID (25) the Float
        # result processor refused ("Unknown PG numeric type: 25": every minute query failed)
        (_ratio(func.sum(dwell), visitors_sum) if dwell is not None else cast(null(), Float)).label("mean_dwell_s"),
        *[func.sum(t.c[f"n_{e}"]).label(f"n_{e}") for e in EMOTIONS],
    ]
    q = (
        select(*cols)
        .select_from(t.join(cameras, cameras.c.camera_id == t.c.camera_id))
        .where(and_(period >= since, period < until))
        .group_by(*keys, period)
    )
    return _filtered(q, where or StatsFilter())


def stats_rows(
    conn: Connection,
    by: By,
    every: Every,
    since: datetime,
    until: datetime,
    where: StatsFilter,
    k: int,
    after: RowKey | None,
    limit: int | None,
) -> list[StatsRow]:
    window = grouped(by, every, since, until, where).subquery()
    order = (window.c.period_start, window.c.site, window.c.zone, window.c.camera_id)
    q = select(window).where(window.c.visitors >= k)
    if after is not None:
        q = q.where(tuple_(*order) > tuple_(*[literal(v) for v in after]))
    q = q.order_by(*order)
    if limit is not None:
        q = q.limit(limit)
    return [_row(r._mapping) for r in conn.execute(q)]


def count_suppressed(
    conn: Connection, by: By, every: Every, since: datetime, until: datetime, where: StatsFilter, k: int
) -> int:
    whole = grouped(by, every, since, until, where).subquery()
    q = select(func.count()).select_from(whole).where(or_(whole.c.visitors < k, whole.c.visitors.is_(None)))
    return int(conn.execute(q).scalar_one())


def _row(m: Any) -> StatsRow:
    def opt(v: Any) -> float | None:
        return None if v is None else float(v)

    return StatsRow(
        site=m["site"],
        zone=m["zone"],
        camera_id=m["camera_id"],
        period_start=m["period_start"],
        cameras=int(m["cameras"]),
        frames=int(m["frames"]),
        faces=int(m["faces"]),
        visitors=int(m["visitors"]),
        low_quality=int(m["low_quality"]),
        smiles=int(m["smiles"]),
        smile_rate=opt(m["smile_rate"]),
        mean_quality=opt(m["mean_quality"]),
        mean_dwell_s=opt(m["mean_dwell_s"]),
        emotions={e: int(m[f"n_{e}"]) for e in EMOTIONS},
    )


def dwell_histogram(conn: Connection, since: datetime, until: datetime, edges: Sequence[float]) -> list[int]:
    """Visitors first seen in ``[since, until)`` per bin of ``edges``, binned in the database
    (a month of a city's visitors is millions of timelines)."""
    if conn.dialect.name == "postgresql":
        seconds = "EXTRACT(EPOCH FROM (last_seen - first_seen))"
    else:
        # julianday's doubles put an exact 60 s visit at 59.99999... s, in the bin below the
        # one PostgreSQL gives it: rounded to the millisecond, both bin alike
        seconds = "round((julianday(last_seen) - julianday(first_seen)) * 86400.0, 3)"
    cases = " ".join(f"WHEN {seconds} < {float(hi)!r} THEN {i}" for i, hi in enumerate(edges[1:]))
    sql = (
        f"SELECT CASE {cases} ELSE {len(edges) - 1} END AS bin, COUNT(*) FROM visitor_timelines "
        "WHERE first_seen >= :since AND first_seen < :until GROUP BY 1"
    )
    counts = {int(b): int(n) for b, n in conn.execute(text(sql), {"since": since, "until": until})}
    return [counts.get(i, 0) for i in range(len(edges))]


def missing_or_denied(exc: DBAPIError) -> bool:
    """The table is not there, or the role may not read it (an analyst role without timelines)."""
    message = str(exc.orig).lower()
    return any(s in message for s in ("no such table", "does not exist", "permission denied"))
