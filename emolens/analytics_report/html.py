"""The report as ONE self-contained HTML file: inline CSS and inline SVG, no script, no font,
image or stylesheet from anywhere else. A Content-Security-Policy that allows nothing external
makes that a property the browser enforces (a stray external reference would be blocked and
logged as a console error, which the browser test looks for), not only a habit of this code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from emolens.analytics_report import svg
from emolens.analytics_report.model import (
    ReportData,
    Table,
    all_tables,
    busiest_slots,
    column,
    series_periods,
)
from emolens.results import EMOTIONS

# Heat maps are small multiples: one per group, the busiest first; the table holds every group.
MAX_HEATMAPS = 12
# Lines in the visitors chart: the busiest groups; the rest are summed into "other".
MAX_LINES = 7

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f;
       background: #f6f7f9; }
main { max-width: 920px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 4px; }
.meta, .how { color: #555; font-size: 13px; margin: 0 0 12px; }
section { background: #fff; border-radius: 10px; padding: 18px 20px; margin: 16px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 16px 0; }
.card { background: #fff; border-radius: 10px; padding: 14px 16px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.card .label { color: #555; font-size: 13px; }
.card .value { font-size: 26px; font-weight: 650; margin: 2px 0; }
.card .delta { font-size: 13px; }
.up { color: #1b7f3b; } .down { color: #b3261e; } .flat { color: #777; }
details { margin-top: 10px; font-size: 13px; }
summary { cursor: pointer; color: #0b57d0; }
.table-wrap { max-height: 360px; overflow: auto; margin-top: 8px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 3px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { position: sticky; top: 0; background: #fafafa; }
.heatmaps svg { margin-bottom: 6px; }
footer { color: #555; font-size: 12px; margin-top: 24px; }
svg.plot { display: block; }
"""


def _cell(v: Any) -> str:
    if v is None:
        return "&ndash;"  # suppressed or not computable: never a zero
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return escape(str(v))


def table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in table.rows)
    return (
        f'<details class="data" data-table="{escape(table.name)}"><summary>Table: {escape(table.title)} '
        f"({len(table.rows):,} rows; <code>{escape(table.name)}.csv</code> in the CSV export)</summary>"
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>'
    )


def _delta(change: float | None, unit: str) -> str:
    if change is None:
        return '<span class="flat">no previous figure</span>'
    css = "up" if change > 0 else "down" if change < 0 else "flat"
    arrow = "&#9650;" if change > 0 else "&#9660;" if change < 0 else "&#9644;"
    return f'<span class="{css}">{arrow} {change:+.1f}{"%" if unit == "%" else " pp"}</span> vs previous period'


def _cards(summary: Table) -> str:
    rows = {r[0]: r for r in summary.rows}
    shown = [
        ("visitors", "Visitors", lambda v: f"{v:,}"),
        ("faces", "Face observations", lambda v: f"{v:,}"),
        ("smile_rate", "Smile rate", lambda v: f"{v:.1%}"),
        ("mean_dwell_s", "Mean dwell time", lambda v: f"{v:,.0f} s"),
    ]
    cards = []
    for key, label, fmt in shown:
        _, now, _before, change, unit = rows[key]
        value = "&ndash;" if now is None else fmt(now)
        cards.append(
            f'<div class="card" data-metric="{key}"><div class="label">{label}</div>'
            f'<div class="value">{value}</div><div class="delta">{_delta(change, unit)}</div></div>'
        )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _section(anchor: str, title: str, how: str, body: str, tables: Sequence[Table]) -> str:
    return (
        f'<section id="{anchor}"><h2>{escape(title)}</h2><p class="how">{how}</p>{body}'
        + "".join(table_html(t) for t in tables)
        + "</section>"
    )


def _previous(data: ReportData) -> str:
    return f"{data.previous_since:%Y-%m-%d %H:%M} to {data.since:%Y-%m-%d %H:%M}"


def _step(data: ReportData) -> str:
    return "hour" if data.hourly_series else "day (UTC)"


def _head(data: ReportData, tables: dict[str, Table], source: str, generated_at: datetime | None) -> list[str]:
    """The document's head, the report's title and what it covers, and the summary cards."""
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    period = f"{data.since:%Y-%m-%d %H:%M} to {data.until:%Y-%m-%d %H:%M} UTC"
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>emolens report {data.since:%Y-%m-%d} to {data.until:%Y-%m-%d}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<header><h1>Emotion analytics report</h1>",
        f'<p class="meta">{escape(period)}, by {escape(data.by)}; compared with the previous period of equal '
        f"length ({escape(_previous(data))}). Hours of day and weekdays in {escape(str(data.tz))}. "
        f"Source: {escape(source)}; generated {generated}.</p></header>",
        _cards(tables["summary"]),
    ]


def _change_section(data: ReportData, tables: dict[str, Table]) -> str:
    change = tables["change_by_group"]
    bars = [(r[0], r[3]) for r in change.rows if r[1] is not None][:20]
    return _section(
        "change",
        "Change against the previous period",
        f"Visitors per {escape(data.by)} now against the {escape(_previous(data))} period; green grew, red shrank. "
        "Smile-rate changes are in percentage points (pp).",
        svg.change_bars("change", f"Visitors change by {data.by}", bars),
        [tables["summary"], change],
    )


def _mix_section(data: ReportData, tables: dict[str, Table]) -> str:
    mix = tables["emotion_mix"]
    by_period = {row[0]: {e: (row[mix.columns.index(f"share_{e}")] or 0.0) for e in EMOTIONS} for row in mix.rows}
    periods = series_periods(data)
    labels = [_chart_label(data, p) for p in periods]
    shares = [by_period.get(p, {}) for p in periods]
    return _section(
        "emotion-mix",
        "Emotion mix over time",
        f"Share of faces showing each emotion, per {_step(data)}. Each bar adds up to 100% of that period's faces.",
        svg.stacked_shares("emotion-mix", "Emotion mix over time", labels, shares),
        [mix],
    )


def _visitors_section(data: ReportData, tables: dict[str, Table]) -> str:
    visitors = tables["visitors"]
    return _section(
        "visitors",
        "Visitors",
        f"Distinct visitors (anonymous tracks, counted once per camera and {_step(data)}) per {escape(data.by)}; "
        f"the {MAX_LINES} busiest are drawn, the rest summed as “other”.",
        _visitor_lines(data, visitors),
        [visitors],
    )


def _dwell_section(data: ReportData, tables: dict[str, Table]) -> str:
    dwell = tables["dwell"]
    body = (
        svg.bar_chart("dwell", "Dwell-time distribution", column(dwell, "dwell"), column(dwell, "visitors"), "visitors")
        if data.dwell is not None
        else svg.empty_chart("dwell", "Dwell-time distribution", "this database holds no visitor timelines")
    )
    return _section(
        "dwell",
        "Dwell time",
        "How long visitors stayed in view: visitors per dwell-time range. A range with fewer than "
        f"{data.k} visitors is left out.",
        body,
        [dwell],
    )


def _busiest_section(data: ReportData, tables: dict[str, Table]) -> str:
    busiest = tables["busiest_hours"]
    top_text = ", ".join(f"{escape(slot)} ({n:,} visitors)" for slot, n in busiest_slots(data)) or "none"
    return _section(
        "busiest-hours",
        "Busiest hours",
        f"Mean visitors per day by hour of day ({escape(str(data.tz))}); the 3 busiest are dark. "
        f"Busiest hours of the week (visitors summed over the period): {top_text}.",
        svg.bar_chart(
            "busiest-hours",
            "Visitors by hour of day",
            [h[:2] for h in column(busiest, "hour")],
            [v if v else None for v in column(busiest, "visitors_per_day")],
            y_label="visitors per day",
            highlight=3,
        ),
        [busiest],
    )


def _heatmap_section(data: ReportData, tables: dict[str, Table]) -> str:
    heat = tables["smile_heatmap"]
    return _section(
        "smile-heatmap",
        f"Smile rate by hour and weekday, per {data.by}",
        "Share of faces smiling in each hour of the week, pooled over the period; darker is more smiles "
        "(each map has its own scale, printed above it: its middle 90% of hours; the rest take the end colours). "
        "Hatched: no hour there had enough distinct visitors.",
        '<div class="heatmaps">' + _heatmaps(data, heat) + "</div>",
        [heat],
    )


def _footer(data: ReportData) -> str:
    return (
        f"<footer>Privacy: every figure rests on at least k = {data.k} distinct visitors; a group in a period "
        "with fewer is not shown, and sums and charts include only shown groups. No face image, identity or "
        "per-person record is in this report. Visitors are anonymous track ids, counted once per camera and "
        f"period. {data.hidden_rows:,} group-period(s) below k were left out here.</footer>"
    )


# The report's sections in the order a reader meets them.
_SECTIONS = (
    _change_section,
    _mix_section,
    _visitors_section,
    _dwell_section,
    _busiest_section,
    _heatmap_section,
)


def render(data: ReportData, source: str, generated_at: datetime | None = None) -> str:
    """The whole HTML document. ``source`` names the data (a database kind, never a URL with a
    password)."""
    tables = {t.name: t for t in all_tables(data)}
    parts = _head(data, tables, source, generated_at)
    parts += [section(data, tables) for section in _SECTIONS]
    parts += [_footer(data), "</main></body></html>\n"]
    return "\n".join(parts)


def _visitor_lines(data: ReportData, visitors: Table) -> str:
    by_group: dict[str, dict[str, int]] = defaultdict(dict)
    for period, group, n, *_ in visitors.rows:
        by_group[group][period] = n
    periods = series_periods(data)
    ranked = sorted(by_group, key=lambda g: -sum(by_group[g].values()))
    series: dict[str, list[float | None]] = {g: [by_group[g].get(p) for p in periods] for g in ranked[:MAX_LINES]}
    rest = ranked[MAX_LINES:]
    if rest:
        series["other"] = [sum(by_group[g].get(p, 0) for g in rest) or None for p in periods]
    labels = [_chart_label(data, p) for p in periods]
    return svg.line_chart("visitors", f"Visitors by {data.by}", labels, series, y_label="visitors")


def _chart_label(data: ReportData, period: str) -> str:
    """A short axis label: 'Mon 09:00' in an hourly report (three days at most), 'Mon 02 Mar' by day."""
    t = datetime.fromisoformat(period)
    return t.strftime("%a %H:%M") if data.hourly_series else t.strftime("%a %d %b")


def _heatmaps(data: ReportData, heat: Table) -> str:
    cells: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    faces: dict[str, int] = defaultdict(int)
    for group, d, h, n_faces, _smiles, _visitors, rate in heat.rows:
        faces[group] += n_faces
        if rate is not None:
            cells[group][(d, h)] = rate
    ranked = sorted(cells, key=lambda g: -faces[g])
    if not ranked:
        return svg.empty_chart("smile-heatmap", "Smile rate by hour and weekday", "no hour has enough visitors")
    maps = [
        svg.heat_map("smile-heatmap", f"Smile rate by weekday and hour: {g}", cells[g], g)
        for g in ranked[:MAX_HEATMAPS]
    ]
    if len(ranked) > MAX_HEATMAPS:
        maps.append(f'<p class="how">{len(ranked) - MAX_HEATMAPS} more in the table below.</p>')
    return "".join(maps)


__all__ = ["CSP", "render", "table_html"]
