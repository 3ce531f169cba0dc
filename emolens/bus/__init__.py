"""Message bus adapters chosen from a URL: ``memory://`` (in-process) or ``kafka://HOST:PORT``."""

from __future__ import annotations

from emolens.bus.base import FRAMES_TOPIC, OBSERVATIONS_TOPIC, Bus, Consumer, Message
from emolens.bus.memory import MemoryBus
from emolens.errors import ConfigError

__all__ = ["FRAMES_TOPIC", "OBSERVATIONS_TOPIC", "Bus", "Consumer", "MemoryBus", "Message", "make_bus"]


def make_bus(url: str) -> Bus:
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith("kafka://"):
        from emolens.bus.kafka import KafkaBus

        bus = KafkaBus(url[len("kafka://") :])
        bus.ensure_topics([FRAMES_TOPIC, OBSERVATIONS_TOPIC])
        return bus
    raise ConfigError(f"unknown bus URL {url!r}: use memory:// or kafka://HOST:PORT")
