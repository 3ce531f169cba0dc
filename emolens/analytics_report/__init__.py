"""``emolens report``: a manager's view of a period as one self-contained HTML file (inline SVG
plots and the tables behind them), or those tables as CSV files in a zip.

    collect(source, since, until, by, k)  -> ReportData   (model.py: k-safe rows, derived tables)
    render(data, source_name)             -> HTML text     (html.py, svg.py)
    write_csv_zip(data, path)             -> zip of CSVs   (export.py)

Numbers come from a :class:`StatsSource`: ``source.StoreSource`` reads a store through
:func:`emolens.analytics.query_stats`, the query behind ``emolens stats`` and ``QueryStats``;
every figure rests on at least k distinct visitors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, tzinfo

from emolens import logs
from emolens.analytics_report.export import write_csv_zip
from emolens.analytics_report.html import render
from emolens.analytics_report.model import (
    DWELL_EDGES_S,
    GROUPINGS,
    ReportData,
    RowsPage,
    StatRow,
    StatsSource,
    k_safe,
    k_safe_bins,
)
from emolens.errors import ConfigError

log = logging.getLogger("emolens.report")

__all__ = [
    "GROUPINGS",
    "ReportData",
    "RowsPage",
    "StatRow",
    "StatsSource",
    "collect",
    "render",
    "write_csv_zip",
]


def collect(
    source: StatsSource,
    since: datetime,
    until: datetime,
    by: str,
    k: int,
    tz: tzinfo,
    progress: Callable[[int], None] | None = None,
) -> ReportData:
    """Query everything a report shows: ``[since, until)`` by hour and by day, the previous
    period of equal length by day, and the dwell-time bins. ``since``/``until`` are naive UTC;
    a period (hour, UTC day) counts when it starts inside the range.
    ``progress(n)`` is called after each page of ``n`` rows (the CLI's progress bar)."""
    if until <= since:
        raise ConfigError(f"--until {until:%Y-%m-%dT%H:%M} must be after --since {since:%Y-%m-%dT%H:%M}")
    if by not in GROUPINGS:
        raise ConfigError(f"--by {by!r}: use one of {', '.join(GROUPINGS)}")
    if k < 1:
        raise ConfigError(f"--k {k} must be at least 1")
    previous = since - (until - since)
    t0 = time.perf_counter()
    fetched: dict[str, list[StatRow]] = {}
    hidden = 0
    for name, start, end, every in (
        ("hourly", since, until, "hour"),
        ("daily", since, until, "day"),
        ("previous_daily", previous, since, "day"),
    ):
        rows: list[StatRow] = []
        for page in source.stat_pages(start, end, by, every, k):
            # a source may floor ``start`` to its period (query_stats does): a day that began
            # before the period (--since at 23:00 UTC, from --tz) is not part of it
            rows.extend(r for r in page.rows if r.period_start >= start)
            hidden += page.suppressed
            if progress:
                progress(len(page.rows))
        kept, dropped = k_safe(rows, k)  # the source applied k already: this holds any source to it
        fetched[name] = kept
        hidden += dropped
        logs.event(log.info, "report_query", rows=name, every=every, by=by, kept=len(kept), dropped=dropped)
    bins = source.dwell_bins(since, until, DWELL_EDGES_S)
    if progress:
        progress(0)
    data = ReportData(
        since=since,
        until=until,
        by=by,
        k=k,
        tz=tz,
        hourly=fetched["hourly"],
        daily=fetched["daily"],
        previous_daily=fetched["previous_daily"],
        dwell=None if bins is None else k_safe_bins(bins, k),
        hidden_rows=hidden,
    )
    logs.event(log.info, "report_collected", by=by, k=k, hidden=hidden, seconds=round(time.perf_counter() - t0, 2))
    return data
