"""The Kafka adapter against a real Kafka-protocol broker (Tansu): keys, order, groups, commits."""

import uuid

from emolens.bus import make_bus
from emolens.bus.kafka import KafkaBus


def drain(consumer, want, rounds=40):
    got = []
    for _ in range(rounds):
        got += consumer.poll(0.5, 100)
        if len(got) >= want:
            break
    return got


def test_publish_consume_commit_and_redelivery(kafka_url):
    bus = make_bus(kafka_url)
    assert isinstance(bus, KafkaBus)
    topic = f"t-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    for i in range(10):
        bus.publish(topic, "cam-1", f"a{i}".encode())
    bus.flush()
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = bus.consumer([topic], group)
    got = drain(first, 10)
    assert [m.value for m in got] == [f"a{i}".encode() for i in range(10)]  # one key: one partition, in order
    assert {m.key for m in got} == {"cam-1"}
    first.commit()
    first.close()
    for i in range(3):
        bus.publish(topic, "cam-1", f"b{i}".encode())
    bus.flush()
    second = bus.consumer([topic], group)
    got = drain(second, 3)
    assert [m.value for m in got] == [b"b0", b"b1", b"b2"]  # committed offsets are honoured
    second.close()  # without commit
    third = bus.consumer([topic], group)
    assert [m.value for m in drain(third, 3)] == [b"b0", b"b1", b"b2"]  # uncommitted: delivered again
    third.close()
    bus.close()
