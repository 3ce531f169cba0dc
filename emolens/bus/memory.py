"""The in-process bus of the embedded shape (a first-class adapter, not a test double): one
ordered log per topic, committed offsets per consumer group, like a one-partition Kafka."""

from __future__ import annotations

import threading
from collections import defaultdict

from emolens.bus.base import Message


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, topics: list[str], group: str) -> None:
        self._bus, self._topics, self._group = bus, topics, group
        with bus._cond:
            self._position = {t: bus._committed[(group, t)] for t in topics}

    def poll(self, timeout_s: float, max_records: int = 64) -> list[Message]:
        with self._bus._cond:
            self._bus._cond.wait_for(self._has_new, timeout=timeout_s)
            out: list[Message] = []
            for t in self._topics:
                log = self._bus._logs[t]
                while self._position[t] < len(log) and len(out) < max_records:
                    out.append(log[self._position[t]])
                    self._position[t] += 1
            return out

    def lag(self) -> int:
        """Messages of the subscribed topics not yet returned by :meth:`poll`."""
        with self._bus._cond:
            ends = {t: log[-1].offset + 1 if (log := self._bus._logs[t]) else 0 for t in self._topics}
            return sum(max(ends[t] - self._position[t], 0) for t in self._topics)

    def _has_new(self) -> bool:
        return any(self._position[t] < len(self._bus._logs[t]) for t in self._topics)

    def commit(self) -> None:
        with self._bus._cond:
            for t, pos in self._position.items():
                self._bus._committed[(self._group, t)] = pos

    def close(self) -> None:
        pass


class MemoryBus:
    """>>> bus = MemoryBus()
    >>> bus.publish("t", "k", b"v")
    >>> c = bus.consumer(["t"], "g")
    >>> [m.value for m in c.poll(0.1)]
    [b'v']
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._logs: dict[str, list[Message]] = defaultdict(list)
        self._committed: dict[tuple[str, str], int] = defaultdict(int)

    def publish(self, topic: str, key: str, value: bytes) -> None:
        with self._cond:
            log = self._logs[topic]
            log.append(Message(topic, key, value, 0, len(log)))
            self._cond.notify_all()

    def flush(self) -> None:
        pass

    def consumer(self, topics: list[str], group: str) -> MemoryConsumer:
        return MemoryConsumer(self, topics, group)

    def close(self) -> None:
        pass
