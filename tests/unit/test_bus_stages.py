"""The memory bus and the three stages wired over it (the embedded shape's parts)."""

from datetime import UTC, datetime

import pytest

from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, MemoryBus, make_bus
from emolens.errors import ConfigError
from emolens.live import MemoryLiveState
from emolens.settings import Settings
from emolens.stages import Aggregator, Detector, Ingest, drain
from emolens.store import Camera, SqlStore
from emolens.v1 import frames_pb2, observations_pb2
from tests.conftest import MODEL_REPO
from tests.redelivery import redeliver


def test_memory_bus_groups_commit_and_redeliver():
    bus = MemoryBus()
    for i in range(5):
        bus.publish("t", "k", bytes([i]))
    c = bus.consumer(["t"], "g")
    assert [m.value for m in c.poll(0.1, max_records=3)] == [b"\x00", b"\x01", b"\x02"]
    c.commit()
    assert [m.offset for m in c.poll(0.1)] == [3, 4]
    # not committed: a new member of the group gets 3 and 4 again (at-least-once)
    again = bus.consumer(["t"], "g")
    assert [m.offset for m in again.poll(0.1)] == [3, 4]
    # another group reads from the start
    assert len(bus.consumer(["t"], "other").poll(0.1)) == 5
    assert bus.consumer(["t"], "g").poll(0.05, 1)[0].offset == 3


def test_bad_bus_url():
    with pytest.raises(ConfigError):
        make_bus("amqp://x")


def test_stages_over_the_memory_bus(demo_clip, tmp_path):
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    bus = MemoryBus()
    cam = Camera("cam-x", "zone-1", "site-1")
    n = Ingest(bus, cam, settings, seq_start=1000).run(str(demo_clip), datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC))
    assert n == 20
    first = frames_pb2.Frame()
    first.ParseFromString(bus.consumer([FRAMES_TOPIC], "peek").poll(0.1, 1)[0].value)
    assert (first.camera_id, first.frame_seq, first.zone, first.width, first.height) == (
        "cam-x",
        1000,
        "zone-1",
        640,
        480,
    )
    assert first.jpeg[:2] == b"\xff\xd8"

    from emolens.inference import make_classifier

    detector = Detector(bus, settings, make_classifier(settings.inference))
    assert drain(detector, idle_s=0.3) == 20
    obs = observations_pb2.FrameObservations()
    msgs = bus.consumer([OBSERVATIONS_TOPIC], "peek").poll(0.1, 100)
    assert len(msgs) == 20
    obs.ParseFromString(msgs[0].value)
    assert obs.frame_seq == 1000 and len(obs.faces) >= 1 and obs.faces[0].HasField("track_id")

    store = SqlStore(f"sqlite:///{tmp_path / 's.db'}")
    Ingest(MemoryBus(), cam, settings).declare(store)  # as `emolens ingest --db` does
    live = MemoryLiveState()
    agg = Aggregator(bus, store, live)
    assert drain(agg, idle_s=0.3) == 20
    (bucket,) = store.buckets()
    assert (bucket.camera_id, bucket.frames) == ("cam-x", 20)
    assert store.cameras() == [cam]
    assert live.get("cam-x").frames == 20
    # a restarted aggregator with the offsets committed has nothing left to do
    assert Aggregator(bus, store, live).step(0.1) == 0


def test_redelivered_observations_count_once_in_store_and_live(tmp_path):
    """Live counters only see the frames the store accepted as new: after redeliveries (a whole
    batch again, duplicates within one batch, a partly overlapping batch) both say the same."""
    store = SqlStore(f"sqlite:///{tmp_path / 'r.db'}")
    stored, live = redeliver(store, MemoryLiveState(), "cam-r")
    assert stored == live == (10, 20, 10)


def _frames(bus: MemoryBus, group: str) -> list[frames_pb2.Frame]:
    out = []
    for m in bus.consumer([FRAMES_TOPIC], group).poll(0.1, 10_000):
        f = frames_pb2.Frame()
        f.ParseFromString(m.value)
        out.append(f)
    return out


def test_a_recording_has_the_same_frame_ids_on_every_replay(demo_clip, tmp_path):
    """Frame identity is (camera, source, position), never the wall clock: a restarted or
    repeated ingest of one recording sends the same frame_seq values; another recording of the
    same camera does not collide with them."""
    import shutil

    from emolens.stages import POSITION_BITS

    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    cam = Camera("cam-id")
    first, second = MemoryBus(), MemoryBus()
    Ingest(first, cam, settings).run(str(demo_clip))
    Ingest(second, cam, settings).run(str(demo_clip), datetime(2030, 1, 1, tzinfo=UTC))
    a, b = _frames(first, "a"), _frames(second, "b")
    assert [f.frame_seq for f in a] == [f.frame_seq for f in b] and len(a) == 20
    positions = [f.frame_seq & ((1 << POSITION_BITS) - 1) for f in a]
    assert positions == sorted(positions) and positions[0] == 0  # the position in the source
    moved = tmp_path / "elsewhere" / demo_clip.name
    moved.parent.mkdir()
    shutil.copy(demo_clip, moved)
    copied = MemoryBus()
    Ingest(copied, cam, settings).run(str(moved))
    assert [f.frame_seq for f in _frames(copied, "c")] == [f.frame_seq for f in a]  # same recording
    other = tmp_path / "other.mp4"
    other.write_bytes(demo_clip.read_bytes()[:-10] + b"0123456789")
    different = MemoryBus()
    Ingest(different, cam, settings).run(str(other))
    assert not {f.frame_seq for f in _frames(different, "d")} & {f.frame_seq for f in a}


def test_oversized_frames_are_shrunk_under_the_message_limit():
    """A 4K frame of noise (a multi-megabyte JPEG at quality 90) still fits one bus message."""
    import cv2
    import numpy as np

    from emolens.stages import MAX_FRAME_BYTES, encode_frame

    noise = np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), dtype=np.uint8)
    assert cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].size > 2 * MAX_FRAME_BYTES
    jpeg = encode_frame(noise)
    assert len(jpeg) <= MAX_FRAME_BYTES
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
