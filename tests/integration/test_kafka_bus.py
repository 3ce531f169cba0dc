"""The Kafka adapter against a real Kafka-protocol broker (Tansu): keys, order, groups, commits."""

import uuid

from emolens.bus import make_bus
from emolens.bus.kafka import KafkaBus
from tests.integration.conftest import topic_configs


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


def test_topics_are_created_with_their_retention_partitions_and_replication(kafka_url):
    """Configs and partitions read back from the broker. What this broker (Tansu, memory
    storage) cannot show, so it is not tested here: that messages are deleted after
    ``retention.ms`` (tried by hand: with a 1 s retention it still served them 4 s later; Kafka
    deletes whole segments on its own schedule), and replication (it accepts any factor on its
    one node and lists that node as every replica), so ``replication`` is checked as sent."""
    from kafka.admin import KafkaAdminClient

    bootstrap = kafka_url.removeprefix("kafka://")
    short, plain = f"short-{uuid.uuid4().hex[:8]}", f"plain-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(bootstrap, partitions=3, replication=1, retention_ms={short: 60_000})
    bus.ensure_topics([short, plain])
    configs = topic_configs(bootstrap, [short, plain])
    assert configs[short]["retention.ms"] == configs[short]["segment.ms"] == "60000"
    assert configs[plain].get("retention.ms") != "60000"  # the control: not an echo of ours
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (described,) = admin.describe_topics([short])
    finally:
        admin.close()
    assert len(described["partitions"]) == 3
    bus.ensure_topics([short])  # existing topics are left as they are
    bus.close()
    replicated = KafkaBus.__new__(KafkaBus)  # no producer: only the topic it would create
    replicated.partitions, replicated.replication, replicated.retention_ms = 4, 3, {short: 1}
    topic = replicated.new_topic(short)
    assert (topic.num_partitions, topic.replication_factor) == (4, 3)
    assert topic.topic_configs == {"retention.ms": "1", "segment.ms": "1"}


def test_the_flow_topics_carry_the_retention_of_the_settings(kafka_url):
    """make_bus creates the frames, observations and both dead-letter topics with the settings'
    retention: frames, which hold face pixels, are kept 10 minutes by default."""
    from emolens.bus import topic_retention
    from emolens.settings import Settings

    bus = make_bus(kafka_url)  # the default settings, as every service on this broker uses
    bus.close()
    expected = topic_retention(Settings())
    configs = topic_configs(kafka_url.removeprefix("kafka://"), list(expected))
    assert {t: int(c["retention.ms"]) for t, c in configs.items()} == expected
    assert {t: int(c["segment.ms"]) for t, c in configs.items()} == expected  # Kafka deletes whole segments
    assert expected["emolens.frames"] == 600_000


def test_consumer_lag_counts_what_this_member_has_not_read(kafka_url):
    bus = make_bus(kafka_url)
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    for i in range(10):
        bus.publish(topic, "cam-1", f"m{i}".encode())
    bus.flush()
    consumer = bus.consumer([topic], f"g-{uuid.uuid4().hex[:8]}")
    assert consumer.lag() == 0  # nothing assigned yet
    got = []
    for _ in range(40):
        got += consumer.poll(0.5, 3)
        if got:
            break
    assert consumer.lag() == 10 - len(got) > 0
    drain(consumer, 10 - len(got))
    assert consumer.lag() == 0
    consumer.close()
    bus.close()


def test_headers_travel_with_the_message(kafka_url):
    """A dead letter's reason rides in record headers beside the message as it came."""
    bus = make_bus(kafka_url)
    topic = f"t-{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    bus.publish(topic, "cam-1", b"as it came", [("emolens-dlq-reason", b"captured_at 0001-01-01 ...")])
    bus.publish(topic, "cam-1", b"plain")
    bus.flush()
    consumer = bus.consumer([topic], f"g-{uuid.uuid4().hex[:8]}")
    got = drain(consumer, 2)
    assert [(m.value, m.headers) for m in got] == [
        (b"as it came", (("emolens-dlq-reason", b"captured_at 0001-01-01 ..."),)),
        (b"plain", ()),
    ]
    consumer.close()
    bus.close()
