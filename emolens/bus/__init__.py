"""Message bus adapters chosen from a URL: ``memory://`` (in-process) or ``kafka://HOST:PORT``."""

from __future__ import annotations

from emolens.bus.base import (
    FRAMES_TOPIC,
    OBSERVATIONS_TOPIC,
    Bus,
    Consumer,
    Headers,
    Message,
    Progress,
    dead_letter_topic,
)
from emolens.bus.memory import MemoryBus
from emolens.errors import ConfigError
from emolens.settings import Settings

__all__ = [
    "FRAMES_TOPIC",
    "OBSERVATIONS_TOPIC",
    "Bus",
    "Consumer",
    "Headers",
    "MemoryBus",
    "Message",
    "Progress",
    "dead_letter_topic",
    "make_bus",
    "topic_retention",
]


def topic_retention(settings: Settings) -> dict[str, int]:
    """Every topic of the flow and how long it keeps a message (``retention.ms``). Frames hold
    face pixels, so theirs is the shortest: it bounds how long a face image exists anywhere.

    >>> topic_retention(Settings())["emolens.frames"] / 60_000  # minutes
    10.0
    """
    return {
        FRAMES_TOPIC: settings.frames_retention_ms,
        OBSERVATIONS_TOPIC: settings.observations_retention_ms,
        dead_letter_topic(FRAMES_TOPIC): settings.dead_letter_retention_ms,
        dead_letter_topic(OBSERVATIONS_TOPIC): settings.dead_letter_retention_ms,
    }


def make_bus(url: str, settings: Settings | None = None) -> Bus:
    """The bus at ``url``; on Kafka, the flow's topics are created when missing, with the
    partitions, replication and retention of ``settings`` (default: the defaults)."""
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith("kafka://"):
        from emolens.bus.kafka import KafkaBus

        settings = settings or Settings()
        retention = topic_retention(settings)
        bus = KafkaBus(url[len("kafka://") :], settings.kafka_partitions, settings.kafka_replication, retention)
        bus.ensure_topics(list(retention))
        return bus
    raise ConfigError(f"unknown bus URL {url!r}: use memory:// or kafka://HOST:PORT")
