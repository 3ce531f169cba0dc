"""What the services tell an operator without a debugger: consumer lag (the memory bus here; the
Kafka adapter in tests/integration), log levels and formats, and the topic settings."""

from __future__ import annotations

import io
import json
import logging

import pytest

from emolens import cli, logs, metrics
from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, MemoryBus, dead_letter_topic, topic_retention
from emolens.settings import Settings
from emolens.stages import Aggregator
from emolens.store import SqlStore
from emolens.wire import observations_to_pb
from tests.redelivery import frame


def test_memory_consumer_lag_is_what_poll_has_not_returned_yet():
    bus = MemoryBus()
    consumer = bus.consumer(["a", "b"], "g")
    assert consumer.lag() == 0
    for i in range(5):
        bus.publish("a", "k", b"%d" % i)
    bus.publish("b", "k", b"x")
    assert consumer.lag() == 6
    assert len(consumer.poll(0.1, 4)) == 4
    assert consumer.lag() == 2
    consumer.poll(0.1, 10)
    assert consumer.lag() == 0
    assert bus.consumer(["a"], "late").lag() == 5  # a new group has the whole topic to read


def test_report_lag_asks_at_most_once_a_second_and_keeps_the_last_known_value(monkeypatch):
    asked: list[int | None] = []

    def lag(value):
        def read():
            asked.append(value)
            return value

        return read

    gauge = metrics.CONSUMER_LAG.labels("test-stage")
    metrics.report_lag("test-stage", lag(12))
    metrics.report_lag("test-stage", lag(99))  # within the second: not asked
    assert asked == [12] and gauge._value.get() == 12
    monkeypatch.setattr(metrics, "LAG_EVERY_S", 0.0)
    metrics.report_lag("test-stage", lag(None))  # unknown now: the last value stays
    assert asked == [12, None] and gauge._value.get() == 12
    metrics.report_lag("test-stage", lag(3))
    assert gauge._value.get() == 3


def test_the_aggregator_sets_its_lag_gauge_after_each_poll(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "LAG_EVERY_S", 0.0)
    bus = MemoryBus()
    for seq in range(10):
        obs = observations_to_pb(frame("cam-lag", seq), "z", "s")
        bus.publish(OBSERVATIONS_TOPIC, "cam-lag", obs.SerializeToString())
    store = SqlStore(f"sqlite:///{tmp_path / 'lag.db'}")
    aggregator = Aggregator(bus, store, None)
    gauge = metrics.CONSUMER_LAG.labels("aggregator")
    assert aggregator.step(timeout_s=0.05, max_records=4) == 4
    assert gauge._value.get() == 6
    assert aggregator.step(timeout_s=0.05, max_records=100) == 6
    assert gauge._value.get() == 0
    store.close()


def test_every_topic_has_a_retention_and_frames_the_shortest():
    retention = topic_retention(Settings())
    assert set(retention) == {
        FRAMES_TOPIC,
        OBSERVATIONS_TOPIC,
        "emolens.frames.dlq",
        "emolens.observations.dlq",
    }
    assert retention[FRAMES_TOPIC] == 10 * 60_000 == min(retention.values())
    assert retention[OBSERVATIONS_TOPIC] == 7 * 24 * 3600_000
    assert retention["emolens.frames.dlq"] == 14 * 24 * 3600_000
    # the stages dead-letter to the topics the bus creates (one helper names them)
    for topic in (FRAMES_TOPIC, OBSERVATIONS_TOPIC):
        assert dead_letter_topic(topic) in retention
    s = Settings.from_env(
        {"EMOLENS_FRAMES_RETENTION_MS": "60000", "EMOLENS_KAFKA_REPLICATION": "3", "EMOLENS_KAFKA_PARTITIONS": "12"}
    )
    assert (topic_retention(s)[FRAMES_TOPIC], s.kafka_replication, s.kafka_partitions) == (60_000, 3, 12)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frames_retention_ms", 0),
        ("kafka_replication", 0),
        ("kafka_partitions", -1),
        ("log_level", "LOUD"),
        ("log_format", "xml"),
    ],
)
def test_log_and_topic_settings_refuse_values_outside_their_choices(field, value):
    with pytest.raises(ValueError, match=f"EMOLENS_{field.upper()}"):
        Settings(**{field: value})


@pytest.mark.parametrize(
    ("argv", "env", "level"),
    [
        (["detect"], {}, "INFO"),
        (["aggregate"], {}, "INFO"),
        (["gateway"], {}, "INFO"),
        (["ingest", "--source", "x", "--camera-id", "c"], {}, "INFO"),
        (["run", "--source", "x", "--camera-id", "c"], {}, "WARNING"),
        (["stats"], {}, "WARNING"),
        (["-v", "stats"], {}, "INFO"),
        (["detect"], {"EMOLENS_LOG_LEVEL": "warning"}, "WARNING"),
        (["-v", "detect"], {"EMOLENS_LOG_LEVEL": "ERROR"}, "INFO"),  # the flag wins
        (["stats"], {"EMOLENS_LOG_LEVEL": "DEBUG"}, "DEBUG"),
    ],
)
def test_services_log_at_info_and_tools_at_warning_unless_told(argv, env, level, monkeypatch):
    for name in ("EMOLENS_LOG_LEVEL", "EMOLENS_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(cli, "configure_logging", lambda lvl, fmt: seen.append((lvl, fmt)))
    args, _ = cli.build_parser().parse_known_args(argv)
    cli._configure_logging(args)
    assert seen == [(level, "text")]


def _emit(fmt: str, level: str) -> list[str]:
    """Lines a configured root logger writes, on a private logging state (pytest keeps its own)."""
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(level, fmt, out, force=True)
        logs.event(logging.getLogger("emolens.stages").info, "ready", stage="detector", ready=True, reason="x y")
        logs.event(logging.getLogger("emolens.stages").debug, "noise")
        logging.getLogger("kafka.conn").info("connecting to 127.0.0.1:9092")  # not ours: hidden
        logging.getLogger("kafka.conn").warning("event=broker_gone")
    finally:
        root.handlers[:], root.level = saved
    return out.getvalue().splitlines()


def test_text_logs_are_one_key_value_line_per_event():
    lines = _emit("text", "INFO")
    assert len(lines) == 2
    assert lines[0].startswith("ts=") and "level=INFO logger=emolens.stages event=ready stage=detector" in lines[0]
    assert "event=broker_gone" in lines[1]


def test_text_lines_quote_only_what_needs_it():
    (line, _) = _emit("text", "INFO")
    assert line.endswith("event=ready stage=detector ready=True reason='x y'"), line


def test_json_logs_carry_the_fields_as_data():
    """The fields come from the record as the code passed them (a bool stays a bool), not parsed
    back out of the text; another library's line that merely looks like pairs gets no fields."""
    first, second = (json.loads(line) for line in _emit("json", "INFO"))
    assert (first["event"], first["stage"], first["ready"], first["reason"]) == ("ready", "detector", True, "x y")
    assert first["level"] == "INFO" and first["logger"] == "emolens.stages"
    assert first["message"] == "event=ready stage=detector ready=True reason='x y'"
    assert second["level"] == "WARNING" and second["message"] == "event=broker_gone" and "event" not in second


def test_debug_shows_other_libraries_too():
    assert len(_emit("text", "DEBUG")) == 4


def test_events_are_logged_through_logs_event():
    """Fields travel as data only if every event goes through logs.event: no module writes an
    ``event=`` message by hand (failpoints, beside logs in the layers, builds the same record)."""
    from pathlib import Path

    package = Path(logs.__file__).parent
    tools = package.parent / "tools" / "emolens_tools"
    by_hand = [
        f"{p.relative_to(package.parent)}:{i}"
        for p in sorted([*package.rglob("*.py"), *tools.rglob("*.py")])
        if p.name not in ("logs.py", "failpoints.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if '"event=' in line or "'event=" in line
    ]
    assert by_hand == []
