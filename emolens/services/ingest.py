"""``emolens ingest``: one camera source -> sampled JPEG frames on ``emolens.frames``."""

from __future__ import annotations

import argparse
import sys

from emolens.bus import make_bus
from emolens.services.loop import health_server
from emolens.settings import Settings, parse_start
from emolens.stages import Ingest
from emolens.store import Camera


def main(args: argparse.Namespace, settings: Settings) -> int:
    bus = make_bus(settings.bus)
    start = parse_start(args.start)
    set_health = health_server(settings.health_port, "emolens.ingest")
    try:
        n = Ingest(bus, Camera(args.camera_id, args.zone, args.site), settings, args.seq_start).run(args.source, start)
    finally:
        if set_health:
            set_health(False)
        bus.close()
    print(f"ingest {args.camera_id}: published {n} frames to {settings.bus}", file=sys.stderr)
    return 0
