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

The same recycle applies the frames' retention (the promise that a face image lives at most
``frames_retention_ms``): :class:`FramesRetention` times one whenever the oldest frame the broker
may hold comes near that age, at least every half the retention, and a recycle drops every frame
older than the retention less a margin (:func:`frames_expiry_ms`), so no frame outlives the
promise while what a lagging detector still needs is kept as long as the promise allows.

The dead-letter topics outlive the broker process: :func:`save_dead_letters` writes them to a file
(when `emolens dev down` stops the broker, and after every recycle) and :func:`restore_dead_letters`
publishes them into a broker started afresh. Dead-lettered frames carry no pixels
(emolens.stages.without_pixels), so the file holds no face.

A real Kafka (the chart) enforces retention itself and needs none of this.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emolens import logs
from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, dead_letter_topic, topic_retention
from emolens.bus.kafka import KafkaBus
from emolens.settings import Settings
from emolens.stages import Aggregator, Detector

log = logging.getLogger(__name__)

# The consumer group whose committed offset marks what a flow topic no longer needs.
READERS = {FRAMES_TOPIC: Detector.GROUP, OBSERVATIONS_TOPIC: Aggregator.GROUP}
DEAD_LETTER_TOPICS = (dead_letter_topic(FRAMES_TOPIC), dead_letter_topic(OBSERVATIONS_TOPIC))


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
    oldest_frame_ms: int | None = None  # the timestamp of the oldest frame kept (None: none kept)
    dead_letters: tuple[Kept, ...] = ()  # what the dead-letter topics held, kept


def frames_expiry_ms(retention_ms: int) -> int:
    """The age above which a recycle drops a frame: the retention less a margin (a twentieth of
    it, at most 30 s) that covers the time a recycle takes, so a frame is gone before it is
    older than the retention. A real Kafka deletes at the retention, or later.

    >>> frames_expiry_ms(600_000), frames_expiry_ms(20_000)
    (570000, 15000)
    """
    return retention_ms - min(retention_ms // 4, 30_000)


class FramesRetention:
    """When the next recycle is due so that no frame outlives ``retention_ms`` (wall-clock
    seconds, as message timestamps are): half the retention after the last one, or earlier when
    the oldest frame it kept reaches :func:`frames_expiry_ms`.

    >>> r = FramesRetention(20_000, now=100.0)
    >>> r.due_at
    110.0
    >>> r.recycled(Recycled(1, 0, 0, 1.0, oldest_frame_ms=90_000), now=101.0)
    >>> r.due_at  # the frame of t=90 s is due to go at 105 s (15 s old), before the 111 s timer
    105.0
    >>> r.recycled(Recycled(1, 0, 0, 1.0, oldest_frame_ms=None), now=105.0)
    >>> r.due_at  # no frame kept: half the retention on
    115.0
    """

    def __init__(self, retention_ms: int, now: float | None = None) -> None:
        self.retention_ms = retention_ms
        self.period_s = retention_ms / 2000
        self.due_at = (time.time() if now is None else now) + self.period_s

    def due(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.due_at

    def recycled(self, done: Recycled | None, now: float | None = None) -> None:
        """Note a recycle (or, with None, a check that found nothing to drop)."""
        now = time.time() if now is None else now
        self.due_at = now + self.period_s
        if done is not None and done.oldest_frame_ms is not None:
            self.due_at = min(self.due_at, (done.oldest_frame_ms + frames_expiry_ms(self.retention_ms)) / 1000)


def still_needed(bootstrap: str, settings: Settings, now_ms: int | None = None) -> tuple[list[Kept], int, int]:
    """What a recycle must keep: per flow topic, what its reader has not committed; the
    dead-letter topics whole; in both, only what is younger than the topic's retention (the
    frames': :func:`frames_expiry_ms`). Returns (kept, expired, consumed)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    retention = topic_retention(settings)
    retention[FRAMES_TOPIC] = frames_expiry_ms(retention[FRAMES_TOPIC])
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
    frames = [m.timestamp_ms for m in kept if m.topic == FRAMES_TOPIC]
    done = Recycled(
        len(kept),
        expired,
        consumed,
        time.monotonic() - started,
        min(frames) if frames else None,
        tuple(m for m in kept if m.topic in DEAD_LETTER_TOPICS),
    )
    logs.event(
        log.warning,
        "broker_recycled",
        kept=done.kept,
        expired=done.expired,
        consumed=done.consumed,
        seconds=round(done.seconds, 1),
    )
    return done


def held(bootstrap: str, topic: str) -> int:
    """How many messages ``topic`` holds on the broker (0 when it does not exist)."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not tps:
            return 0
        begins, ends = reader.beginning_offsets(tps), reader.end_offsets(tps)
        return sum(ends[tp] - begins[tp] for tp in tps)
    finally:
        reader.close()


def read_dead_letters(bootstrap: str, settings: Settings) -> list[Kept]:
    """Every message of the dead-letter topics younger than their retention."""
    kept, _, _ = still_needed(bootstrap, settings)
    return [m for m in kept if m.topic in DEAD_LETTER_TOPICS]


def save_dead_letters(path: Path, letters: list[Kept] | tuple[Kept, ...]) -> None:
    """Write ``letters`` to ``path`` (JSON lines, replaced whole: a reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        for m in letters:
            row = {
                "topic": m.topic,
                "partition": m.partition,
                "key": None if m.key is None else base64.b64encode(m.key).decode(),
                "value": base64.b64encode(m.value).decode(),
                "headers": [[k, base64.b64encode(v).decode()] for k, v in m.headers],
                "timestamp_ms": m.timestamp_ms,
            }
            out.write(json.dumps(row) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    logs.event(log.info, "dead_letters_saved", count=len(letters), path=str(path))


def restore_dead_letters(bootstrap: str, path: Path, settings: Settings, now_ms: int | None = None) -> int:
    """Publish the dead letters saved in ``path`` into the (empty, new) broker at ``bootstrap``,
    those still younger than their retention; returns how many."""
    if not path.exists():
        return 0
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    retention = topic_retention(settings)
    letters = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if now_ms - int(row["timestamp_ms"]) > retention.get(row["topic"], 0):
            continue
        letters.append(
            Kept(
                row["topic"],
                int(row["partition"]),
                None if row["key"] is None else base64.b64decode(row["key"]),
                base64.b64decode(row["value"]),
                [(k, base64.b64decode(v)) for k, v in row["headers"]],
                int(row["timestamp_ms"]),
            )
        )
    publish_back(bootstrap, settings, letters)
    logs.event(log.info, "dead_letters_restored", count=len(letters), path=str(path))
    return len(letters)
