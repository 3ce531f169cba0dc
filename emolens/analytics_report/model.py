"""What a report is made of: k-safe group-periods from the store, and the tables derived from
them. Every plot in the HTML is drawn from one of these tables, and ``--format csv`` writes the
same tables, so a number in a chart can always be found in a spreadsheet.

k-anonymity: rows arrive from the k-safe query already suppressed; a row with fewer than ``k``
distinct visitors is dropped here as well (any source is held to it), and every derived figure
is a sum over kept rows only, so it rests on at least ``k`` visitors too. Dwell-time bins
with fewer than ``k`` visitors are hidden the same way.

>>> from datetime import datetime
>>> row = StatRow("lobby", datetime(2026, 3, 2, 9), faces=40, visitors=6, smiles=10,
...               mean_quality=0.8, mean_dwell_s=12.0, counts={"happy": 10, "neutral": 30})
>>> round(row.smile_rate, 2), row.count("sad")
(0.25, 0)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

from emolens.results import EMOTIONS

GROUPINGS = ("zone", "site", "camera")
# A report over more than this many days plots days, not hours (a bar per hour would be unreadable).
HOURLY_SERIES_MAX_DAYS = 3
# Dwell-time histogram edges, seconds: short glances to long stays.
DWELL_EDGES_S = (0, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]  # datetime.weekday() order


@dataclass(frozen=True)
class StatRow:
    """One group (zone, site or camera) in one period (an hour or a day), as the k-safe
    analytics views and ``query_stats`` return it. ``period_start`` is naive UTC."""

    group: str
    period_start: datetime
    faces: int
    visitors: int
    smiles: int
    mean_quality: float
    mean_dwell_s: float | None
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def smile_rate(self) -> float:
        return self.smiles / self.faces if self.faces else 0.0

    def count(self, emotion: str) -> int:
        return int(self.counts.get(emotion, 0))


@dataclass(frozen=True)
class DwellBin:
    """Visitors whose dwell time fell in ``[low_s, high_s)`` (``high_s`` None: and longer);
    ``visitors`` is None when fewer than k fell there (suppressed)."""

    low_s: float
    high_s: float | None
    visitors: int | None

    @property
    def label(self) -> str:
        return f"{_dur(self.low_s)}+" if self.high_s is None else f"{_dur(self.low_s)}-{_dur(self.high_s)}"


def _dur(s: float) -> str:
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g}m"
    return f"{s:g}s"


@dataclass
class ReportData:
    """Everything one report shows: the current period's hourly and daily rows, the previous
    period's daily rows (the same length, just before), and the dwell-time histogram."""

    since: datetime
    until: datetime
    by: str
    k: int
    tz: tzinfo
    hourly: list[StatRow]
    daily: list[StatRow]
    previous_daily: list[StatRow]
    dwell: list[DwellBin] | None
    hidden_rows: int = 0  # group-periods left out because they held fewer than k visitors

    @property
    def previous_since(self) -> datetime:
        return self.since - (self.until - self.since)

    @property
    def hourly_series(self) -> bool:
        return self.until - self.since <= timedelta(days=HOURLY_SERIES_MAX_DAYS)

    def local(self, utc_naive: datetime) -> datetime:
        return utc_naive.replace(tzinfo=UTC).astimezone(self.tz)


@dataclass(frozen=True)
class RowsPage:
    """One page of k-safe rows, and how many group-periods the source itself left out for k
    (known on a query's first page; 0 on the others)."""

    rows: list[StatRow]
    suppressed: int = 0


class StatsSource(Protocol):
    """k-safe group-periods and dwell-time bins for a report."""

    def stat_pages(self, since: datetime, until: datetime, by: str, every: str, k: int) -> Iterator[RowsPage]:
        """Rows of ``[since, until)`` (naive UTC) grouped ``by`` camera, zone or site, ``every``
        hour or day, each with at least ``k`` distinct visitors, in pages (a progress step each)."""
        ...

    def dwell_bins(self, since: datetime, until: datetime, edges: Sequence[float]) -> list[DwellBin] | None:
        """Visitors first seen in ``[since, until)`` per dwell-time bin (unsuppressed counts:
        the caller applies k), or None when there are no visitor timelines to read."""
        ...


def k_safe(rows: Iterable[StatRow], k: int) -> tuple[list[StatRow], int]:
    """The rows with at least ``k`` distinct visitors, and how many were dropped.

    >>> day = datetime(2026, 1, 1)
    >>> rows = [StatRow("a", day, 9, 4, 1, 0.5, None), StatRow("b", day, 9, 5, 1, 0.5, None)]
    >>> [r.group for r in k_safe(rows, 5)[0]], k_safe(rows, 5)[1]
    (['b'], 1)
    """
    kept, dropped = [], 0
    for r in rows:
        if r.visitors >= k:
            kept.append(r)
        else:
            dropped += 1
    return kept, dropped


def k_safe_bins(bins: Iterable[DwellBin], k: int) -> list[DwellBin]:
    return [b if b.visitors is None or b.visitors >= k else DwellBin(b.low_s, b.high_s, None) for b in bins]


@dataclass(frozen=True)
class Table:
    """A table behind a plot: ``name`` is its CSV file's stem."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class Totals:
    faces: int
    visitors: int
    smiles: int
    dwell_weighted: float  # sum of mean dwell x visitors, over rows that have a dwell
    dwell_visitors: int
    counts: dict[str, int]

    @property
    def smile_rate(self) -> float | None:
        return self.smiles / self.faces if self.faces else None

    @property
    def mean_dwell_s(self) -> float | None:
        return self.dwell_weighted / self.dwell_visitors if self.dwell_visitors else None

    def share(self, emotion: str) -> float | None:
        return self.counts[emotion] / self.faces if self.faces else None


def totals(rows: Iterable[StatRow]) -> Totals:
    faces = visitors = smiles = dwell_visitors = 0
    dwell = 0.0
    counts = dict.fromkeys(EMOTIONS, 0)
    for r in rows:
        faces += r.faces
        visitors += r.visitors
        smiles += r.smiles
        if r.mean_dwell_s is not None:
            dwell += r.mean_dwell_s * r.visitors
            dwell_visitors += r.visitors
        for e in EMOTIONS:
            counts[e] += r.count(e)
    return Totals(faces, visitors, smiles, dwell, dwell_visitors, counts)


def _pct_change(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return 100.0 * (now - before) / before


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


# ---------------------------------------------------------------- the tables


def summary_table(data: ReportData) -> Table:
    """Headline figures, this period against the previous one of equal length. Visitors are
    distinct per camera and day, summed (a visitor seen on two days counts twice)."""
    now, before = totals(data.daily), totals(data.previous_daily)
    rows: list[list[Any]] = [
        ["visitors", now.visitors, before.visitors, _r(_pct_change(now.visitors, before.visitors), 1), "%"],
        ["faces", now.faces, before.faces, _r(_pct_change(now.faces, before.faces), 1), "%"],
        [
            "smile_rate",
            _r(now.smile_rate),
            _r(before.smile_rate),
            _r(
                None
                if now.smile_rate is None or before.smile_rate is None
                else 100 * (now.smile_rate - before.smile_rate),
                1,
            ),
            "pp",
        ],
        [
            "mean_dwell_s",
            _r(now.mean_dwell_s, 1),
            _r(before.mean_dwell_s, 1),
            _r(_pct_change(now.mean_dwell_s, before.mean_dwell_s), 1),
            "%",
        ],
    ]
    for e in EMOTIONS:
        a, b = now.share(e), before.share(e)
        rows.append([f"share_{e}", _r(a), _r(b), _r(None if a is None or b is None else 100 * (a - b), 1), "pp"])
    return Table(
        "summary",
        "This period against the previous period of equal length",
        ["metric", "this_period", "previous_period", "change", "change_unit"],
        rows,
    )


def change_by_group_table(data: ReportData) -> Table:
    """Per group: visitors and smile rate now and before; groups ranked by visitors now."""
    now = _by_group(data.daily)
    before = _by_group(data.previous_daily)
    rows = []
    for g in sorted(set(now) | set(before), key=lambda g: (-(now[g].visitors if g in now else 0), g)):
        a, b = now.get(g), before.get(g)
        va, vb = (a.visitors if a else None), (b.visitors if b else None)
        sa, sb = (a.smile_rate if a else None), (b.smile_rate if b else None)
        rows.append(
            [
                g,
                va,
                vb,
                _r(_pct_change(va, vb), 1),
                _r(sa),
                _r(sb),
                _r(None if sa is None or sb is None else 100 * (sa - sb), 1),
            ]
        )
    return Table(
        "change_by_group",
        f"Change against the previous period, by {data.by}",
        [
            data.by,
            "visitors",
            "visitors_previous",
            "visitors_change_pct",
            "smile_rate",
            "smile_rate_previous",
            "smile_rate_change_pp",
        ],
        rows,
    )


def _by_group(rows: Iterable[StatRow]) -> dict[str, Totals]:
    groups: dict[str, list[StatRow]] = defaultdict(list)
    for r in rows:
        groups[r.group].append(r)
    return {g: totals(rs) for g, rs in groups.items()}


def _series_rows(data: ReportData) -> list[StatRow]:
    return data.hourly if data.hourly_series else data.daily


def _period_label(data: ReportData, start: datetime) -> str:
    if data.hourly_series:
        return data.local(start).strftime("%Y-%m-%d %H:00")
    return start.strftime("%Y-%m-%d")  # daily rows are UTC days


def series_periods(data: ReportData) -> list[str]:
    """Every period of the time series from ``since`` to ``until``, labelled as in the tables:
    a time axis has no holes, an hour with nothing to show is a gap, not skipped."""
    step = timedelta(hours=1) if data.hourly_series else timedelta(days=1)
    start = data.since.replace(minute=0, second=0, microsecond=0)
    if not data.hourly_series:
        start = start.replace(hour=0)
    out = []
    while start < data.until:
        out.append(_period_label(data, start))
        start += step
    return out


def emotion_mix_table(data: ReportData) -> Table:
    """Faces per emotion in each period (hours for a short report, days otherwise), all groups."""
    periods: dict[datetime, Totals] = {}
    by_start: dict[datetime, list[StatRow]] = defaultdict(list)
    for r in _series_rows(data):
        by_start[r.period_start].append(r)
    for start in sorted(by_start):
        periods[start] = totals(by_start[start])
    rows = []
    for start, t in periods.items():
        rows.append(
            [_period_label(data, start), t.faces] + [t.counts[e] for e in EMOTIONS] + [_r(t.share(e)) for e in EMOTIONS]
        )
    return Table(
        "emotion_mix",
        "Emotion mix over time (faces per emotion, and their shares)",
        ["period", "faces", *(f"n_{e}" for e in EMOTIONS), *(f"share_{e}" for e in EMOTIONS)],
        rows,
    )


def visitors_table(data: ReportData) -> Table:
    rows = sorted(_series_rows(data), key=lambda r: (r.period_start, r.group))
    return Table(
        "visitors",
        f"Visitors over time, by {data.by}",
        ["period", data.by, "visitors", "faces", "smile_rate", "mean_dwell_s"],
        [
            [_period_label(data, r.period_start), r.group, r.visitors, r.faces, _r(r.smile_rate), _r(r.mean_dwell_s, 1)]
            for r in rows
        ],
    )


def dwell_table(data: ReportData) -> Table:
    bins = data.dwell or []
    return Table(
        "dwell",
        "Dwell-time distribution (visitors per dwell time; bins with fewer than k visitors hidden)",
        ["dwell", "low_s", "high_s", "visitors"],
        [[b.label, b.low_s, b.high_s, b.visitors] for b in bins],
    )


def busiest_hours_table(data: ReportData) -> Table:
    """Visitors by hour of day (local time), summed over the period and averaged per day."""
    per_hour = [0] * 24
    days: dict[int, set[datetime]] = defaultdict(set)
    for r in data.hourly:
        local = data.local(r.period_start)
        per_hour[local.hour] += r.visitors
        days[local.hour].add(local.replace(hour=0, minute=0, second=0, microsecond=0))
    n_days = max(1, round((data.until - data.since) / timedelta(days=1)))
    rows = []
    for h in range(24):
        rows.append([f"{h:02d}:00", per_hour[h], round(per_hour[h] / n_days, 2), len(days[h])])
    return Table(
        "busiest_hours",
        "Visitors by hour of day",
        ["hour", "visitors", "visitors_per_day", "days_shown"],
        rows,
    )


def busiest_slots(data: ReportData, n: int = 5) -> list[tuple[str, int]]:
    """The ``n`` (weekday, hour) slots with the most visitors, all groups, e.g. ('Sat 15:00', 840)."""
    slots: dict[tuple[int, int], int] = defaultdict(int)
    for r in data.hourly:
        local = data.local(r.period_start)
        slots[(local.weekday(), local.hour)] += r.visitors
    ranked = sorted(slots.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(f"{WEEKDAYS[d]} {h:02d}:00", v) for (d, h), v in ranked]


def smile_heatmap_table(data: ReportData) -> Table:
    """Smile rate by group, weekday and hour of day (local time), pooled over the period."""
    cells: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in data.hourly:
        local = data.local(r.period_start)
        c = cells[(r.group, local.weekday(), local.hour)]
        c[0] += r.faces
        c[1] += r.smiles
        c[2] += r.visitors
    rows = [
        [g, d, h, faces, smiles, visitors, _r(smiles / faces if faces else None)]
        for (g, d, h), (faces, smiles, visitors) in sorted(cells.items())
    ]
    return Table(
        "smile_heatmap",
        f"Smile rate by weekday and hour, by {data.by} (weekday 0 = Monday)",
        [data.by, "weekday", "hour", "faces", "smiles", "visitors", "smile_rate"],
        rows,
    )


def all_tables(data: ReportData) -> list[Table]:
    return [
        summary_table(data),
        change_by_group_table(data),
        emotion_mix_table(data),
        visitors_table(data),
        dwell_table(data),
        busiest_hours_table(data),
        smile_heatmap_table(data),
    ]


def column(table: Table, name: str) -> list[Any]:
    i = table.columns.index(name)
    return [row[i] for row in table.rows]
