"""``emolens aggregate``: observations -> per-minute SQL buckets (idempotent) + live counters."""

from __future__ import annotations

import argparse
from datetime import timedelta

from emolens.bus import make_bus
from emolens.live import make_live_state
from emolens.services.loop import run_stage
from emolens.settings import Settings
from emolens.stages import Aggregator
from emolens.store import make_store


def main(args: argparse.Namespace, settings: Settings) -> int:
    bus = make_bus(settings.bus, settings)
    store = make_store(settings.db)
    window = timedelta(seconds=settings.replay_window_s)
    aggregator = Aggregator(bus, store, make_live_state(settings.live), replay_window=window)
    return run_stage("aggregator", aggregator, args.idle_exit, settings, store)
