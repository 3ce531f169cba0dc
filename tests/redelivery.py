"""One redelivery scenario for the aggregator, run on any store and live state (SQLite and
memory in the unit tests, PostgreSQL and Redis in the integration tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from emolens.bus import OBSERVATIONS_TOPIC, MemoryBus
from emolens.live import LiveState
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.stages import Aggregator, drain
from emolens.store import Camera, SqlStore, Store, seen
from emolens.store.sql import frames_seen_blocks
from emolens.wire import observations_to_pb

T0 = datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC)


def _face(label: str, smile: float, track: int, low: bool = False) -> FaceResult:
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs[label] = 1.0
    return FaceResult((0, 0, 9, 9), [(0, 0)] * 6, 0.9, 0.8, low, smile, probs, track_id=track)


def frame(camera_id: str, seq: int) -> FrameObservations:
    """Frame ``seq``: two usable faces (one smiling) and, on odd frames, a low-quality one."""
    faces = [_face("happy", 0.9, 1), _face("sad", 0.1, 2 + seq % 3)]
    if seq % 2:
        faces.append(_face("angry", 0.8, 9, low=True))
    return FrameObservations(camera_id, seq, T0 + timedelta(seconds=7 * seq), faces)


def redeliver(store: Store, live: LiveState, camera_id: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Frames 0-5 delivered, then delivered again in one batch together with 3-9 (a copy of the
    first batch and a partly overlapping one, as after a crash before the offset commit), then
    0-9 once more. Returns (frames, faces, smiles) from the store's buckets and the live counters;
    10 distinct frames were seen, so both should be (10, 20, 10)."""
    bus = MemoryBus()
    store.ensure_camera(Camera(camera_id, "zone", "site"))  # declared, as its ingest would
    aggregator = Aggregator(bus, store, live)

    def deliver(seqs: list[int]) -> None:
        for seq in seqs:
            payload = observations_to_pb(frame(camera_id, seq), "zone", "site").SerializeToString()
            bus.publish(OBSERVATIONS_TOPIC, camera_id, payload)
        drain(aggregator, idle_s=0.2, timeout_s=0.05)

    deliver(list(range(6)))
    deliver(list(range(6)) + list(range(3, 10)))
    deliver(list(range(10)))
    buckets = store.buckets(camera_id=camera_id)
    counters = live.get(camera_id)
    stored = (sum(b.frames for b in buckets), sum(b.faces for b in buckets), sum(b.smiles for b in buckets))
    return stored, (counters.frames, counters.faces, counters.smiles)


def accepted_long_ago(store: SqlStore, camera_id: str, seqs: list[int], when: datetime = datetime(2025, 12, 1)) -> None:
    """Backdate when the store last accepted a frame in the blocks (1024 frames each) that hold
    these frames, as if they had come in weeks ago: every frame of those blocks is then older
    than the window."""
    t = frames_seen_blocks
    with store.engine.begin() as conn:
        for source_id, block in {seen.block_of(s) for s in seqs}:
            conn.execute(
                update(t)
                .where(t.c.camera_id == camera_id, t.c.source_id == source_id, t.c.block == block)
                .values(seen_at=when)
            )


def seen_frames(store: SqlStore, camera_id: str | None = None) -> list[tuple[str, int]]:
    """Every (camera_id, frame_seq) the store remembers (of one camera: tests may share a
    database), read back from its bitmaps."""
    t = frames_seen_blocks
    query = select(t.c.camera_id, t.c.source_id, t.c.block, t.c.bits)
    if camera_id is not None:
        query = query.where(t.c.camera_id == camera_id)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return sorted(
        (c, seen.frame_seq_of(src, b, bit)) for c, src, b, bits in rows for bit in seen.positions(bytes(bits))
    )
