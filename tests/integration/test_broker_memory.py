"""The local stack's broker stays bounded (docs/reliability.md, "The dev broker's memory"): Tansu
with memory storage keeps every message it was sent, so emolens_tools.broker_recycle restarts it empty
with what is still needed copied over. Real broker, real consumer group."""

from __future__ import annotations

import os
import time

import pytest

from emolens.bus import FRAMES_TOPIC, dead_letter_topic
from emolens.settings import Settings
from emolens.stages import Detector
from emolens_tools import dev
from emolens_tools.broker_recycle import recycle, rss_mb

pytestmark = pytest.mark.memory

FRAME = 60_000  # bytes: a 720p JPEG


def test_recycling_frees_what_was_consumed_or_expired_and_keeps_the_rest_in_order(services_dir):
    from kafka import KafkaConsumer, KafkaProducer

    from emolens.bus import make_bus

    work, port = services_dir / "recycle", dev.free_port()
    broker = dev.start_kafka(work, port)
    bootstrap = f"127.0.0.1:{port}"
    settings = Settings()
    try:
        bus = make_bus(f"kafka://{bootstrap}", settings)  # the topics, as the services create them
        for i in range(600):  # one camera: one partition, in order
            bus.publish(FRAMES_TOPIC, "cam-0", os.urandom(FRAME), [("seq", str(i).encode())])
        bus.publish(dead_letter_topic(FRAMES_TOPIC), "cam-0", b"bad", [("emolens-dlq-reason", b"undecodable")])
        bus.flush()
        detector = bus.consumer([FRAMES_TOPIC], Detector.GROUP)
        seen = 0
        while seen < 500:  # the detector analysed (and committed) the first 500
            seen += len(detector.poll(2.0, max_records=500 - seen))
            detector.commit()
        detector.close()
        bus.close()
        old = int((time.time() - 11 * 60) * 1000)  # older than the frames' 10 minutes: due to go
        producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=2_000_000)
        for _ in range(20):
            producer.send(FRAMES_TOPIC, os.urandom(FRAME), key=b"cam-0", timestamp_ms=old)
        producer.flush()
        producer.close()
        before = rss_mb(broker.pid)

        def restart() -> None:
            dev.stop(broker)
            broker.pid = dev.start_kafka(work, port).pid

        done = recycle(bootstrap, restart, settings)
        after = rss_mb(broker.pid)
        print(
            f"broker rss {before:.0f} MB -> {after:.0f} MB; kept {done.kept}, expired {done.expired}, "
            f"consumed {done.consumed}, {done.seconds:.1f} s"
        )
        assert (done.kept, done.expired, done.consumed) == (101, 20, 500)
        left_behind_mb = (done.consumed + done.expired) * FRAME / 2**20
        assert before - after >= 0.8 * left_behind_mb  # what it no longer holds is freed

        # the detector's group goes on where it was: the 100 frames it had not committed, in order
        bus = make_bus(f"kafka://{bootstrap}", settings)
        reader = bus.consumer([FRAMES_TOPIC], Detector.GROUP)
        got: list[tuple[str, int]] = []
        deadline = time.monotonic() + 60
        while len(got) < 100 and time.monotonic() < deadline:
            got += [(m.key, int(dict(m.headers)["seq"])) for m in reader.poll(1.0, max_records=200)]
        reader.close()
        bus.close()
        assert got == [("cam-0", i) for i in range(500, 600)]
        dlq = KafkaConsumer(
            dead_letter_topic(FRAMES_TOPIC),
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        assert [(r.value, dict(r.headers)["emolens-dlq-reason"]) for r in dlq] == [(b"bad", b"undecodable")]
        dlq.close()
    finally:
        dev.stop(broker)
