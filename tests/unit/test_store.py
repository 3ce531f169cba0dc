import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from emolens.errors import ConfigError, Unavailable
from emolens.live import RedisLiveState
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.store import Camera, SqlStore, seen
from emolens.store.sql import frames_seen_blocks
from emolens.tables import bucket_summary
from tests.redelivery import accepted_long_ago, seen_frames

T0 = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)


def face(label: str, smile: float, track: int, low: bool = False) -> FaceResult:
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs[label] = 1.0
    return FaceResult((0, 0, 10, 10), [(0, 0)] * 6, 0.9, 0.8, low, smile, probs, track_id=track)


def frames():
    return [
        FrameObservations("cam-1", 0, T0, [face("happy", 0.9, 1), face("neutral", 0.1, 2)]),
        FrameObservations(
            "cam-1", 1, T0 + timedelta(seconds=20), [face("happy", 0.8, 1), face("sad", 0.2, 3, low=True)]
        ),
        FrameObservations("cam-1", 2, T0 + timedelta(seconds=60), [face("surprise", 0.4, 1)]),
        FrameObservations("cam-2", 0, T0, [face("angry", 0.0, 1)]),
    ]


@pytest.fixture
def store(tmp_path):
    s = SqlStore(f"sqlite:///{tmp_path / 'e.db'}")
    s.ensure_camera(Camera("cam-1", zone="entrance", site="mall-a"))
    s.ensure_camera(Camera("cam-2", zone="food-court", site="mall-a"))
    yield s
    s.close()


def test_per_minute_buckets(store):
    assert store.apply(frames()) == frames()  # all new, in delivery order
    b = {(x.camera_id, x.minute.minute): x for x in store.buckets()}
    first = b[("cam-1", 0)]
    assert (first.frames, first.faces, first.low_quality, first.tracks, first.smiles) == (2, 3, 1, 2, 2)
    assert first.counts["happy"] == 2 and first.counts["neutral"] == 1 and first.counts["sad"] == 0
    assert first.smile_sum == pytest.approx(1.8)
    assert first.prob_sums["happy"] == pytest.approx(2.0)
    assert first.mean_quality == pytest.approx(0.8)
    second = b[("cam-1", 1)]
    assert (second.frames, second.faces, second.tracks) == (1, 1, 1)  # track 1 counts again in a new minute


def test_redelivered_frames_count_once(store):
    store.apply(frames())
    before = [(b.faces, b.tracks, b.smile_sum) for b in store.buckets()]
    assert store.apply(frames()) == []
    assert store.apply(frames()[:2] + frames()[:2]) == []
    assert [(b.faces, b.tracks, b.smile_sum) for b in store.buckets()] == before


def test_a_redelivery_within_the_replay_window_is_skipped(store):
    before = datetime.now(UTC).replace(tzinfo=None)
    store.apply(frames())
    after = datetime.now(UTC).replace(tzinfo=None)
    with store.engine.connect() as conn:
        stamps = conn.execute(select(frames_seen_blocks.c.seen_at)).scalars().all()
    assert len(stamps) == 2 and all(before <= t <= after for t in stamps)  # a block per camera; naive UTC
    assert seen_frames(store) == [("cam-1", 0), ("cam-1", 1), ("cam-1", 2), ("cam-2", 0)]
    counts = [(b.frames, b.faces, b.tracks) for b in store.buckets()]
    assert store.prune_seen(timedelta(days=7)) == 0
    assert store.apply(frames()) == []
    assert [(b.frames, b.faces, b.tracks) for b in store.buckets()] == counts


def test_after_the_replay_window_a_redelivered_frame_counts_again(store):
    """The trade-off of bounded bookkeeping: a frame older than the window is forgotten, so its
    replay is counted a second time. Its tracks are not (``bucket_tracks`` is kept). The store
    forgets whole blocks of 1024 frames, here cam-1's frames 0-2."""
    store.apply(frames())
    accepted_long_ago(store, "cam-1", [0])
    assert store.prune_seen(timedelta(days=7)) == 1  # one block
    assert seen_frames(store) == [("cam-2", 0)]
    assert store.apply(frames()) == frames()[:3]  # forgotten: new again; cam-2's frame still remembered
    first, second = store.buckets(camera_id="cam-1")
    assert (first.frames, first.faces, first.low_quality, first.tracks) == (4, 6, 2, 2)  # was (2, 3, 1, 2)
    assert (second.frames, second.faces, second.tracks) == (2, 2, 1)  # was (1, 1, 1)


def test_pruning_keeps_the_tracks_of_a_backfilled_minute(store):
    """Why ``bucket_tracks`` is not pruned by minute: a recording ingested with ``--start`` a
    month back fills minutes far older than the window for the first time, over several
    batches, and a prune may fall between two of them. Forgetting the minute's tracks there
    would count visitor 1 twice (2 tracks), which also lowers the k-anonymity bar."""
    month_ago = datetime.now(UTC) - timedelta(days=30)
    old = month_ago.replace(second=0, microsecond=0)
    store.apply([FrameObservations("cam-1", 100, old, [face("happy", 0.9, 1)])])
    assert store.prune_seen(timedelta(days=7)) == 0  # accepted just now: inside the window
    store.apply([FrameObservations("cam-1", 101, old + timedelta(seconds=30), [face("sad", 0.1, 1)])])
    (bucket,) = store.buckets(camera_id="cam-1")
    assert (bucket.minute, bucket.frames, bucket.faces, bucket.tracks) == (old.replace(tzinfo=None), 2, 2, 1)


def test_prune_deletes_in_batches_and_counts_every_block(store):
    store.apply([*frames(), FrameObservations("cam-1", 5000, T0, [])])  # cam-1 blocks 0 and 4, cam-2 block 0
    statements: list[str] = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731 (conn, cursor, statement, ...)
    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        assert store.prune_seen(timedelta(0), batch=2) == 3  # every block is older than now
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    assert sum(s.lstrip().upper().startswith("DELETE") for s in statements) == 2  # 2 blocks, then 1
    assert seen_frames(store) == [] and store.prune_seen(timedelta(0)) == 0
    assert sum(b.frames for b in store.buckets()) == 5  # the buckets are the data: never pruned


def test_replays_and_duplicates_are_dropped_and_a_new_block_is_kept(store):
    """Exact at the bit: an old batch replayed, a frame twice in one batch, the neighbours of
    seen frames and frames of a new block or another source (same position) are each told apart."""
    src = 7 << seen.POSITION_BITS
    old = [FrameObservations("cam-1", src + i, T0, [face("happy", 0.9, 1)]) for i in (0, 1, 1023)]
    assert store.apply(old) == old
    twice = FrameObservations("cam-1", src + 2, T0, [face("sad", 0.1, 2)])
    fresh = FrameObservations("cam-1", src + 1024, T0, [face("sad", 0.1, 2)])  # next block
    other_source = FrameObservations("cam-1", 8 << seen.POSITION_BITS | 1, T0, [face("sad", 0.1, 2)])
    other_camera = FrameObservations("cam-2", src + 1, T0, [face("sad", 0.1, 2)])
    batch = [*old, twice, twice, fresh, old[1], other_source, other_camera]
    assert store.apply(batch) == [twice, fresh, other_source, other_camera]
    assert store.apply(batch + old) == []
    assert seen_frames(store) == sorted(
        [("cam-1", f.frame_seq) for f in (*old, twice, fresh, other_source)] + [("cam-2", src + 1)]
    )
    assert sum(b.frames for b in store.buckets()) == 7


def test_apply_returns_each_new_frame_once(store):
    first, second, third, other = frames()
    assert store.apply([second, first]) == [second, first]
    assert store.apply([third, first, third, other, second]) == [third, other]


def test_batches_in_any_split_give_the_same_buckets(tmp_path, store):
    store.apply(frames())
    other = SqlStore(f"sqlite:///{tmp_path / 'other.db'}")
    for fr in reversed(frames()):
        other.apply([fr])
    key = lambda b: (b.camera_id, b.minute, b.frames, b.faces, b.tracks, round(b.smile_sum, 6))  # noqa: E731
    assert sorted(map(key, other.buckets())) == sorted(map(key, store.buckets()))


def test_filters_by_camera_zone_site_and_time(store):
    store.apply(frames())
    assert {b.camera_id for b in store.buckets(zone="food-court")} == {"cam-2"}
    assert {b.camera_id for b in store.buckets(site="mall-a")} == {"cam-1", "cam-2"}
    assert len(store.buckets(camera_id="cam-1")) == 2
    since = datetime(2026, 1, 1, 12, 1)
    assert [b.minute for b in store.buckets(camera_id="cam-1", since=since)] == [since]
    assert [b.minute for b in store.buckets(camera_id="cam-1", until=since)] == [datetime(2026, 1, 1, 12, 0)]


def test_k_anonymity_suppresses_small_buckets(store):
    store.apply(frames())
    b = store.buckets(camera_id="cam-1")[0]
    assert bucket_summary(b, k=2)["suppressed"] is False
    hidden = bucket_summary(b, k=5)
    assert hidden["suppressed"] is True and "faces" not in hidden


def test_no_face_pixels_in_the_schema(store):
    """The one binary column is the redelivery bitmap: 128 bytes, one bit per frame."""
    from sqlalchemy import inspect

    binary = {
        (t, c["name"])
        for t in inspect(store.engine).get_table_names()
        for c in inspect(store.engine).get_columns(t)
        if any(k in str(c["type"]) for k in ("BLOB", "BYTEA", "LargeBinary", "BINARY"))
    }
    assert binary == {("frames_seen_blocks", "bits")}
    store.apply(frames())
    with store.engine.connect() as conn:
        sizes = conn.execute(select(func.length(frames_seen_blocks.c.bits))).scalars().all()
    assert sizes == [seen.BLOCK_BYTES] * 2


def test_bad_url():
    with pytest.raises(ConfigError):
        SqlStore("mysql://x")


def test_unreachable_database_and_redis_are_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    with pytest.raises(Unavailable) as err:
        SqlStore(f"postgresql+psycopg://emolens@127.0.0.1:{port}/emolens")
    with pytest.raises(ConnectionError):  # Unavailable's builtin base
        RedisLiveState(f"redis://127.0.0.1:{port}/0").get("cam-1")
    assert f":{port}" not in str(err.value) and "SELECT" not in str(err.value)
