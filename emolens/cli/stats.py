"""`emolens stats`: per-minute buckets, or k-safe rollups by camera, zone or site."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from emolens.cli.options import existing_store, settings_from
from emolens.errors import NotFound
from emolens.settings import Settings, parse_time

HELP = "statistics: per-minute buckets, or by camera|zone|site per minute|hour|day"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--camera-id")
    p.add_argument("--zone")
    p.add_argument("--site")
    p.add_argument("--k", type=int, help="hide buckets with fewer distinct faces (EMOLENS_K_ANONYMITY, default 5)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument(
        "--since",
        help="ISO date/time (UTC unless it names a zone); with --until/--by/--every: rollups "
        "(default: 7 days before --until, 1 day with --every minute)",
    )
    p.add_argument("--until", help="ISO date/time, exclusive (default now)")
    p.add_argument("--by", choices=["camera", "zone", "site"], help="group by (default camera)")
    p.add_argument("--every", choices=["minute", "hour", "day"], help="one row per group and period (default hour)")


def run(args: argparse.Namespace) -> int:
    from emolens.tables import print_buckets

    settings = settings_from(args)
    with existing_store(settings) as store:
        if args.camera_id and args.camera_id not in {c.camera_id for c in store.cameras()}:
            raise NotFound(f"unknown camera {args.camera_id!r}")  # not the URL: it may hold a password
        if args.since or args.until or args.by or args.every:
            return _stats_query(args, settings, store)
        buckets = store.buckets(camera_id=args.camera_id, zone=args.zone, site=args.site)
    print_buckets(buckets, settings.k_anonymity, args.format, sys.stdout)
    return 0


def _utc(flag: str, text: str | None) -> Any:
    """``--since``/``--until``: an ISO date or time, UTC unless it names a zone; naive UTC."""
    return parse_time(flag, text).replace(tzinfo=None) if text else None


def _stats_query(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    """``stats`` with ``--since/--until/--by/--every``: groups per period from the rollups,
    k-safe, every page fetched (a query too big for one answer is refused before it runs).
    Defaults: ``--every hour --by camera``, until now, since a day (minutes) or a week before."""
    from datetime import UTC, datetime, timedelta

    from emolens.analytics import By, Every, pages
    from emolens.tables import print_stats

    every: Every = args.every or "hour"
    by: By = args.by or "camera"
    until = _utc("--until", args.until) or datetime.now(UTC).replace(tzinfo=None)
    since = _utc("--since", args.since) or until - timedelta(days=1 if every == "minute" else 7)
    rows, suppressed = [], None
    for page in pages(
        store,
        since,
        until,
        by=by,
        every=every,
        k=settings.k_anonymity,
        page_size=settings.stats_max_page_size,
        camera_id=args.camera_id,
        zone=args.zone,
        site=args.site,
        max_rows=settings.stats_max_rows,
        max_page_size=settings.stats_max_page_size,
    ):
        rows.extend(page.rows)
        suppressed = page.suppressed if suppressed is None else suppressed
    if not rows and not suppressed:
        span = f"{since.isoformat(timespec='minutes')} to {until.isoformat(timespec='minutes')} UTC"
        print(f"no statistics from {span} (set --since/--until for another period)", file=sys.stderr)
    print_stats(rows, by, settings.k_anonymity, suppressed, args.format, sys.stdout)
    return 0
