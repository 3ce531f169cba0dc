"""The bus stages under faults, on the memory bus with SQLite and in-process adapters that fail
on cue: an outage is waited out with the batch in hand (nothing lost, nothing counted twice),
readiness says so meanwhile, live counters degrade and are rebuilt, poison goes to a
dead-letter topic. The same behaviours on the real stack are in tests/integration/test_faults.py."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from emolens import metrics, stages
from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, MemoryBus
from emolens.errors import Unavailable
from emolens.live import MemoryLiveState
from emolens.retry import Backoff
from emolens.settings import Settings
from emolens.stages import Aggregator, Detector, Ingest, dead_letter_topic, drain
from emolens.store import Camera, SqlStore
from emolens.wire import observations_to_pb
from tests.conftest import MODEL_REPO
from tests.redelivery import accepted_long_ago, frame


def _fast(stage):
    stage.new_backoff = lambda: Backoff(initial_s=0.01, maximum_s=0.05, jitter=0.0)
    readiness: list[bool] = []
    stage.on_ready = readiness.append
    return stage, readiness


class Flaky:
    """Wraps an adapter; ``fail`` names methods that raise Unavailable the next ``times`` calls."""

    def __init__(self, inner, fail: dict[str, int]):
        self._inner, self._fail = inner, dict(fail)

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self._fail.get(name, 0) > 0:
                self._fail[name] -= 1
                raise Unavailable(f"{name} is down")
            return attr(*args, **kwargs)

        return call


def _publish(bus, seqs, camera="cam-f"):
    for seq in seqs:
        bus.publish(OBSERVATIONS_TOPIC, camera, observations_to_pb(frame(camera, seq), "z", "s").SerializeToString())


def _declared_store(path, cameras=("cam-f", "cam-other")):
    """A store whose registry declares ``cameras`` (zone "z", site "s", as ``_publish`` sends
    them): the aggregator stores only the frames of declared cameras."""
    store = SqlStore(f"sqlite:///{path}")
    for camera in cameras:
        store.ensure_camera(Camera(camera, "z", "s"))
    return store


def _stored(store, camera="cam-f"):
    b = store.buckets(camera_id=camera)
    return sum(x.frames for x in b), sum(x.faces for x in b), sum(x.smiles for x in b)


def test_aggregator_waits_out_a_database_outage_without_losing_a_frame(tmp_path):
    store = _declared_store(tmp_path / "a.db")
    bus = MemoryBus()
    retries = metrics.RETRIES.labels("aggregator", "store")
    before = retries._value.get()
    aggregator, readiness = _fast(Aggregator(bus, Flaky(store, {"apply": 3}), MemoryLiveState()))
    _publish(bus, range(10))
    assert drain(aggregator, idle_s=0.2, timeout_s=0.05) == 10
    assert _stored(store) == (10, 20, 10)
    assert readiness == [False, True]  # not ready while the database was away, then ready again
    assert retries._value.get() - before == 3
    counters = aggregator.live.get("cam-f")
    assert (counters.frames, counters.faces, counters.smiles) == (10, 20, 10)


def test_a_stop_during_an_outage_commits_nothing_so_the_batch_comes_back(tmp_path):
    store = _declared_store(tmp_path / "b.db")
    bus = MemoryBus()
    stop = threading.Event()
    aggregator, _ = _fast(Aggregator(bus, Flaky(store, {"apply": 10**6}), None, stop=stop))
    _publish(bus, range(5))
    threading.Timer(0.2, stop.set).start()
    assert aggregator.step(timeout_s=0.05) == 0
    assert _stored(store) == (0, 0, 0)
    restarted = Aggregator(bus, store, None)  # a new process of the same group
    assert drain(restarted, idle_s=0.2, timeout_s=0.05) == 5
    assert _stored(store) == (5, 10, 5)


class Recording:
    """Wraps a store; remembers the arguments of every ``prune_seen`` call."""

    def __init__(self, inner):
        self._inner, self.prunes = inner, []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def prune_seen(self, older_than):
        self.prunes.append(older_than)
        return self._inner.prune_seen(older_than)


def test_the_aggregator_prunes_at_start_then_every_ten_minutes_waiting_out_an_outage(tmp_path, monkeypatch):
    store = _declared_store(tmp_path / "p.db")
    store.apply([frame("cam-f", 0), frame("cam-f", 1024)])  # two blocks of 1024 frames
    accepted_long_ago(store, "cam-f", [0])  # frame 0's block was accepted long before the window
    recording = Recording(store)
    window = timedelta(days=7)
    aggregator, readiness = _fast(
        Aggregator(MemoryBus(), Flaky(recording, {"prune_seen": 2}), None, replay_window=window)
    )
    assert stages.PRUNE_EVERY_S == 600
    aggregator.step(timeout_s=0.01)
    assert recording.prunes == [window] and readiness == [False, True]  # retried, like any store call
    _publish(aggregator.bus, [0, 1024])
    assert drain(aggregator, idle_s=0.2, timeout_s=0.05) == 2
    assert recording.prunes == [window]  # not again within ten minutes
    assert _stored(store) == (3, 6, 3)  # frame 0 was forgotten, so it counted again; frame 1024 did not
    monkeypatch.setattr(stages, "PRUNE_EVERY_S", 0.0)  # as if ten minutes had passed
    aggregator.step(timeout_s=0.01)
    assert recording.prunes == [window, window]


class Switchable:
    """Wraps an adapter; every call raises Unavailable while ``down`` is set."""

    def __init__(self, inner):
        self._inner, self.down = inner, False

    def __getattr__(self, name):
        attr = getattr(self._inner, name)

        def call(*args, **kwargs):
            if self.down:
                raise Unavailable("redis is unavailable")
            return attr(*args, **kwargs)

        return call


def test_live_counters_degrade_during_an_outage_and_are_rebuilt_from_the_store(tmp_path):
    store = _declared_store(tmp_path / "c.db")
    bus = MemoryBus()
    live = Switchable(MemoryLiveState())
    aggregator, readiness = _fast(Aggregator(bus, store, live))
    _publish(bus, range(4))
    drain(aggregator, idle_s=0.2, timeout_s=0.05)
    live.down = True
    _publish(bus, range(4, 8))
    drain(aggregator, idle_s=0.2, timeout_s=0.05)  # the live state is away: SQL goes on
    assert _stored(store) == (8, 16, 8)
    assert aggregator.live_stale and readiness == []  # degraded, not down: SQL is the truth
    live.down = False
    _publish(bus, range(8, 10))
    drain(aggregator, idle_s=0.2, timeout_s=0.05)
    assert not aggregator.live_stale
    c = live.get("cam-f")
    assert (c.frames, c.faces, c.smiles) == _stored(store) == (10, 20, 10)


class ForgetfulLive(MemoryLiveState):
    """A live state that loses everything once (a Redis restarted without persistence)."""

    def __init__(self):
        super().__init__()
        self.wiped = False

    def wipe(self):
        self._counters.clear()
        self.wiped = True

    def lost(self):
        return self.wiped

    def reset(self, totals):
        super().reset(totals)
        self.wiped = False


def test_counters_a_restarted_live_state_lost_are_rebuilt(tmp_path):
    store = _declared_store(tmp_path / "d.db")
    bus = MemoryBus()
    live = ForgetfulLive()
    aggregator = Aggregator(bus, store, live)
    _publish(bus, range(6))
    drain(aggregator, idle_s=0.2, timeout_s=0.05)
    live.wipe()
    _publish(bus, range(6, 10))
    drain(aggregator, idle_s=0.2, timeout_s=0.05)
    c = live.get("cam-f")
    assert (c.frames, c.faces, c.smiles) == _stored(store) == (10, 20, 10)


def test_poison_observations_go_to_the_dead_letter_topic_and_block_nothing(tmp_path):
    store = _declared_store(tmp_path / "e.db")
    bus = MemoryBus()
    aggregator = Aggregator(bus, store, MemoryLiveState())
    dlq = metrics.DEAD_LETTERS.labels(dead_letter_topic(OBSERVATIONS_TOPIC))
    before = dlq._value.get()
    _publish(bus, range(3))
    long_id = "x" * 129  # wider than the camera-id column
    bus.publish(OBSERVATIONS_TOPIC, long_id, observations_to_pb(frame(long_id, 1), "z", "s").SerializeToString())
    bus.publish(OBSERVATIONS_TOPIC, "cam-f", b"\xff\x00 not a protobuf")
    _publish(bus, range(3, 6))
    _publish(bus, range(2), camera="cam-other")
    drain(aggregator, idle_s=0.2, timeout_s=0.05)
    assert _stored(store) == (6, 12, 6) and _stored(store, "cam-other") == (2, 4, 2)
    dead = bus.consumer([dead_letter_topic(OBSERVATIONS_TOPIC)], "inspect").poll(0.1, 10)
    assert [m.key for m in dead] == [long_id, "cam-f"]
    assert dlq._value.get() - before == 2


def test_detector_waits_for_the_models_and_drops_nothing(demo_clip):
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    bus = MemoryBus()
    Ingest(bus, Camera("cam-d"), settings).run(str(demo_clip))
    from emolens.inference import make_classifier

    classifier = Flaky(make_classifier(settings.inference), {"predict": 3})
    detector, readiness = _fast(Detector(bus, settings, classifier))
    assert drain(detector, idle_s=0.3) == 20
    assert readiness == [False, True]
    from emolens.v1 import frames_pb2, observations_pb2

    sent = []
    for m in bus.consumer([FRAMES_TOPIC], "sent").poll(0.1, 1000):
        f = frames_pb2.Frame()
        f.ParseFromString(m.value)
        sent.append(f.frame_seq)
    observed = []
    for m in bus.consumer([OBSERVATIONS_TOPIC], "count").poll(0.1, 1000):
        o = observations_pb2.FrameObservations()
        o.ParseFromString(m.value)
        observed.append(o.frame_seq)
    assert observed == sent and len(sent) == 20  # each frame once, in order, none dropped


def test_undecodable_frames_go_to_the_dead_letter_topic(demo_clip):
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    bus = MemoryBus()
    bus.publish(FRAMES_TOPIC, "cam-x", b"garbage")
    from emolens.inference import make_classifier
    from emolens.v1 import frames_pb2

    bus.publish(FRAMES_TOPIC, "cam-x", frames_pb2.Frame(camera_id="cam-x", jpeg=b"\xff\xd8 broken").SerializeToString())
    image = np.zeros((48, 64, 3), np.uint8)
    import cv2

    ok = frames_pb2.Frame(camera_id="cam-x", frame_seq=7, jpeg=cv2.imencode(".jpg", image)[1].tobytes())
    ok.captured_at.GetCurrentTime()  # a frame without a time reads 1970, before any camera's (a dead letter)
    bus.publish(FRAMES_TOPIC, "cam-x", ok.SerializeToString())
    detector = Detector(bus, settings, make_classifier(settings.inference))
    assert drain(detector, idle_s=0.2) == 3
    assert len(bus.consumer([dead_letter_topic(FRAMES_TOPIC)], "i").poll(0.1, 10)) == 2
    assert len(bus.consumer([OBSERVATIONS_TOPIC], "i").poll(0.1, 10)) == 1


class _ChokesOnBlack:
    """The real face detector, except that it raises on an all-black frame: an injected fault
    standing for whatever one frame may make a detector library raise (none is known today)."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def detect(self, image):
        if not image.any():
            raise RuntimeError("detector library failed on this frame")
        return self.inner.detect(image)


def test_a_frame_the_analysis_raises_on_is_isolated_and_the_rest_analysed(astronaut):
    """One frame that makes the analysis raise (not an outage) goes to the dead-letter topic with
    the reason; the other frames of its batch, of its camera and of others, are analysed."""
    import cv2

    from emolens.inference import make_classifier
    from emolens.stages import DLQ_REASON
    from emolens.v1 import frames_pb2, observations_pb2
    from emolens.vision.detect import make_detector
    from emolens.wire import to_timestamp

    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}")
    detector_lib = _ChokesOnBlack(make_detector(settings.detector, settings.min_detection_score, settings.threads))
    bus = MemoryBus()
    stage = Detector(bus, settings, make_classifier(settings.inference), detector=detector_lib)
    face = cv2.imencode(".jpg", astronaut)[1].tobytes()
    black = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    now = datetime.now(UTC)
    for seq in range(8):
        msg = frames_pb2.Frame(camera_id=f"cam-{seq % 2}", frame_seq=seq, jpeg=black if seq == 5 else face)
        msg.captured_at.CopyFrom(to_timestamp(now + timedelta(seconds=seq)))
        bus.publish(FRAMES_TOPIC, msg.camera_id, msg.SerializeToString())
    assert stage.step(timeout_s=0.0) == 8
    out = [
        observations_pb2.FrameObservations.FromString(m.value)
        for m in bus.consumer([OBSERVATIONS_TOPIC], "o").poll(0, 99)
    ]
    assert sorted(o.frame_seq for o in out) == [0, 1, 2, 3, 4, 6, 7] and all(len(o.faces) == 1 for o in out)
    (dead,) = bus.consumer([dead_letter_topic(FRAMES_TOPIC)], "d").poll(0, 99)
    kept = frames_pb2.Frame.FromString(dead.value)
    assert (kept.camera_id, kept.frame_seq, kept.captured_at) == ("cam-1", 5, to_timestamp(now + timedelta(seconds=5)))
    # its pixels are not kept: a dead-letter topic keeps messages for days, the frames topic 10 minutes
    assert kept.jpeg == b"" and int(dict(dead.headers)[stages.DLQ_PIXELS]) > len(black)  # the size it had
    assert "RuntimeError: detector library failed on this frame" in dict(dead.headers)[DLQ_REASON].decode()
    assert stage.step(timeout_s=0.0) == 0  # committed: nothing comes back


class FailsOnCalls:
    """Wraps a classifier; its ``predict`` calls numbered in ``calls`` (from 1) raise Unavailable,
    as a Triton that went away during that call would (the real one: tests/integration)."""

    def __init__(self, inner, calls: set[int]):
        self._inner, self._calls, self.n = inner, calls, 0

    def info(self, model):
        return self._inner.info(model)

    def predict(self, model, images):
        self.n += 1
        if self.n in self._calls:
            raise Unavailable("triton is down")
        return self._inner.predict(model, images)


def _observations(bus) -> list[tuple]:
    """Each observed frame with its faces (box, quality, labels, track id renumbered by first
    appearance, since a detector numbers its tracks from the clock)."""
    from emolens.v1 import observations_pb2

    renumber: dict[int, int] = {}
    out = []
    for m in bus.consumer([OBSERVATIONS_TOPIC], "compare").poll(0.1, 10_000):
        o = observations_pb2.FrameObservations.FromString(m.value)
        faces = [
            (
                tuple(round(v, 2) for v in (f.box.x0, f.box.y0, f.box.x1, f.box.y1)),
                round(f.quality, 4),
                f.low_quality,
                round(f.smile, 4),
                tuple(round(p, 4) for p in f.emotions),
                renumber.setdefault(f.track_id, len(renumber)),
            )
            for f in o.faces
        ]
        out.append((o.frame_seq, faces))
    return out


def test_a_retried_batch_gives_the_observations_of_a_run_without_the_failure(demo_clip):
    """The models fail in the middle of the clip (a Triton kill): the detector waits and retries
    the batch; the batch's retry must find the face follower, the tracker and the kept
    classifications as the failed attempt found them, so every frame's faces, qualities, labels
    and track ids are those of a run without the failure (before: the follower's state had
    advanced on the failed attempt, so the retry detected and classified differently)."""
    from emolens.inference import make_classifier

    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    assert settings.detect_interval > 0 and settings.classify_interval > 0 and settings.smoothing > 0
    model = make_classifier(settings.inference)
    runs = []
    for failing in (set(), {5, 6, 13, 16, 17}):
        bus = MemoryBus()
        Ingest(bus, Camera("cam-r"), settings).run(str(demo_clip))
        detector, readiness = _fast(Detector(bus, settings, FailsOnCalls(model, failing)))
        while detector.step(timeout_s=0.05, max_frames=3):  # several batches, each with faces to classify
            pass
        assert readiness == ([False, True] * 3 if failing else [])
        runs.append(_observations(bus))
    clean, retried = runs
    assert len(clean) == 20 and sum(len(faces) for _, faces in clean) > 20
    assert retried == clean


def _first_copies(bus) -> dict[int, list[int]]:
    """frame_seq -> the track ids of the first observations message of each frame (the copy
    the store keeps; later copies of a frame are dropped as redeliveries)."""
    from emolens.v1 import observations_pb2

    out: dict[int, list[int]] = {}
    for m in bus.consumer([OBSERVATIONS_TOPIC], f"first-{len(out)}-{id(bus)}").poll(0.1, 10_000):
        o = observations_pb2.FrameObservations.FromString(m.value)
        out.setdefault(o.frame_seq, [f.track_id for f in o.faces])
    return out


def _frames_of(clip, settings) -> list:
    """The frames messages a full ingest of ``clip`` publishes, in order."""
    scratch = MemoryBus()
    Ingest(scratch, Camera("cam-v"), settings).run(str(clip))
    return scratch.consumer([FRAMES_TOPIC], "read").poll(0.1, 10_000)


def _steps(detector, batches: int | None = None, size: int = 4) -> None:
    n = 0
    while (batches is None or n < batches) and detector.step(timeout_s=0.05, max_frames=size):
        n += 1


@pytest.fixture(scope="module")
def clean_visitors(tmp_path_factory) -> tuple[Settings, list, dict[int, list[int]]]:
    """The 12 s recording of the fault tests (faces walk in, move and leave) through one detector."""
    from emolens.demo import write_demo_clip
    from emolens.inference import make_classifier

    clip = write_demo_clip(tmp_path_factory.mktemp("visitors") / "rec.mp4", seconds=12.0, fps=10)
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    frames = _frames_of(clip, settings)
    bus = MemoryBus()
    for m in frames:
        bus.publish(FRAMES_TOPIC, m.key, m.value)
    _steps(Detector(bus, settings, make_classifier(settings.inference)))
    clean = _first_copies(bus)
    assert len(clean) == len(frames) == 60
    return settings, frames, clean


def _visitors(tracks: dict[int, list[int]]) -> int:
    return len({t for ids in tracks.values() for t in ids})


@pytest.mark.fault
def test_a_restarted_detector_keeps_the_track_ids_of_the_faces_in_view(clean_visitors):
    """A detector killed mid-clip after it published a batch it had not committed; a new one
    takes the camera over. It reads back the observations its predecessor emitted (the ids of
    the faces in view) and goes on with them, so distinct visitors equal the clean run's
    (before: every face in view at the restart got a second id)."""
    from emolens.inference import make_classifier

    settings, frames, clean = clean_visitors
    bus = MemoryBus()
    for m in frames:
        bus.publish(FRAMES_TOPIC, m.key, m.value)
    classifier = make_classifier(settings.inference)
    first = Detector(bus, settings, classifier)
    _steps(first, batches=6)  # 24 frames analysed and committed
    # the next batch is analysed and published, then the process dies before its commit
    uncommitted = first.consumer.poll(0.05, 4)
    decoded = [(m, d) for m in uncommitted if (d := first._decode(m)) is not None]
    for camera_id, payload in first._analyze([d for _, d in decoded]):
        bus.publish(OBSERVATIONS_TOPIC, camera_id, payload)
    second = Detector(bus, settings, classifier)  # same group: starts at the committed offset
    _steps(second)
    restarted = _first_copies(bus)
    assert sorted(restarted) == sorted(clean)
    print(f"\nVISITORS detector restart: clean {_visitors(clean)}, restarted {_visitors(restarted)}")
    assert _visitors(clean) >= 2
    assert abs(_visitors(restarted) - _visitors(clean)) <= 1


@pytest.mark.fault
def test_a_recording_ingested_again_mid_file_leaves_the_tracks_alone(clean_visitors):
    """The ingest killed after 20 frames and run again (the same frames, same ids, then the
    rest): the detector answers the frames it has seen with the observations it gave and its
    tracker goes on from frame 20, so every frame's track ids are the clean run's (before: the
    replayed frames ran through the tracker backwards and the faces in view got new ids)."""
    from emolens.inference import make_classifier

    settings, frames, clean = clean_visitors
    bus = MemoryBus()
    for m in frames[:20] + frames:
        bus.publish(FRAMES_TOPIC, m.key, m.value)
    _steps(Detector(bus, settings, make_classifier(settings.inference)))
    rerun = _first_copies(bus)
    print(f"\nVISITORS ingest rerun: clean {_visitors(clean)}, rerun {_visitors(rerun)}")
    relabel: dict[int, int] = {}
    same = [[relabel.setdefault(t, len(relabel)) for t in rerun[s]] for s in sorted(rerun)]
    relabel = {}
    want = [[relabel.setdefault(t, len(relabel)) for t in clean[s]] for s in sorted(clean)]
    assert same == want


class _NoReadBack(MemoryBus):
    """A bus whose read-back of recent messages fails (not an outage): a broker without the API."""

    def recent(self, topic, key, limit):
        raise RuntimeError("ListOffsets not supported")


def test_a_failed_read_back_only_costs_the_warm_start(demo_clip):
    """The read-back that warms a camera's tracks is best effort: when it fails for any reason
    but an outage, the camera's frames are analysed as before, none dead-lettered."""
    from emolens.inference import make_classifier

    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    bus = _NoReadBack()
    sent = Ingest(bus, Camera("cam-w"), settings).run(str(demo_clip))
    assert drain(Detector(bus, settings, make_classifier(settings.inference)), idle_s=0.3) == sent
    assert len(bus.consumer([OBSERVATIONS_TOPIC], "o").poll(0.1, 999)) == sent
    assert bus.consumer([dead_letter_topic(FRAMES_TOPIC)], "d").poll(0.1, 999) == []
