"""``emolens detect``: frames -> faces, smiles, emotions, tracks -> ``emolens.observations``."""

from __future__ import annotations

import argparse

from emolens.bus import make_bus
from emolens.inference import make_classifier
from emolens.settings import Settings
from emolens.stages import Detector
from services.loop import health_server, serve, stop_event


def main(args: argparse.Namespace, settings: Settings) -> int:
    bus = make_bus(settings.bus)
    detector = Detector(bus, settings, make_classifier(settings.inference, settings.threads))
    set_health = health_server(settings.health_port, f"emolens.{args.service}")
    try:
        serve("detector", detector.step, stop_event(), args.idle_exit)
    finally:
        if set_health:
            set_health(False)
        detector.consumer.close()
        bus.close()
    return 0
