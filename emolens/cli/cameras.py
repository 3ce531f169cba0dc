"""`emolens cameras`: the cameras the store knows; register or move one."""

from __future__ import annotations

import argparse
import json
import sys

from emolens.cli.options import existing_store, settings_from
from emolens.errors import ConfigError
from emolens.observations import MAX_ID_LENGTH

HELP = "list the cameras the store knows, with zone and site; or register/move one"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--set", metavar="CAMERA_ID", help="register this camera, or move it, to --zone and --site")
    p.add_argument("--zone", help="with --set: the camera's zone")
    p.add_argument("--site", help="with --set: the camera's site")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")


def run(args: argparse.Namespace) -> int:
    """``emolens cameras``: every camera the store knows, with its zone and site; ``--set ID``
    registers a camera or moves it to ``--zone``/``--site`` (the registry access scopes rest on:
    the aggregator dead-letters messages that name another zone or site for it)."""
    import csv

    from emolens.store import Camera

    if args.set is None and (args.zone is not None or args.site is not None):
        raise ConfigError("--zone and --site go with --set CAMERA_ID")
    if args.set is not None:
        camera = Camera(args.set, args.zone or "", args.site or "")
        for what, value in (("camera id", camera.camera_id), ("zone", camera.zone), ("site", camera.site)):
            if len(value) > MAX_ID_LENGTH or (what == "camera id" and not value):
                raise ConfigError(
                    f"--set: the {what} must be {'1' if what == 'camera id' else '0'}-{MAX_ID_LENGTH} characters"
                )
    with existing_store(settings_from(args)) as store:
        if args.set is not None:
            store.ensure_camera(camera)
            print(f"camera {camera.camera_id}: zone {camera.zone!r}, site {camera.site!r}", file=sys.stderr)
            return 0
        cams = store.cameras()
    records = [{"camera_id": c.camera_id, "zone": c.zone, "site": c.site} for c in cams]
    if args.format == "json":
        print(json.dumps(records, indent=1))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=["camera_id", "zone", "site"])
        writer.writeheader()
        writer.writerows(records)
    elif not records:
        print("no cameras")
    else:
        widths = {k: max(len(k), *(len(r[k]) for r in records)) for k in ("camera_id", "zone")}
        print(f"{'camera_id'.ljust(widths['camera_id'])}  {'zone'.ljust(widths['zone'])}  site")
        for r in records:
            print(f"{r['camera_id'].ljust(widths['camera_id'])}  {r['zone'].ljust(widths['zone'])}  {r['site']}")
    return 0
