"""Fuzzing the real stages with batches of random but decodable messages (docs/reliability.md,
"A bad timestamp stops every camera"): the aggregator on a real PostgreSQL and the detector on
the real models. Each batch mixes messages good by construction, messages bad by construction
(extreme timestamps first among them) and mutated ones whose fate is left to the stage; the
stage must never raise, must store every good message (and each mutated one it did not
dead-letter), and must dead-letter every bad one with a reason.

    pytest -q -m fuzz tests/integration/test_fuzz_stages.py   # about a minute on 2 cores
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import cv2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, MemoryBus, dead_letter_topic
from emolens.inference import make_classifier
from emolens.live import MemoryLiveState
from emolens.observations import MAX_ID_LENGTH
from emolens.results import EMOTIONS
from emolens.settings import Settings
from emolens.stages import DLQ_REASON, Aggregator, Detector, without_pixels
from emolens.store import Camera, SqlStore
from emolens.v1 import frames_pb2, observations_pb2
from emolens.wire import to_timestamp
from tests.conftest import MODEL_REPO

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(600)]

FUZZ = settings(
    database=None,
    deadline=None,  # a real database and real models: time is bounded by max_examples and the timeout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
NOW = datetime.now(UTC)
# The extremes a protobuf Timestamp carries that once stopped the aggregator, and the edges of
# the accepted range (2000-01-01 to a day ahead) from outside.
EXTREME_TIMES = (
    st.sampled_from(
        [
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(9999, 12, 31, tzinfo=UTC),
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
            NOW + timedelta(days=2),
        ]
    )
    | st.datetimes(datetime(1, 1, 1), datetime(1999, 12, 31), timezones=st.just(UTC))
    | st.datetimes(datetime(NOW.year + 1, 1, 1), datetime(9999, 12, 31), timezones=st.just(UTC))
)
GOOD_TIMES = st.datetimes(datetime(2000, 1, 1), NOW.replace(tzinfo=None) - timedelta(minutes=1), timezones=st.just(UTC))


def _stamp(msg, when: datetime) -> None:
    msg.captured_at.CopyFrom(to_timestamp(when))


def _mutate(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        i = draw(st.integers(0, len(out) - 1))
        op = draw(st.sampled_from(("flip", "byte", "truncate", "delete")))
        if op == "flip":
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            out[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del out[i:]
        else:
            del out[i : i + draw(st.integers(1, 8))]
    return bytes(out)


# ---------------------------------------------------------------- the aggregator on PostgreSQL


@st.composite
def _face(draw: st.DrawFn) -> observations_pb2.Face:
    probs = draw(st.lists(st.floats(0, 1), min_size=7, max_size=7))
    face = observations_pb2.Face(
        detection_score=draw(st.floats(0, 1)),
        quality=draw(st.floats(0, 1)),
        low_quality=draw(st.booleans()),
        smile=draw(st.floats(0, 1)),
        emotions=probs,
        label=EMOTIONS[max(range(7), key=probs.__getitem__)],
    )
    if draw(st.booleans()):
        face.track_id = draw(st.integers(0, 2**63 - 1))
    return face


# The cameras and their declared zones (registered before the run: a message never moves a
# camera, so one naming another zone is a bad message, see the "moved" flaw)
ZONES = {"fz-a": "door", "fz-b": "", "fz-c": "z" * 200, "é" * 128: "door"}


@st.composite
def _good_observation(draw: st.DrawFn) -> observations_pb2.FrameObservations:
    camera_id = draw(st.sampled_from(sorted(ZONES)))
    msg = observations_pb2.FrameObservations(
        camera_id=camera_id,
        frame_seq=draw(st.integers(0, 2**63 - 1)),
        zone=ZONES[camera_id],
        site="mall",
        faces=draw(st.lists(_face(), max_size=3)),
    )
    _stamp(msg, draw(GOOD_TIMES))
    return msg


@st.composite
def _bad_observation(draw: st.DrawFn) -> observations_pb2.FrameObservations:
    msg = draw(_good_observation())
    flaw = draw(st.sampled_from(("time", "time", "time", "value", "seq", "id", "nul", "emotions", "moved")))
    if flaw == "time":
        _stamp(msg, draw(EXTREME_TIMES))
    elif flaw == "value" and msg.faces:
        msg.faces[0].smile = draw(st.sampled_from([math.nan, math.inf, -0.5, 1.5]))
    elif flaw == "value":
        msg.captured_at.nanos = -1
    elif flaw == "seq":
        msg.frame_seq = draw(st.integers(2**63, 2**64 - 1))
    elif flaw == "id":
        msg.camera_id = draw(st.sampled_from(["", "x" * 129, "y" * 100_000]))
    elif flaw == "moved":
        msg.zone = "elsewhere"
    elif flaw == "nul":
        setattr(msg, draw(st.sampled_from(("camera_id", "zone", "site"))), "a\x00b")
    else:
        msg.faces.add(emotions=[0.5] * 6)
    return msg


@st.composite
def observation_batches(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    batch = []
    for _ in range(draw(st.integers(1, 24))):
        kind = draw(st.sampled_from(("good", "good", "good", "bad", "mutated")))
        if kind == "mutated":
            batch.append((kind, _mutate(draw, draw(_good_observation()).SerializeToString())))
        else:
            maker = _good_observation if kind == "good" else _bad_observation
            batch.append((kind, draw(maker()).SerializeToString()))
    return batch


def test_aggregator_on_postgres_stores_every_good_message_and_never_dies(own_postgres_url):
    store = SqlStore(own_postgres_url)
    for camera_id, zone in ZONES.items():
        store.register_camera(Camera(camera_id, zone[:MAX_ID_LENGTH], "mall"))
    bus = MemoryBus()
    aggregator = Aggregator(bus, store, MemoryLiveState())
    dlq = bus.consumer([dead_letter_topic(OBSERVATIONS_TOPIC)], "fuzz-inspect")
    expected: set[tuple[str, int]] = set()
    tally = Counter[str]()

    @settings(FUZZ, max_examples=120)
    @given(batch=observation_batches())
    def stored_or_dead_lettered(batch: list[tuple[str, bytes]]) -> None:
        for _, payload in batch:
            bus.publish(OBSERVATIONS_TOPIC, "k", payload)
        assert aggregator.step(timeout_s=0.0, max_records=len(batch)) == len(batch)
        letters = dlq.poll(0.0, 10_000)
        assert all(dict(m.headers).get(DLQ_REASON) for m in letters)  # each says why
        dead = Counter(m.value for m in letters)  # observations hold no pixels: kept as sent
        for kind, payload in batch:
            tally[kind] += 1
            if kind == "bad":
                assert dead[payload] > 0, observations_pb2.FrameObservations.FromString(payload)
                dead[payload] -= 1
        for kind, payload in batch:
            if kind == "good":
                assert dead[payload] == 0, observations_pb2.FrameObservations.FromString(payload)
            elif kind == "mutated" and dead[payload] > 0:
                dead[payload] -= 1
                tally["mutated_dead"] += 1
                continue
            elif kind == "mutated":
                tally["mutated_stored"] += 1
            else:
                continue
            msg = observations_pb2.FrameObservations.FromString(payload)  # stored: it parses
            expected.add((msg.camera_id, msg.frame_seq))
        assert sum(dead.values()) == 0  # nothing dead-lettered that was not sent
        per_camera = Counter[str]()
        for b in store.buckets():
            per_camera[b.camera_id] += b.frames
        assert per_camera == Counter(camera for camera, _ in expected)

    try:
        stored_or_dead_lettered()
        print("aggregator fuzz:", dict(tally))
        assert tally["good"] > 300 and tally["bad"] > 100, tally
        # a new aggregator of the same group gets nothing again: every offset was committed
        assert Aggregator(bus, store, MemoryLiveState()).step(timeout_s=0.0) == 0
    finally:
        store.close()


# ---------------------------------------------------------------- the detector on the real models


@pytest.fixture(scope="module")
def face_jpeg(astronaut) -> bytes:
    return cv2.imencode(".jpg", cv2.resize(astronaut[40:240, 130:330], (128, 128)))[1].tobytes()


def test_detector_analyses_every_good_frame_and_never_dies(face_jpeg):
    settings_ = Settings.from_env(inference=f"onnx://{MODEL_REPO}", max_pixels=2_000_000)
    bus = MemoryBus()
    detector = Detector(bus, settings_, make_classifier(settings_.inference))
    out = bus.consumer([OBSERVATIONS_TOPIC], "fuzz-out")
    dlq = bus.consumer([dead_letter_topic(FRAMES_TOPIC)], "fuzz-dlq")
    tally = Counter[str]()

    @st.composite
    def frames(draw: st.DrawFn) -> list[tuple[str, bytes, tuple[str, int]]]:
        batch = []
        seqs = draw(st.lists(st.integers(0, 2**40), min_size=1, max_size=6, unique=True))
        for frame_seq in seqs:
            kind = draw(st.sampled_from(("good", "good", "bad_time", "bad_image", "mutated")))
            msg = frames_pb2.Frame(
                camera_id=draw(st.sampled_from(["fz-1", "fz-2"])),
                frame_seq=frame_seq,
                jpeg=face_jpeg,
                width=128,
                height=128,
            )
            _stamp(msg, draw(EXTREME_TIMES if kind == "bad_time" else GOOD_TIMES))
            if kind == "bad_image":
                msg.jpeg = draw(st.sampled_from([b"", b"\xff\xd8 broken", face_jpeg[:100]]))
            payload = msg.SerializeToString()
            if kind == "mutated":
                payload = _mutate(draw, payload)
            batch.append((kind, payload, (msg.camera_id, msg.frame_seq)))
        return batch

    @settings(FUZZ, max_examples=40, derandomize=True)  # a fixed mix: the tally below must not depend on luck
    @given(batch=frames())
    def analysed_or_dead_lettered(batch: list[tuple[str, bytes, tuple[str, int]]]) -> None:
        for _, payload, _ in batch:
            bus.publish(FRAMES_TOPIC, "k", payload)
        assert detector.step(timeout_s=0.0, max_frames=len(batch)) == len(batch)
        analysed = Counter()
        for m in out.poll(0.0, 1000):
            obs = observations_pb2.FrameObservations.FromString(m.value)
            analysed[(obs.camera_id, obs.frame_seq)] += 1
        letters = dlq.poll(0.0, 1000)
        assert all(dict(m.headers).get(DLQ_REASON) for m in letters)
        # no pixels kept beyond the frames topic's retention: what is kept parses, with no JPEG
        assert all(not frames_pb2.Frame.FromString(m.value).jpeg for m in letters)
        dead = Counter(m.value for m in letters)
        for kind, payload, ident in batch:
            tally[kind] += 1
            letter = without_pixels(payload)  # what the dead-letter topic keeps of it
            if kind == "good":  # (a mutant may name the same frame: exactly once is checked in total below)
                assert analysed[ident] >= 1 and dead[letter] == 0
            elif kind in ("bad_time", "bad_image"):
                assert dead[letter] >= 1 and analysed[ident] == 0
            else:  # a mutant may name another frame: counted below, either analysed or dead
                tally["mutated_dead" if dead[letter] else "mutated_analysed"] += 1
        assert len(letters) + sum(analysed.values()) == len(batch)  # each exactly once

    analysed_or_dead_lettered()
    print("detector fuzz:", dict(tally))
    # a real mix was exercised (hypothesis draws a different one under a loaded run: 34-67 good)
    assert tally["good"] > 25 and tally["bad_time"] > 10 and tally["bad_image"] > 10, tally
