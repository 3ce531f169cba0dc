"""Kafka adapter (kafka-python). Offsets are committed only when the caller says so, after
its own side effects (publishing downstream, the database commit) are durable."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from emolens.bus.base import Message
from emolens.errors import MissingExtra, Unavailable

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _outage() -> Iterator[None]:
    """kafka-python's retriable errors (no broker to bootstrap from, metadata or send timeouts)
    after its own retries mean the cluster cannot be reached: ``Unavailable``, no host named."""
    from kafka.errors import RetriableError

    try:
        yield
    except RetriableError as exc:
        raise Unavailable(f"kafka is unavailable ({type(exc).__name__})") from exc


class KafkaConsumerAdapter:
    def __init__(self, bootstrap: str, topics: list[str], group: str) -> None:
        from kafka import KafkaConsumer

        with _outage():
            self._consumer = KafkaConsumer(
                *topics,
                bootstrap_servers=bootstrap,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=6000,
                heartbeat_interval_ms=2000,
                max_poll_interval_ms=300_000,
            )

    def poll(self, timeout_s: float, max_records: int = 64) -> list[Message]:
        with _outage():
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out = [
            Message(tp.topic, (r.key or b"").decode(), r.value, tp.partition, r.offset)
            for tp, records in batches.items()
            for r in records
        ]
        out.sort(key=lambda m: (m.topic, m.partition, m.offset))
        return out

    def commit(self) -> None:
        with _outage():
            self._consumer.commit()

    def close(self) -> None:
        self._consumer.close()


class KafkaBus:
    def __init__(self, bootstrap: str, partitions: int = 4) -> None:
        try:
            from kafka import KafkaProducer
        except ImportError as exc:
            raise MissingExtra("kafka://", "kafka", exc.name) from exc

        self.bootstrap = bootstrap
        self.partitions = partitions
        with _outage():
            self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, retries=5)

    def ensure_topics(self, topics: list[str]) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        with _outage():
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            existing = set(admin.list_topics())
            new = [NewTopic(t, self.partitions, 1) for t in topics if t not in existing]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):  # another service won the race
                    admin.create_topics(new)
        finally:
            admin.close()

    def publish(self, topic: str, key: str, value: bytes) -> None:
        with _outage():
            self._producer.send(topic, key=key.encode(), value=value)

    def flush(self) -> None:
        with _outage():
            self._producer.flush()

    def consumer(self, topics: list[str], group: str) -> KafkaConsumerAdapter:
        return KafkaConsumerAdapter(self.bootstrap, topics, group)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
