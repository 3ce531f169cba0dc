"""Whether the pipeline moves, read from the bus: for each bus stage, how far its consumer
group is behind and whether what it committed advanced. A stage with a backlog that committed
nothing for ``stall_s`` is stuck (dead, frozen, or waiting out a dependency); the gateway's
health service reports it as ``emolens.pipeline`` (all stages) and ``emolens.pipeline.<stage>``.

    >>> from emolens.bus import MemoryBus
    >>> bus, now = MemoryBus(), [0.0]
    >>> watch = PipelineWatch(lambda: bus, stall_s=30, clock=lambda: now[0])
    >>> [s.ok for s in watch.check()]  # nothing to do: nothing stuck
    [True, True]
    >>> bus.publish("emolens.frames", "cam", b"frame"); now[0] = 31
    >>> watch.check()[0].reason
    'backlog 1, nothing committed for 31 s'
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from emolens import logs
from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, Bus
from emolens.stages import Aggregator, Detector

log = logging.getLogger(__name__)

PIPELINE = "emolens.pipeline"
STAGES = (("detector", FRAMES_TOPIC, Detector.GROUP), ("aggregator", OBSERVATIONS_TOPIC, Aggregator.GROUP))


@dataclass(frozen=True)
class StageStatus:
    stage: str
    ok: bool
    backlog: int | None  # None: the bus did not answer
    idle_s: float  # seconds since the stage last committed (or had nothing to do)
    reason: str = ""

    @property
    def health_name(self) -> str:
        return f"{PIPELINE}.{self.stage}"


class PipelineWatch:
    """:meth:`check` reads every stage's progress from the bus ``connect()`` returns (made on
    first use, again after an outage); ``clock`` is for tests."""

    def __init__(self, connect: Callable[[], Bus], stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.connect, self.stall_s, self.clock = connect, stall_s, clock
        self._bus: Bus | None = None
        self._last: dict[str, tuple[int, float]] = {}  # stage -> (committed, when it last moved)

    def check(self) -> list[StageStatus]:
        now = self.clock()
        out = []
        for stage, topic, group in STAGES:
            try:
                if self._bus is None:
                    self._bus = self.connect()
                progress = self._bus.progress(topic, group)
            except Exception as exc:  # the bus is down: nothing can be said to move
                self._bus = None
                out.append(StageStatus(stage, False, None, 0.0, f"bus: {type(exc).__name__}"))
                continue
            committed, moved = self._last.get(stage, (progress.committed, now))
            if progress.committed != committed or progress.backlog == 0:
                moved = now
            self._last[stage] = (progress.committed, moved)
            idle = now - moved
            stuck = progress.backlog > 0 and idle >= self.stall_s
            reason = f"backlog {progress.backlog}, nothing committed for {idle:.0f} s" if stuck else ""
            out.append(StageStatus(stage, not stuck, progress.backlog, idle, reason))
        return out


class PipelineStatus:
    """Runs :class:`PipelineWatch` every ``interval`` seconds on a thread of its own and hands
    ``(health name, ok)`` pairs to ``report``: one per stage and ``emolens.pipeline`` for all;
    each change is logged once."""

    def __init__(self, watch: PipelineWatch, interval: float, report: Callable[[str, bool], None]) -> None:
        self.watch, self.interval, self.report = watch, interval, report
        self.last: list[StageStatus] = []
        self._seen: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-status", daemon=True)

    def check(self) -> list[StageStatus]:
        statuses = self.watch.check()
        for s in statuses:
            if self._seen.get(s.stage) != s.ok:
                level = logging.INFO if s.ok else logging.WARNING
                logs.event(
                    partial(log.log, level),
                    "pipeline_status",
                    stage=s.stage,
                    status="SERVING" if s.ok else "NOT_SERVING",
                    backlog=s.backlog,
                    reason=s.reason,
                )
                self._seen[s.stage] = s.ok
            self.report(s.health_name, s.ok)
        self.report(PIPELINE, all(s.ok for s in statuses))
        self.last = statuses
        return statuses

    def _run(self) -> None:
        while True:
            self.check()
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        """NOT_SERVING until the first check, which runs on the thread: a broker that is slow to
        answer must not hold up the gateway's start."""
        for stage, _, _ in STAGES:
            self.report(f"{PIPELINE}.{stage}", False)
        self.report(PIPELINE, False)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
