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
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from emolens.errors import InputError, QueryTooLarge
from emolens.settings import MIN_K_ANONYMITY, Settings
from emolens.store.base import BY, EVERY, By, Every, StatsFilter, StatsRow, Store

__all__ = [
    "BY",
    "DEFAULT_PAGE_SIZE",
    "EVERY",
    "MAX_PAGE_SIZE",
    "MAX_ROWS",
    "STEP",
    "By",
    "Every",
    "StatsPage",
    "StatsRow",
    "pages",
    "query_all",
    "query_stats",
]

STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
# Defaults of the limits (Settings.stats_max_rows, stats_max_page_size override them).
# groups x periods one query may span (a site's month by minute is 8.6 M), and the largest page:
# Settings' defaults (EMOLENS_STATS_MAX_ROWS, EMOLENS_STATS_MAX_PAGE_SIZE), their one home
MAX_ROWS = Settings.stats_max_rows
MAX_PAGE_SIZE = Settings.stats_max_page_size
DEFAULT_PAGE_SIZE = 1_000


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
    store: Store,
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
    scope = tuple(sorted(camera_ids)) if camera_ids is not None else None
    where = StatsFilter(camera_id, zone, site, scope)
    fp = _fingerprint(since, until, by, every, k, camera_id, zone, site, list(scope) if scope is not None else None)
    after, resume = _decode_token(page_token, fp) if page_token else (None, since)
    if not since <= resume <= until:
        raise InputError("page_token is not one this server issued")
    n_groups = store.count_groups(by, where)
    periods = math.ceil((until - since) / STEP[every])
    if n_groups * periods > max_rows:
        span = f"{n_groups} {by}(s) x {periods} {every}(s) = {n_groups * periods:,} rows, more than {max_rows:,}"
        raise QueryTooLarge(
            f"the query spans {span}: narrow the time range, use a coarser --every or group by a wider --by",
            span=span,
        )
    # A page reads only the periods it can show: windows from where the last page's extra
    # row lay (the token says), each just wide enough for the rows still missing (a period
    # holds at most one row per group) and twice the last one after a window with nothing
    # to show (nights, k), until it has one row more than a page. So the whole answer reads
    # every period about once, however many pages it takes: a fixed window of
    # page_size // groups periods read a second window per page for its one extra row, and
    # one query over the whole range per page would grow with pages x range.
    start = resume
    rows: list[StatsRow] = []
    got: list[StatsRow] = []
    width = 0
    while start < until and len(rows) <= page_size:
        missing = page_size + 1 - len(rows)
        width = max(-(-missing // max(n_groups, 1)), 2 * width if width and not got else 1)
        end = min(until, start + STEP[every] * width)
        skip = after if after is not None and start <= after[0] else None
        got = store.stats_rows(by, every, start, end, where, k=k, after=skip, limit=missing)
        rows += got
        start = end
    suppressed = None if after is not None else store.count_suppressed(by, every, since, until, where, k)
    out = rows[:page_size]
    token = _encode_token(fp, out[-1], rows[page_size].period_start) if len(rows) > page_size else ""
    return StatsPage(out, token, k, suppressed)


def pages(store: Store, since: datetime, until: datetime, **kwargs: Any) -> Iterator[StatsPage]:
    """Every page of :func:`query_stats` (same arguments but ``page_token``), one at a time:
    the one loop over page tokens that ``emolens stats``, the report and :func:`query_all` use."""
    token = ""
    while True:
        page = query_stats(store, since, until, page_token=token, **kwargs)
        yield page
        token = page.next_page_token
        if not token:
            return


def query_all(store: Store, since: datetime, until: datetime, **kwargs: Any) -> list[StatsRow]:
    """Every page of :func:`query_stats` (same arguments), for callers that want the whole answer."""
    return [row for page in pages(store, since, until, **kwargs) for row in page.rows]
