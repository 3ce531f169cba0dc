"""Hand-written SVG charts for the report: no plotting library, no script, no external font, so
the HTML file that holds them opens the same on a machine with no network.

Every chart is one ``<svg>`` element with ``role="img"``, a ``<title>`` a screen reader says, a
``data-plot`` name (what the browser test looks for) and a ``viewBox``, so it scales with the page.
Each mark carries its own ``<title>``: hovering shows the number behind it.

>>> svg = bar_chart("busiest-hours", "Visitors by hour", ["9", "10"], [3.0, 5.0], y_label="visitors")
>>> svg.startswith('<svg') and 'data-plot="busiest-hours"' in svg and svg.count("<rect") >= 2
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from html import escape

from emolens.analytics_report.model import WEEKDAYS

# Okabe-Ito, readable with the common colour-vision deficiencies; one colour per emotion.
EMOTION_COLOURS = {
    "angry": "#d55e00",
    "disgust": "#009e73",
    "fear": "#7f5fa8",
    "happy": "#e69f00",
    "sad": "#0072b2",
    "surprise": "#cc79a7",
    "neutral": "#9a9a9a",
}
SERIES_COLOURS = ["#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#7f5fa8", "#555555"]
UP, DOWN, FLAT = "#1b7f3b", "#b3261e", "#777777"

WIDTH = 860
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


def _num(v: float) -> str:
    """Coordinates with one decimal: small files, no visible rounding."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _open(plot: str, title: str, height: float, extra: str = "") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{escape(plot)}"{extra} role="img" '
        f'viewBox="0 0 {WIDTH} {_num(height)}" width="100%" {_FONT} font-size="12">'
        f"<title>{escape(title)}</title>"
    )


def nice_ticks(top: float, n: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``top``.

    >>> nice_ticks(93)
    [0.0, 25.0, 50.0, 75.0, 100.0]
    >>> nice_ticks(0)
    [0.0, 1.0]
    """
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def _fmt_tick(v: float, percent: bool) -> str:
    if percent:
        return f"{v * 100:.0f}%"
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    return f"{v:g}"


def _axes(
    left: float, top: float, w: float, h: float, ticks: list[float], percent: bool = False, label: str = ""
) -> list[str]:
    """Horizontal grid lines with their values on the left; ``label`` names the y axis."""
    out = []
    top_value = ticks[-1] or 1.0
    for t in ticks:
        y = top + h - h * t / top_value
        out.append(f'<line x1="{_num(left)}" x2="{_num(left + w)}" y1="{_num(y)}" y2="{_num(y)}" stroke="#e3e3e3"/>')
        out.append(
            f'<text x="{_num(left - 6)}" y="{_num(y + 4)}" text-anchor="end" fill="#555">{_fmt_tick(t, percent)}</text>'
        )
    if label:
        out.append(f'<text x="{_num(left)}" y="{_num(top - 10)}" fill="#555">{escape(label)}</text>')
    return out


def _x_labels(left: float, step: float, y: float, labels: Sequence[str]) -> list[str]:
    """Category labels under the bars, thinned so that no two overlap (about 6.5 px a character)."""
    longest = max((len(lab) for lab in labels), default=1)
    every = max(1, math.ceil((6.5 * longest + 12) / step))
    return [
        f'<text x="{_num(left + step * (i + 0.5))}" y="{_num(y)}" text-anchor="middle" fill="#555">{escape(lab)}</text>'
        for i, lab in enumerate(labels)
        if i % every == 0
    ]


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for name, colour in items:
        out.append(f'<rect x="{_num(x)}" y="{_num(y - 9)}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{_num(x + 14)}" y="{_num(y)}">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out


def empty_chart(plot: str, title: str, reason: str) -> str:
    """A chart with nothing to show says why, in place, so the page never has a hole."""
    return (
        _open(plot, title, 60)
        + f'<text x="{WIDTH / 2}" y="34" text-anchor="middle" fill="#777">{escape(reason)}</text></svg>'
    )


def stacked_shares(plot: str, title: str, labels: Sequence[str], shares: Sequence[dict[str, float]]) -> str:
    """One 100% bar per period, split by emotion (``shares``: emotion -> share of the period's faces)."""
    if not any(shares):
        return empty_chart(plot, title, "no period has enough distinct visitors to show")
    left, top, w, h = 48, 44, WIDTH - 64, 220
    step = w / len(labels)
    bar = max(step * 0.8, 1.0)
    parts = [_open(plot, title, top + h + 40)]
    parts += _legend(list(EMOTION_COLOURS.items()), left, 16)
    parts += _axes(left, top, w, h, [0.0, 0.25, 0.5, 0.75, 1.0], percent=True)
    for i, (lab, mix) in enumerate(zip(labels, shares, strict=True)):
        y: float = top + h
        for emo, colour in EMOTION_COLOURS.items():
            share = mix.get(emo, 0.0)
            if share <= 0:
                continue
            bh = h * share
            y -= bh
            parts.append(
                f'<rect x="{_num(left + i * step + (step - bar) / 2)}" y="{_num(y)}" width="{_num(bar)}" '
                f'height="{_num(bh)}" fill="{colour}"><title>{escape(lab)} {emo}: {share:.1%}</title></rect>'
            )
    parts += _x_labels(left, step, top + h + 16, labels)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    plot: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    y_label: str = "",
    highlight: int = 0,
    colour: str = "#0072b2",
) -> str:
    """Vertical bars; the ``highlight`` largest are drawn darker (the busiest hours). ``None``
    is a category with nothing to show (suppressed), drawn as a gap."""
    shown = [v for v in values if v is not None]
    if not shown:
        return empty_chart(plot, title, "no group has enough distinct visitors to show")
    left, top, w, h = 56, 30, WIDTH - 72, 200
    ticks = nice_ticks(max(shown))
    step = w / len(labels)
    bar = max(step * 0.72, 1.0)
    ranked = sorted(shown, reverse=True)
    cut = ranked[highlight - 1] if highlight and len(ranked) >= highlight else math.inf
    parts = [_open(plot, title, top + h + 30)]
    parts += _axes(left, top, w, h, ticks, label=y_label)
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        if v is None:
            continue
        bh = h * v / ticks[-1]
        fill = "#0b3d91" if v >= cut else colour
        parts.append(
            f'<rect x="{_num(left + i * step + (step - bar) / 2)}" y="{_num(top + h - bh)}" width="{_num(bar)}" '
            f'height="{_num(bh)}" fill="{fill}"><title>{escape(lab)}: {v:,.1f}</title></rect>'
        )
    parts += _x_labels(left, step, top + h + 16, labels)
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    plot: str, title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]], y_label: str = ""
) -> str:
    """One line per series over the same periods; ``None`` breaks a line (a suppressed period)."""
    values = [v for s in series.values() for v in s if v is not None]
    if not labels or not values:
        return empty_chart(plot, title, "no period has enough distinct visitors to show")
    left, top, w, h = 56, 48, WIDTH - 72, 220
    ticks = nice_ticks(max(values))
    step = w / len(labels)
    parts = [_open(plot, title, top + h + 30)]
    colours = {name: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, name in enumerate(series)}
    parts += _legend(list(colours.items()), left, 16)
    parts += _axes(left, top, w, h, ticks, label=y_label)
    for name, vals in series.items():
        run: list[str] = []
        runs: list[list[str]] = []
        for i, v in enumerate(vals):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            x, y = left + step * (i + 0.5), top + h - h * v / ticks[-1]
            run.append(f"{_num(x)},{_num(y)}")
            if len(labels) <= 60:
                parts.append(
                    f'<circle cx="{_num(x)}" cy="{_num(y)}" r="2.5" fill="{colours[name]}">'
                    f"<title>{escape(name)} {escape(labels[i])}: {v:,.0f}</title></circle>"
                )
        if run:
            runs.append(run)
        for r in runs:
            parts.append(
                f'<polyline points="{" ".join(r)}" fill="none" stroke="{colours[name]}" stroke-width="2">'
                f"<title>{escape(name)}</title></polyline>"
            )
    parts += _x_labels(left, step, top + h + 16, labels)
    parts.append("</svg>")
    return "".join(parts)


def _heat_colour(rate: float, lo: float, hi: float) -> str:
    """White-to-green ramp over [lo, hi] (the rates actually seen, so differences show)."""
    t = 0.0 if hi <= lo else min(max((rate - lo) / (hi - lo), 0.0), 1.0)
    start, end = (247, 252, 245), (0, 109, 44)
    r, g, b = (round(s + (e - s) * t) for s, e in zip(start, end, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _robust_range(values: list[float]) -> tuple[float, float]:
    """The 5th to 95th percentile of the cells (all of them when there are few): an hour at the
    edge of the day with a handful of faces must not flatten every other colour.

    >>> _robust_range([0.0] + [0.3] * 18 + [1.0])
    (0.3, 0.3)
    >>> _robust_range([0.1, 0.5])
    (0.1, 0.5)
    """
    v = sorted(values)
    if len(v) < 20:
        return v[0], v[-1]
    return v[round(0.05 * (len(v) - 1))], v[round(0.95 * (len(v) - 1))]


def heat_map(plot: str, title: str, cells: dict[tuple[int, int], float], group: str) -> str:
    """Smile rate by weekday (rows, Monday first) and hour of day (columns); a missing cell (no
    data, or suppressed) stays grey with a hatch so it cannot be read as a low rate."""
    if not cells:
        return empty_chart(plot, title, f"{group}: no hour has enough distinct visitors to show")
    left, top, cell_w, cell_h = 48, 40, (WIDTH - 64) / 24, 22
    lo, hi = _robust_range(list(cells.values()))
    height = top + 7 * cell_h + 34
    parts = [_open(plot, title, height, extra=f' data-group="{escape(group)}"')]
    # ids are document-wide in HTML: one per chart, stable across runs (not hash(), which is salted)
    hatch_id = "hatch-" + hashlib.sha1(f"{plot}/{group}".encode()).hexdigest()[:10]
    parts.append(
        f'<defs><pattern id="{hatch_id}" width="6" height="6" patternUnits="userSpaceOnUse">'
        '<rect width="6" height="6" fill="#f0f0f0"/><path d="M0 6L6 0" stroke="#d0d0d0"/></pattern></defs>'
    )
    hatch = f"url(#{hatch_id})"
    parts.append(f'<text x="{left}" y="16" font-weight="600">{escape(group)}</text>')
    parts.append(
        f'<text x="{WIDTH - 16}" y="16" text-anchor="end" fill="#555">smile rate &#8804;{lo:.0%} '
        f'<tspan fill="{_heat_colour(lo, lo, hi)}">&#9632;</tspan> to &#8805;{hi:.0%} '
        f'<tspan fill="{_heat_colour(hi, lo, hi)}">&#9632;</tspan></text>'
    )
    for d, name in enumerate(WEEKDAYS):
        y = top + d * cell_h
        parts.append(f'<text x="{left - 6}" y="{_num(y + cell_h / 2 + 4)}" text-anchor="end" fill="#555">{name}</text>')
        for hour in range(24):
            x = left + hour * cell_w
            rate = cells.get((d, hour))
            if rate is None:
                parts.append(
                    f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(cell_w - 1)}" height="{cell_h - 1}" '
                    f'fill="{hatch}"><title>{name} {hour:02d}:00 no data shown</title></rect>'
                )
                continue
            parts.append(
                f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(cell_w - 1)}" height="{cell_h - 1}" '
                f'fill="{_heat_colour(rate, lo, hi)}"><title>{name} {hour:02d}:00 smile rate {rate:.1%}</title></rect>'
            )
    for hour in range(0, 24, 2):
        parts.append(
            f'<text x="{_num(left + (hour + 0.5) * cell_w)}" y="{_num(top + 7 * cell_h + 16)}" '
            f'text-anchor="middle" fill="#555">{hour:02d}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def change_bars(plot: str, title: str, rows: Sequence[tuple[str, float | None]], unit: str = "%") -> str:
    """Horizontal bars around zero, one per group: green up, red down (``None``: no previous
    figure to compare with, shown as 'new')."""
    if not rows:
        return empty_chart(plot, title, "no group has enough distinct visitors in both periods")
    row_h, left, right = 24, 220, WIDTH - 80
    mid = (left + right) / 2
    known = [abs(v) for _, v in rows if v is not None]
    span = max(known) if known else 1.0
    span = span or 1.0
    height = 20 + row_h * len(rows) + 10
    parts = [_open(plot, title, height)]
    parts.append(f'<line x1="{mid}" x2="{mid}" y1="10" y2="{height - 8}" stroke="#999"/>')
    for i, (name, v) in enumerate(rows):
        y = 20 + i * row_h
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>')
        if v is None:
            parts.append(f'<text x="{mid + 6}" y="{y + 15}" fill="{FLAT}">new (nothing shown before)</text>')
            continue
        bw = (right - left) / 2 * abs(v) / span
        x = mid if v >= 0 else mid - bw
        colour = UP if v > 0 else DOWN if v < 0 else FLAT
        parts.append(
            f'<rect x="{_num(x)}" y="{y + 3}" width="{_num(max(bw, 1))}" height="{row_h - 8}" fill="{colour}">'
            f"<title>{escape(name)}: {v:+.1f}{unit}</title></rect>"
        )
        # the figure sits right of the bar's end, or right of zero for a fall (the names are on the left)
        tx = x + bw + 6 if v >= 0 else mid + 6
        parts.append(f'<text x="{_num(tx)}" y="{y + 15}" fill="{colour}">{v:+.1f}{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)
