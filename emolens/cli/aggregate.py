"""`emolens aggregate`: the aggregator service (observations -> SQL buckets and live counters);
its code is :mod:`emolens.services.aggregator`."""

from __future__ import annotations

import argparse

from emolens.cli.options import server_extra, settings_from

HELP = "service: observations -> SQL buckets and live counters"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bus", help="kafka://HOST:PORT (EMOLENS_BUS)")
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--live", help="memory:// or redis://HOST:PORT/DB (EMOLENS_LIVE)")
    p.add_argument("--idle-exit", type=float, help="exit after this many idle seconds (batch jobs, tests)")


def run(args: argparse.Namespace) -> int:
    with server_extra("aggregate"):
        from emolens.services import aggregator

    return int(aggregator.main(args, settings_from(args)))
