"""The embedded shape: ingest -> memory bus -> detector -> memory bus -> aggregator, all in one
process, the same stages the services run over Kafka. ``emolens run`` is ``run_embedded``."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from emolens.bus import MemoryBus
from emolens.inference import Classifier, make_classifier
from emolens.live import LiveState
from emolens.media import source_kind
from emolens.settings import Settings
from emolens.stages import Aggregator, Detector, Ingest
from emolens.store import Camera, Store

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    frames: int
    observations: int
    seconds: float
    shed: int = 0  # live frames ingest dropped because detection was behind


def run_embedded(
    source: str,
    camera: Camera,
    store: Store,
    settings: Settings,
    *,
    start: datetime | None = None,
    live: LiveState | None = None,
    classifier: Classifier | None = None,
    seq_start: int | None = None,
    stop: threading.Event | None = None,
    max_backlog: int | None = None,
) -> RunSummary:
    """Analyze ``source`` for ``camera`` and aggregate it into ``store``.

    Ingest runs in a thread; detector and aggregator step in this one until ingest has
    finished and both have drained the bus. Errors of the source (missing, corrupt) raise.
    A live source runs until ``stop`` is set. The bus between the stages is bounded: ingest
    waits (recordings) or sheds frames (live) while detection is ``max_backlog`` frames behind.
    """
    source_kind(source)  # fail fast on a missing path or unknown type
    bus = MemoryBus()
    store.ensure_camera(camera)
    backlog = {} if max_backlog is None else {"max_backlog": max_backlog}
    ingest = Ingest(bus, camera, settings, seq_start, stop=stop, **backlog)
    detector = Detector(bus, settings, classifier or make_classifier(settings.inference, settings.threads))
    aggregator = Aggregator(bus, store, live, replay_window=timedelta(seconds=settings.replay_window_s))
    failure: list[BaseException] = []
    published: list[int] = []

    def produce() -> None:
        try:
            published.append(ingest.run(source, start))
        except BaseException as exc:  # re-raised below, in the caller's thread
            failure.append(exc)

    t0 = time.perf_counter()
    thread = threading.Thread(target=produce, name="emolens-ingest", daemon=True)
    thread.start()
    frames = observations = 0
    while True:
        ingest_done = not thread.is_alive()  # read before polling: nothing can arrive after
        n_det = detector.step(timeout_s=0.05)
        n_agg = aggregator.step(timeout_s=0.0)
        frames += n_det
        observations += n_agg
        if ingest_done and n_det == 0 and n_agg == 0:
            break
    thread.join()
    if failure:
        raise failure[0]
    return RunSummary(frames, observations, time.perf_counter() - t0, ingest.shed)
