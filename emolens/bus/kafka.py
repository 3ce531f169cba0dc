"""Kafka adapter (kafka-python). Offsets are committed only when the caller says so, after
its own side effects (publishing downstream, the database commit) are durable."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from emolens import logs
from emolens.bus.base import Headers, Message, Progress
from emolens.errors import MissingExtra, Unavailable

log = logging.getLogger(__name__)
# lag() asks the broker for end offsets after a poll; a broker slower than this leaves the
# gauge as it was rather than holding up the batch in hand
LAG_TIMEOUT_MS = 1000


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
            Message(tp.topic, (r.key or b"").decode(), r.value, tp.partition, r.offset, tuple(r.headers or ()))
            for tp, records in batches.items()
            for r in records
        ]
        out.sort(key=lambda m: (m.topic, m.partition, m.offset))
        return out

    def commit(self) -> None:
        """Commit what ``poll`` returned. A commit refused because the group moved on without
        this member (a rebalance, a broker that lost the group) is not an error to stop for:
        the messages go to their new owner again, and every stage's effect is idempotent."""
        from kafka.errors import CommitFailedError

        with _outage():
            try:
                self._consumer.commit()
            except CommitFailedError as exc:
                logs.event(
                    log.warning,
                    "commit_refused",
                    reason=str(exc),
                    note="the group rebalanced; messages will be redelivered",
                )

    def lag(self) -> int | None:
        """Over the partitions assigned to this member: end offset minus position, what it has
        yet to read (0 before it has any). None when the broker does not say within
        ``LAG_TIMEOUT_MS``: the caller keeps its last value, and the next poll meets the outage.

        The end is the larger of the broker's end offset and the high watermark of the last
        fetch response: Tansu (the broker of the tests) answers ListOffsets with the first
        offset of the last record batch + 1, short of the end when that batch holds several."""
        from kafka.errors import KafkaError

        consumer = self._consumer
        assigned = list(consumer.assignment())
        if not assigned:
            return 0
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=LAG_TIMEOUT_MS)
            positions = [consumer.position(tp, timeout_ms=LAG_TIMEOUT_MS) for tp in assigned]
        except KafkaError:
            return None
        total = 0
        for tp, position in zip(assigned, positions, strict=True):
            if position is None or tp not in ends:
                return None
            total += max(max(ends[tp], consumer.highwater(tp) or 0) - position, 0)
        return total

    def close(self) -> None:
        self._consumer.close()


class KafkaBus:
    """Publishing is at least once up to :meth:`flush`: every message stays pending until the
    broker acknowledged it, and a flush that finds failed sends (a broker restart, a producer
    the broker no longer knows) builds a new producer, sends them again and raises
    ``Unavailable`` until they are all stored, so the caller's retry loop cannot drop one."""

    def __init__(
        self,
        bootstrap: str,
        partitions: int = 4,
        replication: int = 1,
        retention_ms: Mapping[str, int] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions, self.replication = partitions, replication
        self.retention_ms = dict(retention_ms or {})
        self._pending: list[tuple[str, bytes, bytes, Headers, Any]] = []
        self._producer = self._new_producer()
        self._probe: Any = None  # a group-less consumer and an admin client, for backlog()
        self._admin: Any = None

    def _new_producer(self) -> Any:
        try:
            from kafka import KafkaProducer
        except ImportError as exc:  # the first thing every kafka:// command does
            raise MissingExtra("kafka://", "kafka", exc.name) from exc

        with _outage():
            # Idempotence off: every consumer of these topics is idempotent already, and an
            # idempotent producer's id dies with a broker that restarts without its state.
            return KafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, retries=5, enable_idempotence=False
            )

    def new_topic(self, topic: str) -> Any:
        """The ``NewTopic`` this bus creates for ``topic``: its partitions, replication and,
        when ``retention_ms`` names the topic, its ``retention.ms`` and the same ``segment.ms``:
        Kafka deletes whole segments only, and never the one being written, so with its default
        7-day segments a quiet frames topic would keep face pixels for days, not minutes."""
        from kafka.admin import NewTopic

        configs = {}
        if topic in self.retention_ms:
            configs = {"retention.ms": str(self.retention_ms[topic]), "segment.ms": str(self.retention_ms[topic])}
        return NewTopic(topic, self.partitions, self.replication, topic_configs=configs)

    def ensure_topics(self, topics: list[str]) -> None:
        """Create those of ``topics`` the cluster lacks (:meth:`new_topic`). A topic that exists
        keeps its settings: change them with the cluster's tools (docs/deploy.md)."""
        from kafka.admin import KafkaAdminClient
        from kafka.errors import TopicAlreadyExistsError

        with _outage():
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            existing = set(admin.list_topics())
            new = [self.new_topic(t) for t in topics if t not in existing]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):  # another service won the race
                    admin.create_topics(new)
        finally:
            admin.close()

    def _send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> Any:
        from kafka.errors import KafkaError

        try:
            return self._producer.send(topic, key=key, value=value, headers=list(headers) or None)
        except KafkaError as exc:  # the producer itself is broken: the next flush rebuilds it
            return exc

    def publish(self, topic: str, key: str, value: bytes, headers: Headers = ()) -> None:
        k = key.encode()
        self._pending.append((topic, k, value, headers, self._send(topic, k, value, headers)))

    def flush(self) -> None:
        from kafka.errors import KafkaError

        with contextlib.suppress(KafkaError):
            self._producer.flush(timeout=30)
        failed = []
        for topic, key, value, headers, future in self._pending:
            if isinstance(future, Exception) or not future.is_done or future.failed():
                failed.append((topic, key, value, headers))
        if not failed:
            self._pending.clear()
            return
        logs.event(log.warning, "publish_failed", messages=len(failed), note="resending through a new producer")
        with contextlib.suppress(Exception):
            self._producer.close(timeout=1)
        self._producer = self._new_producer()
        self._pending = [(t, k, v, h, self._send(t, k, v, h)) for t, k, v, h in failed]
        raise Unavailable(f"kafka did not store {len(failed)} message(s); resent")

    def backlog(self, topic: str, group: str) -> int:
        """Messages of ``topic`` that ``group`` has not committed yet (end offsets minus the
        group's committed offsets, over the topic's partitions; a partition the group never
        committed counts whole)."""
        return self.progress(topic, group).backlog

    def progress(self, topic: str, group: str) -> Progress:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.admin import KafkaAdminClient

        with _outage():
            if self._probe is None:
                self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
                self._probe = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
            partitions = self._probe.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                return Progress(0, 0)
            ends = self._probe.end_offsets(tps)
            committed = self._admin.list_group_offsets({group: tps}).get(group, {})
        done = 0
        for tp in tps:
            mark = committed.get(tp)
            done += min(mark.offset, ends[tp]) if mark is not None and mark.offset >= 0 else 0
        return Progress(done, sum(ends.values()))

    def recent(self, topic: str, key: str, limit: int) -> list[Message]:
        """The last ``limit`` messages of the partition ``key`` goes to, through a consumer of
        no group (nothing committed, no rebalance). The partition is the producer's: murmur2 of
        the key over the topic's partitions. Reads up to the larger of the end offset and the
        fetch's high watermark (see :meth:`KafkaConsumerAdapter.lag` on Tansu's end offsets)."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.partitioner.default import murmur2

        if limit <= 0:
            return []
        with _outage():
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
            try:
                partitions = sorted(consumer.partitions_for_topic(topic) or ())
                if not partitions:
                    return []
                tp = TopicPartition(topic, partitions[(murmur2(key.encode()) & 0x7FFFFFFF) % len(partitions)])
                consumer.assign([tp])
                begin, end = consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
                consumer.seek(tp, max(begin, end - limit))
                out: list[Message] = []
                while True:
                    records = consumer.poll(timeout_ms=1000, max_records=limit).get(tp, [])
                    out += [
                        Message(topic, (r.key or b"").decode(), r.value, tp.partition, r.offset, tuple(r.headers or ()))
                        for r in records
                    ]
                    if not records or consumer.position(tp) >= max(end, consumer.highwater(tp) or 0):
                        break
            finally:
                consumer.close()
        return out[-limit:]

    def consumer(self, topics: list[str], group: str) -> KafkaConsumerAdapter:
        return KafkaConsumerAdapter(self.bootstrap, topics, group)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._producer.flush(timeout=10)
        self._producer.close()
        for client in (self._probe, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
