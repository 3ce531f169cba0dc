"""Exponential backoff with jitter: how every emolens process waits for a dependency to return.

>>> b = Backoff(initial_s=0.5, maximum_s=4.0, jitter=0.0)
>>> [b.next_delay() for _ in range(5)]
[0.5, 1.0, 2.0, 4.0, 4.0]
>>> b.reset(); b.next_delay()
0.5
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 0.5
    factor: float = 2.0
    maximum_s: float = 30.0
    jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    attempts: int = field(default=0, init=False)

    def next_delay(self) -> float:
        delay = min(self.maximum_s, self.initial_s * self.factor**self.attempts)
        self.attempts += 1
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return delay

    def reset(self) -> None:
        self.attempts = 0

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Sleep the next delay; returns False when ``stop`` was set meanwhile."""
        delay = self.next_delay()
        if stop is None:
            threading.Event().wait(delay)
            return True
        return not stop.wait(delay)
