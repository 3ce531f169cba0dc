"""The camera registry on real PostgreSQL: a camera is registered once, as first declared (or
filled in when it had neither zone nor site); later declarations do not move it, configuration
(ensure_camera) does."""

from __future__ import annotations

import pytest

from emolens.store import Camera, SqlStore
from tests.redelivery import frame

pytestmark = [pytest.mark.integration, pytest.mark.auth]


def test_a_registered_camera_is_moved_by_configuration_only(postgres_url):
    s = SqlStore(postgres_url)
    assert s.register_camera(Camera("reg-1", "e", "mall-a")) == Camera("reg-1", "e", "mall-a")
    assert s.register_camera(Camera("reg-1", "e", "mall-b")) == Camera("reg-1", "e", "mall-a")
    s.apply([frame("reg-2", 0)])  # a placeholder with neither zone nor site
    assert s.register_camera(Camera("reg-2", "z", "s")) == Camera("reg-2", "z", "s")
    s.ensure_camera(Camera("reg-1", "e", "mall-b"))
    assert s.register_camera(Camera("reg-1", "x", "y")) == Camera("reg-1", "e", "mall-b")
    s.close()


def test_frames_of_a_camera_nobody_declared_are_dead_lettered_with_the_reason(own_postgres_url):
    """Cameras are declared, not discovered (docs/architecture.md): before, a camera's first
    message registered it, so any producer on the bus could make up a camera and a scope."""
    from emolens.bus import OBSERVATIONS_TOPIC, MemoryBus, dead_letter_topic
    from emolens.live import MemoryLiveState
    from emolens.settings import Settings
    from emolens.stages import DLQ_REASON, Aggregator, Ingest, drain
    from emolens.wire import observations_to_pb

    store = SqlStore(own_postgres_url)
    bus = MemoryBus()
    aggregator = Aggregator(bus, store, MemoryLiveState())
    for seq in range(3):
        payload = observations_to_pb(frame("made-up-cam", seq), "vault", "hq").SerializeToString()
        bus.publish(OBSERVATIONS_TOPIC, "made-up-cam", payload)
    drain(aggregator, idle_s=0.2, timeout_s=0.05)
    assert store.buckets(camera_id="made-up-cam") == [] and store.camera("made-up-cam") is None
    dead = bus.consumer([dead_letter_topic(OBSERVATIONS_TOPIC)], "inspect").poll(0.1, 10)
    assert [m.key for m in dead] == ["made-up-cam"] * 3
    assert all(dict(m.headers)[DLQ_REASON].startswith(b"camera 'made-up-cam' is not declared") for m in dead)

    # its ingest declares it (`emolens ingest --db`): from then on its frames are stored
    Ingest(MemoryBus(), Camera("door-1", "lobby", "hq"), Settings()).declare(store)
    for seq in range(2):
        bus.publish(
            OBSERVATIONS_TOPIC, "door-1", observations_to_pb(frame("door-1", seq), "lobby", "hq").SerializeToString()
        )
    drain(aggregator, idle_s=0.2, timeout_s=0.05)
    assert sum(b.frames for b in store.buckets(camera_id="door-1")) == 2
    assert store.camera("door-1") == Camera("door-1", "lobby", "hq")
    store.close()


def test_processes_opening_a_new_database_at_once_all_find_the_schema(own_postgres_url):
    """An ingest declaring its camera and an aggregator starting on a new database both make
    the schema when it is missing; before, the second failed (UniqueViolation: 'the PostgreSQL
    database is not usable') and the aggregator exited."""
    import threading

    from emolens.store.migrate import current_revision, head_revision

    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        try:
            start.wait()
            SqlStore(own_postgres_url).close()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    store = SqlStore(own_postgres_url, create=False)
    assert current_revision(store.engine) == head_revision()
    store.close()
