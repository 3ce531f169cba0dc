"""`emolens ingest`: the ingest service (publish a camera's sampled frames to the bus);
its code is :mod:`emolens.services.ingest`."""

from __future__ import annotations

import argparse

from emolens.cli.options import OPEN_TIMEOUT_HELP, server_extra, settings_from

HELP = "service: publish a camera's sampled frames to the bus"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True)
    p.add_argument("--camera-id", required=True)
    p.add_argument("--zone", default="")
    p.add_argument("--site", default="")
    p.add_argument("--bus", help="kafka://HOST:PORT or memory:// (EMOLENS_BUS)")
    p.add_argument("--fps", type=float)
    p.add_argument("--start", help="ISO time of the first frame (files; default now)")
    p.add_argument("--seq-start", type=int, help="first frame sequence number (default: microseconds now)")
    p.add_argument("--open-timeout", type=float, metavar="SECONDS", help=OPEN_TIMEOUT_HELP)


def run(args: argparse.Namespace) -> int:
    with server_extra("ingest"):
        from emolens.services import ingest

    return int(ingest.main(args, settings_from(args)))
