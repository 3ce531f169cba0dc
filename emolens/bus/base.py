"""The bus seam: keyed messages on topics, consumer groups with explicit offset commits
(at-least-once delivery; the aggregator's idempotent upsert makes the effect exactly-once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Headers = Sequence[tuple[str, bytes]]

FRAMES_TOPIC = "emolens.frames"
OBSERVATIONS_TOPIC = "emolens.observations"


def dead_letter_topic(topic: str) -> str:
    """Where a message of ``topic`` that can never be processed goes, so it blocks nothing.

    >>> dead_letter_topic(FRAMES_TOPIC)
    'emolens.frames.dlq'
    """
    return f"{topic}.dlq"


@dataclass(frozen=True)
class Message:
    topic: str
    key: str
    value: bytes
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = ()  # Kafka record headers: a dead letter's reason


class Consumer(Protocol):
    def poll(self, timeout_s: float, max_records: int = 64) -> list[Message]:
        """Next messages of the subscribed topics (possibly none after ``timeout_s``)."""
        ...

    def commit(self) -> None:
        """Mark everything returned by ``poll`` so far as processed by this group."""
        ...

    def lag(self) -> int | None:
        """Messages of this consumer's partitions not yet returned by ``poll`` (None: not
        known now, e.g. the broker did not answer in time). Never raises for an outage."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Progress:
    """Offsets summed over a topic's partitions: ``committed`` by a group, ``end`` published."""

    committed: int
    end: int

    @property
    def backlog(self) -> int:
        return max(self.end - self.committed, 0)


class Bus(Protocol):
    def publish(self, topic: str, key: str, value: bytes, headers: Headers = ()) -> None:
        """Send ``value`` under ``key``; ``headers`` travel beside it (the dead-letter topics
        carry the reason there, so the message itself stays as it came)."""
        ...

    def flush(self) -> None:
        """Block until every published message is stored by the bus."""
        ...

    def consumer(self, topics: list[str], group: str) -> Consumer: ...

    def backlog(self, topic: str, group: str) -> int:
        """Messages of ``topic`` that ``group`` has not committed yet (what it is behind by)."""
        ...

    def progress(self, topic: str, group: str) -> Progress:
        """Where ``group`` stands in ``topic``: what it committed and what was published, each
        summed over partitions (the pipeline status compares two readings: a stage that
        committed nothing new while it is behind is stuck)."""
        ...

    def recent(self, topic: str, key: str, limit: int) -> list[Message]:
        """The last ``limit`` messages of the partition of ``topic`` that ``key`` goes to (of
        every key there), oldest first, read outside any group: a restarted detector reads the
        observations it emitted last for a camera (``emolens.stages.Detector``)."""
        ...

    def close(self) -> None: ...
