"""``emolens ingest``: one camera source -> sampled JPEG frames on ``emolens.frames``."""

from __future__ import annotations

import argparse
import logging
import sys

from emolens import logs
from emolens.bus import make_bus
from emolens.media import is_live
from emolens.metrics import serve_metrics
from emolens.services.loop import health_server, ops_host, stop_event
from emolens.settings import Settings, parse_start
from emolens.stages import Ingest
from emolens.store import Camera

log = logging.getLogger(__name__)


def main(args: argparse.Namespace, settings: Settings) -> int:
    serve_metrics(settings.metrics_port, ops_host(settings))
    bus = make_bus(settings.bus, settings)
    start = parse_start(args.start)
    health = health_server(settings.health_port, "emolens.ingest", settings.liveness_timeout_s, ops_host(settings))
    ingest = Ingest(bus, Camera(args.camera_id, args.zone, args.site), settings, args.seq_start, stop=stop_event())
    if health is not None:
        ingest.on_ready, ingest.on_beat = health.set, health.beat
    # the source is not logged: a camera URL may carry a password
    live = is_live(args.source)
    logs.event(log.info, "ingest_started", camera=args.camera_id, live=live, fps=settings.fps)
    try:
        n = ingest.run(args.source, start)
    finally:
        if health is not None:
            health.close()
        bus.close()
    logs.event(log.info, "ingest_finished", camera=args.camera_id, published=n)
    print(f"ingest {args.camera_id}: published {n} frames to {settings.bus}", file=sys.stderr)
    return 0
