"""Statistics for people and partners: totals per camera, zone or site and per minute, hour or
day, aggregated by the database from the right table (``minute_buckets``, ``rollup_hourly``,
``rollup_daily``), k-anonymous, paginated, and refused when too big to answer.

One function serves ``emolens stats``, the gateway's ``QueryStats`` and ``emolens report``:

>>> from datetime import datetime
>>> from emolens.store import SqlStore
>>> store = SqlStore("sqlite://")
>>> page = query_stats(store, datetime(2026, 3, 1), datetime(2026, 3, 8), by="site", every="day", k=5)
>>> page.rows, page.next_page_token, page.k
([], '', 5)

A group whose period saw fewer than ``k`` distinct visitors is left out (``suppressed`` counts
them on the first page). For zones and sites, visitors are summed over their cameras: track
ids belong to one camera, so a person seen by two cameras counts twice (docs/analytics.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, and_, case, cast, func, literal, null, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Float

from emolens.errors import InputError, QueryTooLarge
from emolens.results import EMOTIONS
from emolens.settings import MIN_K_ANONYMITY
from emolens.store.schema import cameras, minute_buckets, rollup_daily, rollup_hourly
from emolens.store.sql import SqlStore

By = Literal["camera", "zone", "site"]
Every = Literal["minute", "hour", "day"]
BY: tuple[By, ...] = ("camera", "zone", "site")
EVERY: tuple[Every, ...] = ("minute", "hour", "day")
STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
# Defaults of the limits (Settings.stats_max_rows, stats_max_page_size override them).
MAX_ROWS = 200_000  # groups x periods one query may span: a site's month by minute is 8.6 M
MAX_PAGE_SIZE = 10_000
DEFAULT_PAGE_SIZE = 1_000


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
    def top_emotion(self) -> str | None:
        return max(EMOTIONS, key=lambda e: self.emotions.get(e, 0)) if self.faces else None


@dataclass(frozen=True)
class StatsPage:
    rows: list[StatsRow]
    next_page_token: str  # "" on the last page
    k: int
    suppressed: int | None  # groups left out for k over the whole query; counted on the first page only


def _floor(t: datetime, every: Every) -> datetime:
    if every == "minute":
        return t.replace(second=0, microsecond=0)
    if every == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _ratio(num: Any, den: Any) -> ColumnElement[Any]:
    return case((den > 0, cast(num, Float) / den), else_=None)


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _encode_token(fp: str, last: StatsRow, resume: datetime) -> str:
    data = [fp, last.period_start.isoformat(), last.site, last.zone, last.camera_id, resume.isoformat()]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _decode_token(token: str, fp: str) -> tuple[tuple[datetime, str, str, str], datetime]:
    """The last row shown and the period the next page starts from (that of the first row not
    shown: nothing lies between them); a token without it resumes at the last row's period."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        tok_fp, period, site, zone, camera, *rest = data
        after = (datetime.fromisoformat(period), str(site), str(zone), str(camera))
        resume = datetime.fromisoformat(rest[0]) if rest else after[0]
        if len(rest) > 1 or resume < after[0]:
            raise ValueError(token)
    except (ValueError, TypeError) as exc:
        raise InputError("page_token is not one this server issued") from exc
    if tok_fp != fp:
        raise InputError("page_token belongs to another query: repeat the query's other fields unchanged")
    return after, resume


def query_stats(
    store: SqlStore,
    since: datetime,
    until: datetime,
    by: By = "camera",
    every: Every = "hour",
    k: int = 5,
    page_size: int = DEFAULT_PAGE_SIZE,
    page_token: str = "",
    *,
    camera_id: str | None = None,
    zone: str | None = None,
    site: str | None = None,
    camera_ids: Collection[str] | None = None,
    max_rows: int = MAX_ROWS,
    max_page_size: int = MAX_PAGE_SIZE,
) -> StatsPage:
    """Figures per ``by`` group and ``every`` period in ``[since, until)`` (``since`` is floored
    to its period; naive times are UTC), ordered by period then site, zone, camera; groups with
    fewer than ``k`` distinct visitors are left out. ``camera_ids`` limits the cameras (a
    caller's scope; empty: none). Raises :class:`~emolens.errors.InputError` for a bad
    argument or token, :class:`~emolens.errors.QueryTooLarge` when the groups times periods
    the query spans exceed ``max_rows`` (narrow the range, coarsen ``every`` or group wider)."""
    if by not in BY:
        raise InputError(f"by must be one of {', '.join(BY)}, got {by!r}")
    if every not in EVERY:
        raise InputError(f"every must be one of {', '.join(EVERY)}, got {every!r}")
    if k < MIN_K_ANONYMITY:
        raise InputError(f"k must be at least {MIN_K_ANONYMITY}, got {k}")
    if not 1 <= page_size <= max_page_size:
        raise InputError(f"page_size must be 1-{max_page_size}, got {page_size}")
    since, until = _floor(_naive(since), every), _naive(until)
    if since >= until:
        raise InputError("since must be before until")
    scope = sorted(camera_ids) if camera_ids is not None else None

    def filters(q: Select[Any]) -> Select[Any]:
        if camera_id:
            q = q.where(cameras.c.camera_id == camera_id)
        if zone:
            q = q.where(cameras.c.zone == zone)
        if site:
            q = q.where(cameras.c.site == site)
        if scope is not None:
            q = q.where(cameras.c.camera_id.in_(scope))
        return q

    fp = _fingerprint(since, until, by, every, k, camera_id, zone, site, scope)
    after, resume = _decode_token(page_token, fp) if page_token else (None, since)
    if not since <= resume <= until:
        raise InputError("page_token is not one this server issued")
    group_cols = {"camera": cameras.c.camera_id, "zone": cameras.c.zone, "site": cameras.c.site}
    with store._outage(), store.engine.connect() as conn:
        n_groups = conn.execute(
            filters(select(func.count(func.distinct(group_cols[by])))).select_from(cameras)
        ).scalar_one()
        periods = math.ceil((until - since) / STEP[every])
        if n_groups * periods > max_rows:
            raise QueryTooLarge(
                f"the query spans {n_groups} {by}(s) x {periods} {every}(s) = {n_groups * periods:,} rows, "
                f"more than {max_rows:,}: narrow the time range, use a coarser --every or group by a wider --by"
            )
        # A page reads only the periods it can show: windows from where the last page's extra
        # row lay (the token says), each just wide enough for the rows still missing (a period
        # holds at most one row per group) and twice the last one after a window with nothing
        # to show (nights, k), until it has one row more than a page. So the whole answer reads
        # every period about once, however many pages it takes: a fixed window of
        # page_size // groups periods read a second window per page for its one extra row, and
        # one query over the whole range per page would grow with pages x range.
        start = resume
        rows: list[Any] = []
        got: list[Any] = []
        width = 0
        while start < until and len(rows) <= page_size:
            missing = page_size + 1 - len(rows)
            width = max(-(-missing // max(n_groups, 1)), 2 * width if width and not got else 1)
            end = min(until, start + STEP[every] * width)
            window = filters(_grouped(by, every, start, end)).subquery()
            order = (window.c.period_start, window.c.site, window.c.zone, window.c.camera_id)
            q = select(window).where(window.c.visitors >= k)
            if after is not None and start <= after[0]:
                q = q.where(tuple_(*order) > tuple_(*[literal(v) for v in after]))
            got = list(conn.execute(q.order_by(*order).limit(missing)).all())
            rows += got
            start = end
        suppressed = None
        if after is None:
            whole = filters(_grouped(by, every, since, until)).subquery()
            suppressed = conn.execute(
                select(func.count()).select_from(whole).where(or_(whole.c.visitors < k, whole.c.visitors.is_(None)))
            ).scalar_one()
    out = [_row(r._mapping) for r in rows[:page_size]]
    token = _encode_token(fp, out[-1], rows[page_size].period_start) if len(rows) > page_size else ""
    return StatsPage(out, token, k, suppressed)


def _grouped(by: By, every: Every, since: datetime, until: datetime) -> Select[Any]:
    """The per-group, per-period sums, before k and pagination."""
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
    return (
        select(*cols)
        .select_from(t.join(cameras, cameras.c.camera_id == t.c.camera_id))
        .where(and_(period >= since, period < until))
        .group_by(*keys, period)
    )


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


def query_all(store: SqlStore, since: datetime, until: datetime, **kwargs: Any) -> list[StatsRow]:
    """Every page of :func:`query_stats` (same arguments), for callers that want the whole answer."""
    rows: list[StatsRow] = []
    token = ""
    while True:
        page = query_stats(store, since, until, page_token=token, **kwargs)
        rows.extend(page.rows)
        token = page.next_page_token
        if not token:
            return rows
