"""`emolens report`: a period's statistics as one self-contained HTML report, or CSV tables in a zip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emolens.cli.options import existing_store, settings_from
from emolens.errors import ConfigError, InputError
from emolens.settings import parse_time

HELP = "a period's statistics as one self-contained HTML report with plots, or CSV"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--since", required=True, help="start, ISO date or time (in --tz; default UTC)")
    p.add_argument("--until", required=True, help="end, exclusive; the report compares with the period before")
    p.add_argument("--by", choices=["zone", "site", "camera"], default="zone", help="group by (default zone)")
    p.add_argument("--out", required=True, help="report.html, or report.zip for its tables as CSV")
    p.add_argument("--format", choices=["html", "csv"], help="optional: follows --out's suffix (.html, .zip)")
    p.add_argument("--tz", help="time zone of hours of day and weekdays, e.g. Europe/Berlin (default UTC)")
    p.add_argument("--k", type=int, help="hide groups with fewer distinct visitors (EMOLENS_K_ANONYMITY, default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal)")


def _report_time(flag: str, text: str, tz: Any) -> Any:
    """``--since``/``--until``: an ISO date or time; without a zone it is in ``--tz``. Returned
    as naive UTC, as the store keeps time."""
    return parse_time(flag, text, tz).replace(tzinfo=None)


REPORT_FORMATS = {".html": "html", ".htm": "html", ".zip": "csv"}  # --out's suffix -> what it holds


def _report_format(out: Path, asked: str | None) -> str:
    """One rule: the format follows ``--out``'s suffix (*.html: the page, *.zip: its tables as
    CSV); ``--format``, when given, must agree with it."""
    fmt = REPORT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"--out {out}: name it *.html for the report or *.zip for its tables as CSV")
    if asked is not None and asked != fmt:
        holds = (
            "one CSV per table into a zip, so name it *.zip" if asked == "csv" else "an HTML page, so name it *.html"
        )
        raise InputError(f"--out {out}: --format {asked} writes {holds}")
    return fmt


def run(args: argparse.Namespace) -> int:
    from datetime import UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from tqdm import tqdm

    from emolens.analytics_report import collect, render, write_csv_zip
    from emolens.analytics_report.source import StoreSource

    settings = settings_from(args)
    try:
        tz = ZoneInfo(args.tz) if args.tz else UTC
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"--tz {args.tz!r} is not a time zone name such as Europe/Berlin") from exc
    since, until = _report_time("--since", args.since, tz), _report_time("--until", args.until, tz)
    out = Path(args.out)
    fmt = _report_format(out, args.format)
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    with existing_store(settings) as store:
        source = StoreSource(store, page_size=settings.stats_max_page_size, max_rows=settings.stats_max_rows)
        # rows fetched so far, on stderr only when it is a terminal (as `analyze` does)
        with tqdm(
            desc="querying", unit=" rows", disable=True if args.no_progress else None, file=sys.stderr, leave=False
        ) as bar:
            data = collect(source, since, until, args.by, settings.k_anonymity, tz, progress=bar.update)
    try:
        if fmt == "csv":
            names = write_csv_zip(data, out)
            what = f"{len(names)} CSV tables"
        else:
            out.write_text(render(data, store.name), encoding="utf-8")
            what = "HTML"
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write ({exc.strerror})") from exc
    print(
        f"report: {out} ({what}; {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC by {args.by}, "
        f"k={settings.k_anonymity}, {data.hidden_rows} group-period(s) below k left out)",
        file=sys.stderr,
    )
    return 0
