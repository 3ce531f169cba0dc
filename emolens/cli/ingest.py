"""`emolens ingest`: the ingest service (publish cameras' sampled frames to the bus);
its code is :mod:`emolens.services.ingest`."""

from __future__ import annotations

import argparse

from emolens.cli.options import OPEN_TIMEOUT_HELP, server_extra, settings_from

HELP = "service: publish the sampled frames of a camera, or of several (--cameras), to the bus"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="one camera: video file, rtsp/http URL, webcam index or image folder")
    p.add_argument("--camera-id", help="the camera of --source")
    p.add_argument(
        "--cameras",
        metavar="FILE",
        help="several cameras in one process, from a YAML file: a list of {id, source (or source_env), zone, site}",
    )
    p.add_argument("--zone", default="")
    p.add_argument("--site", default="")
    p.add_argument("--bus", help="kafka://HOST:PORT or memory:// (EMOLENS_BUS)")
    p.add_argument(
        "--db", help="SQL store URL (EMOLENS_DB): declares the camera there; frames of undeclared cameras are refused"
    )
    p.add_argument("--fps", type=float)
    p.add_argument("--start", help="ISO time of the first frame (files; default now)")
    p.add_argument("--seq-start", type=int, help="first frame sequence number (one camera; default: microseconds now)")
    p.add_argument("--open-timeout", type=float, metavar="SECONDS", help=OPEN_TIMEOUT_HELP)


def run(args: argparse.Namespace) -> int:
    with server_extra("ingest"):
        from emolens.services import ingest

    return int(ingest.main(args, settings_from(args)))
