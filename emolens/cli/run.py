"""`emolens run`: the whole platform in one process, one or more sources -> per-minute SQL buckets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emolens.cli.options import OPEN_TIMEOUT_HELP, add_model_options, settings_from
from emolens.errors import ConfigError
from emolens.settings import parse_start, redact_url

HELP = "the whole platform in one process: one or more sources -> per-minute SQL buckets"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="video file, rtsp/http URL, webcam index or image folder (with --camera-id)")
    p.add_argument("--camera-id")
    p.add_argument("--zone", default="")
    p.add_argument("--site", default="")
    p.add_argument(
        "--camera",
        action="append",
        metavar="id=ID,source=SOURCE[,zone=Z][,site=S]",
        help="one more camera (repeatable); all sources are decoded in parallel and analysed together",
    )
    p.add_argument("--cameras", metavar="FILE", help="cameras from a YAML file: a list of {id, source, zone, site}")
    p.add_argument("--db", help="SQL store URL (default sqlite:///emolens.db, EMOLENS_DB)")
    p.add_argument("--fps", type=float, help="frames per second to analyze (EMOLENS_FPS, default 5)")
    p.add_argument("--start", help="ISO time of the source's first frame (files; default now)")
    p.add_argument("--live", help="live counters: memory:// (default) or redis://HOST:PORT/DB")
    p.add_argument("--open-timeout", type=float, metavar="SECONDS", help=OPEN_TIMEOUT_HELP)
    add_model_options(p)


def _run_cameras(args: argparse.Namespace) -> list[Any]:
    """The cameras of ``emolens run``: ``--source`` with ``--camera-id`` (one camera), and/or
    repeated ``--camera id=...,source=...`` and a ``--cameras`` YAML file."""
    from emolens.runner import CameraSource, load_cameras, parse_camera
    from emolens.store import Camera

    cameras = []
    if args.source or args.camera_id:
        if not (args.source and args.camera_id):
            raise ConfigError("--source and --camera-id go together (or use --camera id=ID,source=SOURCE)")
        cameras.append(CameraSource(args.source, Camera(args.camera_id, args.zone, args.site)))
    elif args.zone or args.site:
        raise ConfigError("--zone and --site belong to --source/--camera-id; give them inside --camera")
    cameras += [parse_camera(spec) for spec in args.camera or []]
    if args.cameras:
        cameras += load_cameras(Path(args.cameras))
    if not cameras:
        raise ConfigError("give a source: --source FILE --camera-id ID, --camera id=ID,source=FILE, or --cameras FILE")
    return cameras


_DROP_WORDS = {
    "rate": "above the target fps",
    "backlog": "shed while detection was behind",
    "unreadable": "unreadable images",
}


def run(args: argparse.Namespace) -> int:
    from emolens.live import make_live_state
    from emolens.runner import run_cameras
    from emolens.store import make_store

    settings = settings_from(args)
    start = parse_start(args.start)
    cameras = _run_cameras(args)
    store = make_store(settings.db)
    try:
        summary = run_cameras(cameras, store, settings, start=start, live=make_live_state(settings.live))
    finally:
        store.close()
    rate = summary.frames / max(summary.seconds, 1e-9)
    for c in cameras:
        dropped = summary.dropped_by_camera.get(c.camera.camera_id, {})
        why = ", ".join(f"{n} {_DROP_WORDS.get(reason, reason)}" for reason, n in sorted(dropped.items()) if n)
        print(
            f"camera {c.camera.camera_id}: {summary.frames_by_camera.get(c.camera.camera_id, 0)} frames, "
            f"{sum(dropped.values())} dropped{f' ({why})' if why else ''}",
            file=sys.stderr,
        )
    print(
        f"{len(cameras)} camera(s): {summary.frames} frames analysed, {summary.observations} frame results "
        f"sent to {redact_url(settings.db)}, which counts a frame it already holds once ({rate:.1f} frames/s)",
        file=sys.stderr,
    )
    return 0
