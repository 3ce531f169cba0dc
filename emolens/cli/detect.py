"""`emolens detect`: the detector service (frames -> observations);
its code is :mod:`emolens.services.detector`."""

from __future__ import annotations

import argparse

from emolens.cli.options import add_model_options, server_extra, settings_from

HELP = "service: frames -> observations"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bus", help="kafka://HOST:PORT (EMOLENS_BUS)")
    p.add_argument("--idle-exit", type=float, help="exit after this many idle seconds (batch jobs, tests)")
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    with server_extra("detect"):
        from emolens.services import detector

    return int(detector.main(args, settings_from(args)))
