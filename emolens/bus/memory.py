"""The in-process bus of the embedded shape (a first-class adapter, not a test double): one
ordered log per topic, committed offsets per consumer group, like a one-partition Kafka.

It is bounded like a broker with retention: once every group that reads a topic has committed
past a message, at most ``keep_consumed`` such messages stay (for a group that joins late, as
Kafka keeps them for its retention time); unconsumed messages are bounded by the producers'
backpressure (``backlog``, see emolens.stages.Ingest).
"""

from __future__ import annotations

import threading
from collections import defaultdict

from emolens.bus.base import Headers, Message, Progress


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, topics: list[str], group: str) -> None:
        self._bus, self._topics, self._group = bus, topics, group
        with bus._cond:
            for t in topics:
                bus._readers[t].add(group)
            self._position = {t: max(bus._committed[(group, t)], bus._base[t]) for t in topics}

    def poll(self, timeout_s: float, max_records: int = 64) -> list[Message]:
        bus = self._bus
        with bus._cond:
            bus._cond.wait_for(self._has_new, timeout=timeout_s)
            out: list[Message] = []
            for t in self._topics:
                log, base = bus._logs[t], bus._base[t]
                self._position[t] = max(self._position[t], base)  # retention passed us by
                while self._position[t] < base + len(log) and len(out) < max_records:
                    out.append(log[self._position[t] - base])
                    self._position[t] += 1
            return out

    def lag(self) -> int:
        """Messages of the subscribed topics not yet returned by :meth:`poll`."""
        with self._bus._cond:
            ends = {t: log[-1].offset + 1 if (log := self._bus._logs[t]) else 0 for t in self._topics}
            return sum(max(ends[t] - self._position[t], 0) for t in self._topics)

    def _has_new(self) -> bool:
        return any(self._position[t] < self._bus._base[t] + len(self._bus._logs[t]) for t in self._topics)

    def commit(self) -> None:
        with self._bus._cond:
            for t, pos in self._position.items():
                self._bus._committed[(self._group, t)] = pos
                self._bus._trim(t)

    def close(self) -> None:
        pass


class MemoryBus:
    """>>> bus = MemoryBus()
    >>> bus.publish("t", "k", b"v")
    >>> c = bus.consumer(["t"], "g")
    >>> [m.value for m in c.poll(0.1)]
    [b'v']
    >>> c.commit(); bus.backlog("t", "g")
    0
    """

    def __init__(self, keep_consumed: int = 1000) -> None:
        self.keep_consumed = keep_consumed
        self._cond = threading.Condition()
        self._logs: dict[str, list[Message]] = defaultdict(list)
        self._base: dict[str, int] = defaultdict(int)  # offset of the first message kept
        self._committed: dict[tuple[str, str], int] = defaultdict(int)
        self._readers: dict[str, set[str]] = defaultdict(set)

    def publish(self, topic: str, key: str, value: bytes, headers: Headers = ()) -> None:
        with self._cond:
            log = self._logs[topic]
            log.append(Message(topic, key, value, 0, self._base[topic] + len(log), tuple(headers)))
            self._cond.notify_all()

    def _trim(self, topic: str) -> None:
        readers = self._readers[topic]
        if not readers:
            return
        consumed = min(self._committed[(g, topic)] for g in readers)
        drop = consumed - self._base[topic] - self.keep_consumed
        if drop > 0:
            del self._logs[topic][:drop]
            self._base[topic] += drop

    def backlog(self, topic: str, group: str) -> int:
        """Messages of ``topic`` that ``group`` has not committed yet."""
        return self.progress(topic, group).backlog

    def progress(self, topic: str, group: str) -> Progress:
        with self._cond:
            end = self._base[topic] + len(self._logs[topic])
            return Progress(max(self._committed[(group, topic)], self._base[topic]), end)

    def recent(self, topic: str, key: str, limit: int) -> list[Message]:
        """The last ``limit`` messages of ``topic`` the bus holds (one partition: every key)."""
        with self._cond:
            return list(self._logs[topic][-limit:]) if limit > 0 else []

    def held(self, topic: str) -> int:
        """Messages of ``topic`` the bus holds now (consumed ones kept for late groups included)."""
        with self._cond:
            return len(self._logs[topic])

    def flush(self) -> None:
        pass

    def consumer(self, topics: list[str], group: str) -> MemoryConsumer:
        return MemoryConsumer(self, topics, group)

    def close(self) -> None:
        pass
