"""Backpressure at ingest: when the detectors fall behind, a recording waits and a live source
sheds frames (keep the newest, sample down), counting what it shed; the in-process bus keeps
only a bounded tail of what every reader has consumed."""

from __future__ import annotations

import threading
import time

import pytest

from emolens import metrics
from emolens.bus import FRAMES_TOPIC, MemoryBus
from emolens.settings import Settings
from emolens.stages import DETECTOR_GROUP, Ingest
from emolens.store import Camera
from tests.conftest import MODEL_REPO
from tests.unit.test_stream_reconnect import MjpegServer


def test_a_recording_waits_for_the_detectors_and_loses_nothing(demo_clip):
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    bus = MemoryBus()
    detectors = bus.consumer([FRAMES_TOPIC], DETECTOR_GROUP)  # joined, but not reading yet
    ingest = Ingest(bus, Camera("cam-bp"), settings, max_backlog=6)
    published: list[int] = []
    thread = threading.Thread(target=lambda: published.append(ingest.run(str(demo_clip))), daemon=True)
    thread.start()
    time.sleep(2.0)
    assert thread.is_alive() and bus.backlog(FRAMES_TOPIC, DETECTOR_GROUP) == 6  # held back at the mark
    seen = 0
    deadline = time.monotonic() + 60
    while thread.is_alive() or bus.backlog(FRAMES_TOPIC, DETECTOR_GROUP):
        assert time.monotonic() < deadline
        seen += len(detectors.poll(0.1, 4))
        detectors.commit()
    assert published == [20] and seen == 20 and ingest.shed == 0


@pytest.mark.stream
def test_a_live_source_sheds_frames_while_the_detectors_are_behind():
    server = MjpegServer(frames_per_connection=100_000)
    server.start()
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=1000)
    bus = MemoryBus()
    detectors = bus.consumer([FRAMES_TOPIC], DETECTOR_GROUP)
    stop = threading.Event()
    ingest = Ingest(bus, Camera("cam-live"), settings, stop=stop, max_backlog=20)
    shed_metric = metrics.SHED.labels("ingest", "backlog")
    before = shed_metric._value.get()
    thread = threading.Thread(target=lambda: ingest.run(f"http://127.0.0.1:{server.port}/"), daemon=True)
    thread.start()
    try:
        time.sleep(4.0)  # nobody detects: the backlog hits the mark and ingest samples down
        assert ingest.shed > 0 and ingest.keep_every > 1
        assert shed_metric._value.get() - before == ingest.shed
        held = bus.backlog(FRAMES_TOPIC, DETECTOR_GROUP)
        time.sleep(2.0)
        grown = bus.backlog(FRAMES_TOPIC, DETECTOR_GROUP) - held
        # sampled down to at most 1 frame in 64 of a ~50 fps stream: the backlog creeps, it does not run away
        assert grown < 20, grown
        high = ingest.keep_every
        while bus.backlog(FRAMES_TOPIC, DETECTOR_GROUP):  # the detectors catch up
            detectors.poll(0.05, 1000)
            detectors.commit()
        time.sleep(3.0)
        assert ingest.keep_every < high  # and ingest lets more frames through again
    finally:
        stop.set()
        thread.join(timeout=10)
        server.stop()
    assert bus.held(FRAMES_TOPIC) <= bus.keep_consumed + bus.backlog(FRAMES_TOPIC, DETECTOR_GROUP)


def test_the_memory_bus_keeps_a_bounded_tail_of_consumed_messages():
    bus = MemoryBus(keep_consumed=10)
    a, b = bus.consumer(["t"], "a"), bus.consumer(["t"], "b")
    for i in range(100):
        bus.publish("t", "k", bytes([i]))
    assert len(a.poll(0.1, 1000)) == 100
    a.commit()
    assert bus.held("t") == 100  # b has not read them: nothing may go
    assert len(b.poll(0.1, 60)) == 60
    b.commit()
    assert bus.held("t") == 50  # 40 unread by b + the last 10 both read
    late = bus.consumer(["t"], "late")  # a group that joins late starts at the oldest kept
    assert next(m.offset for m in late.poll(0.1, 1000)) == 50
