"""Bound the memory of the local stack's broker. Tansu with memory storage (the only Kafka-protocol
broker that installs here) keeps every message it was ever sent: it neither enforces a topic's
``retention.ms`` (measured: a topic with retention 3 s still held all 1,500 messages and 120 MB
after 13 minutes) nor answers DeleteRecords. So `emolens dev up` recycles it: once its resident
memory passes a cap, the producers and consumers are paused, what still matters is copied out
(each flow topic from its consumer group's committed offset, each dead-letter topic whole; only
messages younger than the topic's retention), the broker is restarted empty on its port, the
topics are created again and the copy published back on the same partitions with the same keys,
headers and timestamps, and the services resume. Consumers find no committed offset and start
from the earliest message, which is the first one they had not committed: delivery stays at least
once and every stage is idempotent (docs/reliability.md, "The dev broker's memory").

A real Kafka (the chart) enforces retention itself and needs none of this.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emolens import logs
from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, topic_retention
from emolens.bus.kafka import KafkaBus
from emolens.settings import Settings
from emolens.stages import Aggregator, Detector

log = logging.getLogger(__name__)

# The consumer group whose committed offset marks what a flow topic no longer needs.
READERS = {FRAMES_TOPIC: Detector.GROUP, OBSERVATIONS_TOPIC: Aggregator.GROUP}


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 when it is gone)."""
    try:
        for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass(frozen=True)
class Kept:
    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


@dataclass(frozen=True)
class Recycled:
    kept: int  # messages copied to the new broker
    expired: int  # messages older than their topic's retention, left behind
    consumed: int  # messages every reader had committed, left behind
    seconds: float


def still_needed(bootstrap: str, settings: Settings, now_ms: int | None = None) -> tuple[list[Kept], int, int]:
    """What a recycle must keep: per flow topic, what its reader has not committed; the
    dead-letter topics whole; in both, only what is younger than the topic's retention.
    Returns (kept, expired, consumed)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    retention = topic_retention(settings)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    kept: list[Kept] = []
    expired = consumed = 0
    try:
        existing = set(admin.list_topics())
        for topic in [t for t in retention if t in existing]:
            tps = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
            if not tps:
                continue
            starts, ends, done = _unread(admin, reader, topic, tps)
            consumed += done
            young, old = _read_back(reader, topic, tps, (starts, ends), now_ms - retention[topic])
            kept += young
            expired += old
    finally:
        reader.close()
        admin.close()
    return kept, expired, consumed


def _unread(admin: Any, reader: Any, topic: str, tps: list[Any]) -> tuple[dict[Any, int], dict[Any, int], int]:
    """Where the unread part of each partition starts and ends: from the topic's reader's
    committed offset (a dead-letter topic has none: all of it), and how many messages that skips."""
    begins, ends = reader.beginning_offsets(tps), reader.end_offsets(tps)
    starts = dict(begins)
    consumed = 0
    if topic in READERS:
        committed = admin.list_group_offsets({READERS[topic]: tps}).get(READERS[topic], {})
        for tp in tps:
            mark = committed.get(tp)
            if mark is not None and mark.offset > begins[tp]:
                starts[tp] = min(mark.offset, ends[tp])
                consumed += starts[tp] - begins[tp]
    return starts, ends, consumed


def _read_back(
    reader: Any, topic: str, tps: list[Any], span: tuple[dict[Any, int], dict[Any, int]], oldest_ms: int
) -> tuple[list[Kept], int]:
    """The messages of ``tps`` between their start and end offsets (``span``) stamped at
    ``oldest_ms`` or later, and how many older ones were left behind."""
    starts, ends = span
    kept: list[Kept] = []
    expired = 0
    reader.assign(tps)
    for tp in tps:
        reader.seek(tp, starts[tp])
    todo = {tp for tp in tps if starts[tp] < ends[tp]}
    while todo:
        batches = reader.poll(timeout_ms=1000, max_records=500)
        if not batches:
            raise RuntimeError(f"could not read {topic} back from the broker")
        for tp, records in batches.items():
            for r in records:
                if r.offset >= ends[tp]:
                    continue
                if r.timestamp < oldest_ms:
                    expired += 1
                else:
                    headers = [(k, bytes(v)) for k, v in (r.headers or ())]
                    kept.append(Kept(topic, tp.partition, r.key, r.value, headers, r.timestamp))
            if reader.position(tp) >= ends[tp]:
                todo.discard(tp)
    return kept, expired


def publish_back(bootstrap: str, settings: Settings, kept: list[Kept]) -> None:
    """Create the topics on the new broker (retention as the services create them) and
    publish ``kept`` on the partitions, with the keys, headers and timestamps it had."""
    from kafka import KafkaProducer

    retention = topic_retention(settings)
    bus = KafkaBus(bootstrap, settings.kafka_partitions, settings.kafka_replication, retention)
    try:
        bus.ensure_topics(list(retention))
    finally:
        bus.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=False)
    try:
        for m in kept:
            producer.send(
                m.topic, m.value, key=m.key, headers=m.headers, partition=m.partition, timestamp_ms=m.timestamp_ms
            )
        producer.flush(timeout=60)
    finally:
        producer.close()


def recycle(
    bootstrap: str,
    restart: Callable[[], None],
    settings: Settings | None = None,
    pause: Callable[[], None] = lambda: None,
    resume: Callable[[], None] = lambda: None,
) -> Recycled:
    """Restart the broker at ``bootstrap`` empty (``restart()`` stops it and starts a new one on
    the same port) with what is still needed copied over, between ``pause()`` and ``resume()``
    of whatever produces and consumes (they must not publish while the copy is taken)."""
    settings = settings or Settings()
    started = time.monotonic()
    pause()
    try:
        time.sleep(0.5)  # sends already on the wire land, or stay pending and are resent later
        kept, expired, consumed = still_needed(bootstrap, settings)
        restart()
        publish_back(bootstrap, settings, kept)
    finally:
        with contextlib.suppress(Exception):
            resume()
    done = Recycled(len(kept), expired, consumed, time.monotonic() - started)
    logs.event(
        log.warning,
        "broker_recycled",
        kept=done.kept,
        expired=done.expired,
        consumed=done.consumed,
        seconds=round(done.seconds, 1),
    )
    return done
