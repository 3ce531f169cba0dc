"""``emolens detect``: frames -> faces, smiles, emotions, tracks -> ``emolens.observations``."""

from __future__ import annotations

import argparse

from emolens.bus import make_bus
from emolens.inference import make_classifier
from emolens.services.loop import run_stage
from emolens.settings import Settings
from emolens.stages import Detector


def main(args: argparse.Namespace, settings: Settings) -> int:
    bus = make_bus(settings.bus, settings)
    detector = Detector(bus, settings, make_classifier(settings.inference, settings.threads))
    return run_stage("detector", detector, args.idle_exit, settings)
