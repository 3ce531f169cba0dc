"""``emolens aggregate``: observations -> per-minute SQL buckets (idempotent) + live counters."""

from __future__ import annotations

import argparse

from emolens.bus import make_bus
from emolens.live import make_live_state
from emolens.settings import Settings
from emolens.stages import Aggregator
from emolens.store import make_store
from services.loop import health_server, serve, stop_event


def main(args: argparse.Namespace, settings: Settings) -> int:
    bus = make_bus(settings.bus)
    store = make_store(settings.db)
    aggregator = Aggregator(bus, store, make_live_state(settings.live))
    set_health = health_server(settings.health_port, f"emolens.{args.service}")
    try:
        serve("aggregator", aggregator.step, stop_event(), args.idle_exit)
    finally:
        if set_health:
            set_health(False)
        aggregator.consumer.close()
        bus.close()
        store.close()
    return 0
