"""The SQL store on a real PostgreSQL and the live state on a real Redis."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from emolens.live import RedisLiveState, make_live_state
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.store import Camera, SqlStore
from emolens.store.sql import frames_seen_blocks
from tests.redelivery import accepted_long_ago, redeliver, seen_frames

T0 = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
# every table with rows per camera, cameras' dependants first
CAMERA_TABLES = (
    "bucket_tracks",
    "frames_seen_blocks",
    "minute_buckets",
    "rollup_hourly_tracks",
    "rollup_daily_tracks",
    "rollup_hourly",
    "rollup_daily",
    "visitor_timelines",
)


def face(label, smile, track, low=False):
    p = dict.fromkeys(EMOTIONS, 0.0)
    p[label] = 1.0
    return FaceResult((0, 0, 1, 1), [(0, 0)] * 6, 0.9, 0.7, low, smile, p, track_id=track)


def frames():
    return [
        FrameObservations(
            "pg-cam", i, T0 + timedelta(seconds=15 * i), [face("happy", 0.9, 1), face("sad", 0.1, 2 + i % 2)]
        )
        for i in range(8)
    ]


@pytest.fixture
def pg_store(postgres_url):
    store = SqlStore(postgres_url)
    yield store
    with store.engine.begin() as conn:
        # only this module's camera: other modules share the server
        for table in (*CAMERA_TABLES, "cameras"):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE camera_id = 'pg-cam'")
    store.close()


def test_postgres_store_matches_sqlite(pg_store, tmp_path):
    lite = SqlStore(f"sqlite:///{tmp_path / 'l.db'}")
    for s in (pg_store, lite):
        s.ensure_camera(Camera("pg-cam", "z", "s"))
        assert s.apply(frames()) == frames()

    def key(b):
        return (
            b.camera_id,
            b.minute,
            b.frames,
            b.faces,
            b.tracks,
            b.smiles,
            round(b.smile_sum, 6),
            b.counts["sad"],
        )

    assert [key(b) for b in pg_store.buckets(camera_id="pg-cam")] == [key(b) for b in lite.buckets()]
    assert [(b.frames, b.faces, b.tracks) for b in pg_store.buckets(camera_id="pg-cam")] == [(4, 8, 3), (4, 8, 3)]


def test_postgres_redelivery_is_idempotent(pg_store):
    assert pg_store.apply(frames()[:5]) == frames()[:5]
    assert pg_store.apply(frames()) == frames()[5:]  # 5 redelivered, 3 new
    assert pg_store.apply(frames()) == []
    assert sum(b.frames for b in pg_store.buckets(camera_id="pg-cam")) == 8


def test_redis_live_state(redis_url):
    live = make_live_state(redis_url)
    assert isinstance(live, RedisLiveState)
    live.add(frames()[:3])
    live.add([FrameObservations("pg-cam", 99, T0, [face("angry", 0.2, 7, low=True)])])
    c = live.get("pg-cam")
    assert (c.frames, c.faces, c.smiles) == (4, 6, 3)
    assert c.emotions["happy"] == 3 and c.emotions["sad"] == 3 and c.emotions["angry"] == 0
    assert "pg-cam" in live.cameras()
    assert live.get("unknown").frames == 0


def test_postgres_migrations_match_the_models(pg_store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from emolens.store.migrate import current_revision, head_revision
    from emolens.store.sql import metadata

    def not_a_partition(name, type_, parent_names):  # daily partitions are made by the store
        return not (type_ == "table" and re.fullmatch(r"(minute_buckets|bucket_tracks)_p\d{8}", name or ""))

    assert current_revision(pg_store.engine) == head_revision()
    with pg_store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": not_a_partition})
        assert compare_metadata(context, metadata) == []


def test_postgres_forgets_frames_older_than_the_window_in_batches(pg_store):
    later = [FrameObservations("pg-cam", s, T0, [face("happy", 0.9, 1)]) for s in (1024, 2048)]  # blocks 1, 2
    assert pg_store.apply(frames() + later) == frames() + later
    accepted_long_ago(pg_store, "pg-cam", [0, 1024])  # blocks 0 (frames 0-7) and 1 came in weeks ago
    assert pg_store.prune_seen(timedelta(days=7), batch=1) == 2  # three DELETEs: 1, 1, 0
    assert seen_frames(pg_store, "pg-cam") == [("pg-cam", 2048)]
    assert pg_store.apply(frames() + later) == [*frames(), later[0]]  # forgotten frames count again
    assert sum(b.frames for b in pg_store.buckets(camera_id="pg-cam")) == 19


def test_postgres_replays_and_duplicates_in_one_batch_count_once(pg_store):
    assert pg_store.apply(frames()[:3]) == frames()[:3]
    batch = [*frames()[:3], frames()[5], frames()[5], *frames()[:3]]
    assert pg_store.apply(batch) == [frames()[5]]
    assert seen_frames(pg_store, "pg-cam") == [("pg-cam", s) for s in (0, 1, 2, 5)]
    assert sum(b.frames for b in pg_store.buckets(camera_id="pg-cam")) == 4


def test_postgres_upgrade_from_0001_keeps_the_rows(postgres_url):
    from emolens.store.migrate import current_revision, upgrade

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    url = make_url(postgres_url).set(database="emolens_from_0001")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE emolens_from_0001")
    try:
        old = create_engine(url)
        upgrade(old, "0001")
        with old.begin() as conn:
            conn.exec_driver_sql("INSERT INTO frames_seen VALUES ('old-cam', 1), ('old-cam', 2)")
            conn.exec_driver_sql("INSERT INTO cameras VALUES ('old-cam', 'z', 's')")
            values = ", ".join(["1"] * 5 + ["0.5", "0.5"] + ["0"] * 14)
            for minute in ("2026-01-01 10:00", "2026-01-02 23:59"):
                conn.exec_driver_sql(f"INSERT INTO minute_buckets VALUES ('old-cam', '{minute}', {values})")
        old.dispose()
        before = datetime.now(UTC).replace(tzinfo=None)
        store = SqlStore(url.render_as_string(hide_password=False))
        assert current_revision(store.engine) == "0004"
        with store.engine.connect() as conn:
            stamps = conn.execute(select(frames_seen_blocks.c.seen_at)).scalars().all()
            # 0003 moved the minutes into one partition a day
            held = conn.exec_driver_sql(
                "SELECT tableoid::regclass::text, minute FROM minute_buckets ORDER BY minute"
            ).all()
        assert [r[0] for r in held] == ["minute_buckets_p20260101", "minute_buckets_p20260102"]
        assert seen_frames(store) == [("old-cam", 1), ("old-cam", 2)]  # 0004 made a bitmap of them
        assert len(stamps) == 1 and before <= stamps[0] <= datetime.now(UTC).replace(tzinfo=None)
        assert store.prune_seen(timedelta(days=7)) == 0 and store.prune_seen(timedelta(0)) == 1  # one block
        store.close()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE emolens_from_0001 WITH (FORCE)")
        admin.dispose()


def test_redelivery_leaves_postgres_and_redis_equal(postgres_url, redis_url):
    """The aggregator on the platform's stores: redelivered observations (the same batch twice,
    a partly overlapping one) count once in PostgreSQL's buckets and in Redis' live counters."""
    camera = "redeliver-cam"
    store, live = SqlStore(postgres_url), RedisLiveState(redis_url)
    live._r.delete(RedisLiveState.PREFIX + camera)
    try:
        stored, counted = redeliver(store, live, camera)
    finally:
        with store.engine.begin() as conn:
            for table in (*CAMERA_TABLES, "cameras"):
                conn.exec_driver_sql(f"DELETE FROM {table} WHERE camera_id = '{camera}'")
        live._r.delete(RedisLiveState.PREFIX + camera)
        store.close()
    assert stored == counted == (10, 20, 10)
