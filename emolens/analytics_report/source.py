"""Where a report's numbers come from: :func:`emolens.analytics.query_stats`, the one k-safe,
paginated query that also answers ``emolens stats`` and the gateway's ``QueryStats`` (so the
three agree), and the store's visitor timelines for the dwell-time distribution.

Groups are labelled as a manager reads them: a camera by its id, a zone as ``site/zone`` (zone
names repeat across sites), a site by its name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from emolens.analytics import BY, EVERY, MAX_PAGE_SIZE, MAX_ROWS, StatsRow, pages
from emolens.analytics_report.model import DwellBin, RowsPage, StatRow
from emolens.errors import InputError, QueryTooLarge
from emolens.results import EMOTIONS
from emolens.store import Store


def group_label(row: StatsRow, by: str) -> str:
    """>>> from datetime import datetime
    >>> r = StatsRow("mall-a", "entrance", "", datetime(2026, 3, 1), 2, 10, 9, 5, 0, 3, 0.3, 0.8, 20.0)
    >>> group_label(r, "zone"), group_label(r, "site")
    ('mall-a/entrance', 'mall-a')
    """
    if by == "camera":
        return row.camera_id
    if by == "zone":
        return f"{row.site}/{row.zone}"
    return row.site


def _stat_row(row: StatsRow, by: str) -> StatRow:
    return StatRow(
        group=group_label(row, by),
        period_start=row.period_start,
        faces=row.faces,
        visitors=row.visitors,
        smiles=row.smiles,
        mean_quality=row.mean_quality or 0.0,
        mean_dwell_s=row.mean_dwell_s,
        counts={e: row.emotions.get(e, 0) for e in EMOTIONS},
    )


class StoreSource:
    """Reads a :class:`~emolens.store.Store` through ``query_stats``, ``page_size`` rows a page.

    >>> from datetime import datetime
    >>> from emolens.store import SqlStore
    >>> source = StoreSource(SqlStore("sqlite://"))
    >>> [p.rows for p in source.stat_pages(datetime(2026, 3, 1), datetime(2026, 3, 8), "zone", "hour", 5)]
    [[]]
    """

    def __init__(self, store: Store, page_size: int = MAX_PAGE_SIZE, max_rows: int = MAX_ROWS) -> None:
        self.store = store
        self.page_size = page_size
        self.max_rows = max_rows

    def stat_pages(self, since: datetime, until: datetime, by: str, every: str, k: int) -> Iterator[RowsPage]:
        group = next((b for b in BY if b == by), None)
        period = next((e for e in EVERY if e == every), None)
        if group is None or period is None:
            raise InputError(f"by must be one of {', '.join(BY)} and every one of {', '.join(EVERY)}")
        answer = pages(
            self.store,
            since,
            until,
            by=group,
            every=period,
            k=k,
            page_size=self.page_size,
            max_rows=self.max_rows,
            max_page_size=max(self.page_size, MAX_PAGE_SIZE),
        )
        try:
            for page in answer:
                yield RowsPage([_stat_row(r, by) for r in page.rows], page.suppressed or 0)
        except QueryTooLarge as exc:
            # the report needs hours (heat maps, busiest hours): only a shorter period or
            # wider groups make it smaller
            wider = [b for b in BY[BY.index(by) + 1 :] if b in ("zone", "site")] if by in BY else []
            raise QueryTooLarge(
                f"the report's {every}ly figures by {by} span {exc.span}: shorten --since/--until"
                + (f" or use a wider --by ({', '.join(wider)})" if wider else ""),
                span=exc.span,
            ) from exc

    def dwell_bins(self, since: datetime, until: datetime, edges: Sequence[float]) -> list[DwellBin] | None:
        counts = self.store.dwell_histogram(since, until, edges)
        if counts is None:
            return None  # a database without timelines, or a role that may not read them
        return [
            DwellBin(float(lo), float(edges[i + 1]) if i + 1 < len(edges) else None, counts[i])
            for i, lo in enumerate(edges)
        ]
