"""No message stops a stage, on a real PostgreSQL (docs/reliability.md, "A bad timestamp stops
every camera"): a frame dated year 1 or 9999 among good ones, and messages the database itself
refuses, go to the dead-letter topic with their reason while the rest of the batch is stored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from emolens.bus import OBSERVATIONS_TOPIC, MemoryBus, dead_letter_topic
from emolens.live import MemoryLiveState
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.stages import DLQ_REASON, DLQ_STAGE, Aggregator
from emolens.store import Camera, SqlStore
from emolens.store.partitions import list_partitions
from emolens.v1 import observations_pb2
from emolens.wire import observations_to_pb

T0 = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)


def face(track: int, low: bool = False) -> FaceResult:
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs["happy"] = 1.0
    return FaceResult((0, 0, 9, 9), [(0, 0)] * 6, 0.9, 0.8, low, 0.7, probs, track_id=track)


def observation(camera: str, seq: int, when: datetime, faces: list[FaceResult] | None = None) -> bytes:
    obs = FrameObservations(camera, seq, when, faces if faces is not None else [face(seq % 3)])
    return observations_to_pb(obs, "zone", "site").SerializeToString()


@pytest.fixture
def pg(own_postgres_url) -> Iterator[SqlStore]:
    store = SqlStore(own_postgres_url)
    for i in range(4):  # the cameras the messages below come from, declared as their ingests would
        store.ensure_camera(Camera(f"cam-{i}", "zone", "site"))
    yield store
    store.close()


def stored(store: SqlStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in store.buckets():
        out[b.camera_id] = out.get(b.camera_id, 0) + b.frames
    return out


def dead_letters(bus: MemoryBus) -> list[tuple[bytes, dict[str, str]]]:
    consumer = bus.consumer([dead_letter_topic(OBSERVATIONS_TOPIC)], f"inspect-{uuid.uuid4().hex}")
    return [(m.value, {k: v.decode() for k, v in m.headers}) for m in consumer.poll(0.0, 10_000)]


def test_partitions_for_year_1_and_9999_hold_their_own_days(pg):
    """The bound literal: year 1's partition was made FROM ('1-01-01'), which PostgreSQL reads
    as 2001, so a year-1 row found no partition (IntegrityError); 9999-12-31 overflowed
    Python's dates making the next day's. The store itself now holds both (the aggregator
    refuses them before: see the next test)."""
    year_1 = datetime(1, 1, 1, 0, 0, 30, tzinfo=UTC)
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert len(pg.apply([FrameObservations("cam-edge", 1, year_1, [face(1)])])) == 1  # was IntegrityError
    assert len(pg.apply([FrameObservations("cam-edge", 2, last, [face(2)])])) == 1  # was OverflowError
    assert [b.minute for b in pg.buckets()] == [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59)]
    with pg.engine.connect() as conn:
        names = {p.name for p in list_partitions(conn)}
        bound = conn.execute(
            text("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'minute_buckets_p00010101'")
        ).scalar_one()
    assert {"minute_buckets_p00010101", "minute_buckets_p99991231"} <= names
    assert "0001-01-01" in bound and "2001" not in bound, bound


def test_a_frame_dated_year_1_or_9999_is_dead_lettered_and_the_rest_of_its_batch_stored(pg):
    """Before: the aggregator's whole batch raised (IntegrityError "no partition" for year 1,
    OverflowError for 9999-12-31) and did so again on every restart, so no camera was stored."""
    bus = MemoryBus()
    aggregator = Aggregator(bus, pg, MemoryLiveState())
    good = [observation(f"cam-{i % 3}", i, T0 + timedelta(seconds=10 * i)) for i in range(12)]
    bad = [
        observation("cam-0", 100, datetime(1, 1, 1, tzinfo=UTC)),
        observation("cam-1", 101, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ]
    for payload in good[:5] + bad[:1] + good[5:9] + bad[1:] + good[9:]:
        bus.publish(OBSERVATIONS_TOPIC, "k", payload)
    assert aggregator.step(timeout_s=0.0) == 14
    assert stored(pg) == {"cam-0": 4, "cam-1": 4, "cam-2": 4}
    letters = dead_letters(bus)
    assert [value for value, _ in letters] == bad  # as they came, in order
    for _, headers in letters:
        assert headers[DLQ_STAGE] == "aggregator"
        assert "captured_at" in headers[DLQ_REASON]
    assert "before 2000-01-01" in letters[0][1][DLQ_REASON]
    assert "ahead of the clock" in letters[1][1][DLQ_REASON]
    # the stage goes on, and its offsets were committed: nothing comes back
    bus.publish(OBSERVATIONS_TOPIC, "k", observation("cam-2", 200, T0 + timedelta(minutes=5)))
    assert aggregator.step(timeout_s=0.0) == 1
    assert stored(pg)["cam-2"] == 5


def test_what_postgresql_itself_refuses_is_isolated_by_splitting_the_batch(pg):
    """Messages that pass every check here but that the database refuses (constraints an
    operator added: a camera name, too many low-quality faces in one minute) are found by
    splitting the batch and dead-lettered with the database's reason; every other message of
    the batch is stored, each once."""
    with pg.engine.begin() as conn:
        conn.execute(text("ALTER TABLE cameras ADD CONSTRAINT no_blocked CHECK (camera_id NOT LIKE 'blocked%')"))
        conn.execute(text("ALTER TABLE minute_buckets ADD CONSTRAINT few_low CHECK (low_quality < 20)"))
    bus = MemoryBus()
    aggregator = Aggregator(bus, pg, MemoryLiveState())
    crowd = [face(t, low=True) for t in range(25)]  # one frame that breaks few_low on its own
    payloads = [observation(f"cam-{i % 4}", i, T0 + timedelta(seconds=i)) for i in range(40)]
    payloads.insert(7, observation("cam-1", 500, T0 + timedelta(hours=1), crowd))
    payloads.insert(20, observation("blocked-cam", 1, T0))
    payloads.insert(30, observation("blocked-cam", 2, T0))
    for payload in payloads:
        bus.publish(OBSERVATIONS_TOPIC, "k", payload)
    assert aggregator.step(timeout_s=0.0) == 43
    assert stored(pg) == {f"cam-{i}": 10 for i in range(4)}
    letters = dead_letters(bus)
    reasons = {observations_pb2.FrameObservations.FromString(v).frame_seq: h[DLQ_REASON] for v, h in letters}
    assert len(letters) == 3 and set(reasons) == {500, 1, 2}
    assert "few_low" in reasons[500]
    # a camera the database refuses to register cannot be declared: its messages are refused as undeclared
    assert "is not declared" in reasons[1] and "is not declared" in reasons[2]
    assert aggregator.step(timeout_s=0.0) == 0  # committed: nothing redelivered
