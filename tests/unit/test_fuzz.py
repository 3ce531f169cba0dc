"""Property-based fuzzing (hypothesis) of every decoder that meets outside bytes: images, videos,
the bus's protobuf messages through the real stages, and the gateway's four gRPC methods.

Each bad input must be answered with a typed error (``InputError``, a dead letter, a gRPC status
the caller can act on), never another exception, a crash or a hang. Every test is bounded
(``max_examples``, a per-example deadline, a pytest timeout) and counts the cases it ran; the
tally is printed at the end of the module and ``test_fuzz_case_total`` checks that hypothesis
alone tried at least 10,000 (docs/reliability.md, "Bad input (fuzzing)", has the numbers).

    pytest -q -m fuzz      # about 80 s on 2 cores
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, MemoryBus
from emolens.errors import InputError
from emolens.inference import make_classifier
from emolens.live import MemoryLiveState
from emolens.media import decode_image, iter_video, read_image
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.settings import Settings
from emolens.stages import Aggregator, Detector, dead_letter_topic, without_pixels
from emolens.store import Camera, SqlStore
from emolens.v1 import analytics_pb2, analytics_pb2_grpc, frames_pb2, observations_pb2
from emolens.wire import observations_to_pb, to_timestamp
from tests.conftest import MODEL_REPO

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(240)]  # a hang fails its test, not the run

MAX_PIXELS = 2_000_000  # small, so a header that declares a bomb is refused, not decoded
TOTAL_CASES = 10_000
# Hypothesis keeps no example database in the checkout and never stops a slow 2-core run for
# its own speed checks; each test still has a per-example deadline and a pytest timeout.
FUZZ = settings(
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# ---------------------------------------------------------------- the tally

CASES: Counter[str] = Counter()
SECONDS: Counter[str] = Counter()
TARGETS = (
    "decode_image",
    "read_image",
    "iter_video",
    "detector_frames",
    "aggregator_observations",
    "gateway_analyze_image",
    "gateway_analyze_stream",
    "gateway_query_stats",
    "gateway_watch_live",
    "gateway_raw_request_bytes",
    "atheris_decode_image",
)


@pytest.fixture(autouse=True)
def _timed(request):
    t0 = time.perf_counter()
    yield
    SECONDS[request.node.originalname] += time.perf_counter() - t0


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    if not CASES:
        return
    lines = ["", "fuzz cases per target (cases, seconds):"]
    for name in TARGETS:
        if name in CASES:
            seconds = SECONDS[f"test_{name}"]
            lines.append(f"  {name:32s} {CASES[name]:6d}  {seconds:6.1f} s")
    lines.append(f"  {'total':32s} {sum(CASES.values()):6d}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # past pytest's capture, also without -s
        print("\n".join(lines))


# ---------------------------------------------------------------- inputs


def _mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """1-8 byte-level mutations, half of them in the first 64 bytes (where headers declare
    sizes): bit flips, boundary bytes, truncation, insertion, deletion, duplication."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        if not out:
            break
        head = min(63, len(out) - 1)
        i = draw(st.one_of(st.integers(0, head), st.integers(0, len(out) - 1)))
        op = draw(st.sampled_from(("flip", "byte", "truncate", "insert", "delete", "duplicate")))
        if op == "flip":
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            out[i] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)) | st.integers(0, 255))
        elif op == "truncate":
            del out[i:]
        elif op == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del out[i : i + draw(st.integers(1, 64))]
        else:
            out[i:i] = out[i : i + draw(st.integers(1, 64))]
    return bytes(out)


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def strategy(draw: st.DrawFn) -> bytes:
        return _mutate(draw, draw(st.sampled_from(seeds)))

    return strategy()


def _image(w: int, h: int, channels: int = 3) -> np.ndarray:
    """A smooth pattern (compresses like a photo, unlike noise)."""
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 3) % 256, np.full_like(x, 200)]
    return np.dstack(planes[:channels]).astype(np.uint8).squeeze()


def _encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def _face_jpeg(astronaut: np.ndarray, size: int = 128) -> bytes:
    """The astronaut's face, small: decodable mutants reach the detector and the models."""
    return _encode(".jpg", cv2.resize(astronaut[40:240, 130:330], (size, size)))


@pytest.fixture(scope="module")
def image_seeds(astronaut) -> list[bytes]:
    """Valid files of every format header_size reads, in the shapes decode_image keeps."""
    return [
        _encode(".jpg", _image(40, 30)),
        _encode(".jpg", _image(33, 17, 1), cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        _face_jpeg(astronaut, 64),
        _encode(".png", _image(24, 16)),
        _encode(".png", _image(24, 16, 1)),
        _encode(".png", _image(20, 12, 4)),
        _encode(".png", _image(16, 16).astype(np.uint16) * 257),
        _encode(".bmp", _image(12, 9)),
        _encode(".webp", _image(20, 10), cv2.IMWRITE_WEBP_QUALITY, 80),
        _encode(".webp", _image(20, 10), cv2.IMWRITE_WEBP_QUALITY, 101),  # lossless
    ]


@pytest.fixture(scope="module")
def headerless_seeds() -> list[bytes]:
    """Formats whose size header_size cannot read: an untrusted caller's are refused unread."""
    return [_encode(".tif", _image(16, 8)), _encode(".pgm", _image(16, 8, 1)), _encode(".ppm", _image(16, 8))]


def _check_image(image: np.ndarray) -> None:
    assert isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.size > 0
    assert image.shape[0] * image.shape[1] <= MAX_PIXELS
    assert image.dtype in (np.uint8, np.uint16, np.float32)


# ---------------------------------------------------------------- image decoding


def test_decode_image(image_seeds, headerless_seeds):
    @settings(FUZZ, max_examples=5000)
    @given(
        data=st.binary(max_size=1024) | mutated(image_seeds) | mutated(headerless_seeds),
        untrusted=st.booleans(),
    )
    # a PNG whose IHDR declares 100000x100000 pixels, and one whose chunk length is absurd
    @example(
        data=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00", untrusted=True
    )
    @example(data=b"\x89PNG\r\n\x1a\n\xff\xff\xff\xffIHDR" + bytes(17), untrusted=False)
    @example(data=b"\xff\xd8\xff\xff\xff\xff\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03", untrusted=True)  # JPEG fill
    @example(data=b"BM" + bytes(12) + (12).to_bytes(4, "little") + b"\xff\xff\xff\xff" + bytes(8), untrusted=True)
    def decodes_or_refuses(data: bytes, untrusted: bool) -> None:
        CASES["decode_image"] += 1
        try:
            image = decode_image(data, MAX_PIXELS, "fuzz", untrusted=untrusted)
        except InputError as exc:
            assert str(exc).startswith("fuzz: ")
            return
        _check_image(image)

    decodes_or_refuses()


def test_a_trusted_header_opencv_reads_itself_cannot_make_it_allocate_gigabytes():
    """A PGM whose header emolens does not parse declares 12000x12000 pixels: OpenCV refuses it
    from its header (OPENCV_IO_MAX_IMAGE_PIXELS, set by emolens before cv2 loads) instead of
    allocating 144 MB per channel first (its own default allows 2**30 pixels)."""
    # a process of its own: OpenCV reads the limit once, when it loads, and this test process
    # may have loaded it before emolens
    script = (
        "from emolens.media import decode_image\n"
        "from emolens.errors import InputError\n"
        "try:\n"
        "    decode_image(b'P5\\n12000 12000\\n255\\n' + bytes(64), 10**9, 'big')\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert "declares more pixels than OPENCV_IO_MAX_IMAGE_PIXELS allows" in done.stdout, done.stdout + done.stderr


def test_read_image(image_seeds, tmp_path):
    path = tmp_path / "input.img"

    @settings(FUZZ, max_examples=1500)
    @given(data=st.binary(max_size=512) | mutated(image_seeds))
    @example(data=b"")
    def reads_or_refuses(data: bytes) -> None:
        CASES["read_image"] += 1
        path.write_bytes(data)
        try:
            image = read_image(path, MAX_PIXELS)
        except InputError as exc:
            assert str(exc).startswith(str(path))
            return
        _check_image(image)

    reads_or_refuses()


# ---------------------------------------------------------------- video decoding


@pytest.fixture(scope="module")
def video_seeds(tmp_path_factory) -> dict[str, bytes]:
    """Two tiny clips cv2 writes here: an MJPEG AVI and an MPEG-4 part 2 MP4, 6 frames each."""
    out: dict[str, bytes] = {}
    folder = tmp_path_factory.mktemp("videos")
    for ext, fourcc in ((".avi", "MJPG"), (".mp4", "mp4v")):
        path = folder / f"seed{ext}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10, (48, 32))
        assert writer.isOpened()
        for i in range(6):
            writer.write(np.roll(_image(48, 32), 4 * i, axis=1))
        writer.release()
        out[ext] = path.read_bytes()
        assert len(list(iter_video(str(path)))) == 6
    return out


def test_iter_video(video_seeds, tmp_path):
    seeds = [(ext, data) for ext, data in video_seeds.items()]

    @st.composite
    def videos(draw: st.DrawFn) -> tuple[str, bytes]:
        ext, data = draw(st.sampled_from(seeds))
        if draw(st.booleans()):
            return ext, data[: draw(st.integers(0, len(data)))]  # truncated: the common case
        return ext, _mutate(draw, data)

    @settings(FUZZ, max_examples=500)
    @given(video=videos(), fps=st.none() | st.floats(0.1, 60))
    def frames_or_refuses(video: tuple[str, bytes], fps: float | None) -> None:
        CASES["iter_video"] += 1
        ext, data = video
        path = tmp_path / f"clip{ext}"
        path.write_bytes(data)
        try:
            frames = list(iter_video(str(path), fps))
        except InputError as exc:
            assert str(exc).startswith(str(path))
            return
        assert 1 <= len(frames) <= 64
        for f in frames:
            assert f.image.ndim == 3 and f.image.dtype == np.uint8 and f.image.shape[0] * f.image.shape[1] <= MAX_PIXELS
            assert math.isfinite(f.timestamp) and f.timestamp >= 0

    frames_or_refuses()


# ---------------------------------------------------------------- messages through the real stages

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _timestamps() -> st.SearchStrategy[object]:
    """Valid times (2000-01-01 to T0), times a frame may not carry (emolens.settings.check_time),
    and the out-of-range seconds and nanos a protobuf Timestamp can still carry."""
    return st.one_of(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=T0.replace(tzinfo=None), timezones=st.just(UTC)),
        st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**31), 2**31 - 1)),
    )


def _set_time(field, value) -> None:
    if isinstance(value, datetime):
        field.CopyFrom(to_timestamp(value))
    else:
        field.seconds, field.nanos = value


FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
TEXT = st.text(max_size=140) | st.sampled_from(("", "cam-1", "\x00", "x" * 128, "x" * 129, "é" * 70))


@st.composite
def frame_messages(draw: st.DrawFn, jpegs: list[bytes]) -> bytes:
    """A ``Frame`` built from random fields (images valid, mutated or random), a mutated valid
    one, or random bytes."""
    kind = draw(st.sampled_from(("fields", "mutated", "bytes")))
    if kind == "bytes":
        return draw(st.binary(max_size=256))
    msg = frames_pb2.Frame(
        camera_id="cam-fuzz",
        frame_seq=draw(st.integers(0, 2**64 - 1)),
        jpeg=draw(st.sampled_from(jpegs)),
        width=128,
        height=128,
    )
    _set_time(msg.captured_at, T0)
    if kind == "mutated":
        return _mutate(draw, msg.SerializeToString())
    msg.camera_id = draw(TEXT)
    msg.zone, msg.site = draw(TEXT), draw(TEXT)
    msg.width, msg.height = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    msg.jpeg = draw(st.sampled_from(jpegs) | mutated(jpegs) | st.binary(max_size=64))
    _set_time(msg.captured_at, draw(_timestamps()))
    return msg.SerializeToString()


def _face_pb(draw: st.DrawFn) -> observations_pb2.Face:
    face = observations_pb2.Face(
        box=observations_pb2.Box(x0=draw(FLOATS), y0=draw(FLOATS), x1=draw(FLOATS), y1=draw(FLOATS)),
        detection_score=draw(FLOATS),
        quality=draw(FLOATS),
        low_quality=draw(st.booleans()),
        smile=draw(FLOATS),
        emotions=draw(st.lists(FLOATS, min_size=6, max_size=8) | st.lists(st.floats(0, 1), min_size=7, max_size=7)),
        label=draw(TEXT),
        yaw_deg=draw(FLOATS),
    )
    if draw(st.booleans()):
        face.track_id = draw(st.integers(-(2**63), 2**63 - 1))
    return face


def _valid_observations(seq: int) -> observations_pb2.FrameObservations:
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs["happy"] = 1.0
    face = FaceResult((0, 0, 9, 9), [(0, 0)] * 6, 0.9, 0.8, False, 0.7, probs, track_id=seq % 5)
    return observations_to_pb(FrameObservations("cam-obs", seq, T0 + timedelta(seconds=seq), [face]), "z", "s")


def _poisoned_observations() -> bytes:
    """Found by this fuzzer: a NaN probability was stored as NULL, which the column refuses, so
    the aggregator's batch failed on every redelivery (now refused by validate: a dead letter)."""
    msg = _valid_observations(7)
    msg.faces[0].emotions[2] = math.nan
    return msg.SerializeToString()


@st.composite
def observation_messages(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(("valid", "fields", "mutated", "bytes")))
    if kind == "bytes":
        return draw(st.binary(max_size=256))
    msg = _valid_observations(draw(st.integers(0, 10**6)))
    if kind == "valid":
        return msg.SerializeToString()
    if kind == "mutated":
        return _mutate(draw, msg.SerializeToString())
    msg.camera_id = draw(TEXT)
    msg.zone, msg.site = draw(TEXT), draw(TEXT)
    msg.frame_seq = draw(st.integers(0, 2**64 - 1))
    _set_time(msg.captured_at, draw(_timestamps()))
    del msg.faces[:]
    msg.faces.extend(_face_pb(draw) for _ in range(draw(st.integers(0, 3))))
    return msg.SerializeToString()


class Topic:
    """New messages on one topic of the memory bus, as a consumer group of their own sees them."""

    def __init__(self, bus: MemoryBus, topic: str) -> None:
        self._consumer = bus.consumer([topic], f"fuzz-{topic}")

    def new(self) -> list[bytes]:
        return [m.value for m in self._consumer.poll(0.0, 10_000)]


def test_detector_frames(astronaut):
    """Every frame message is either analysed (one observations message out) or dead-lettered,
    and the detector never raises."""
    settings_ = Settings.from_env(inference=f"onnx://{MODEL_REPO}", max_pixels=MAX_PIXELS)
    bus = MemoryBus()
    detector = Detector(bus, settings_, make_classifier(settings_.inference))
    out, dead = Topic(bus, OBSERVATIONS_TOPIC), Topic(bus, dead_letter_topic(FRAMES_TOPIC))
    jpegs = [_face_jpeg(astronaut), _encode(".jpg", _image(40, 30)), _encode(".png", _image(16, 16, 1))]
    tally = Counter[str]()

    @settings(FUZZ, max_examples=2500)
    @given(payload=frame_messages(jpegs))
    @example(payload=frames_pb2.Frame(camera_id="c", jpeg=jpegs[0], captured_at={"seconds": 2**62}).SerializeToString())
    @example(payload=frames_pb2.Frame(camera_id="c", jpeg=jpegs[0], captured_at={"nanos": -1}).SerializeToString())
    def analysed_or_dead_lettered(payload: bytes) -> None:
        CASES["detector_frames"] += 1
        bus.publish(FRAMES_TOPIC, "cam-fuzz", payload)
        assert detector.step(timeout_s=0.0) == 1
        analysed, dead_lettered = out.new(), dead.new()
        assert (len(analysed), len(dead_lettered)) in ((1, 0), (0, 1))
        # the message's metadata as it came, for whoever inspects it, without its pixels
        assert dead_lettered in ([], [without_pixels(payload)])
        tally["analysed" if analysed else "dead"] += 1
        for value in analysed:
            obs = observations_pb2.FrameObservations.FromString(value)
            assert obs.camera_id and len(obs.faces) <= 1000

    analysed_or_dead_lettered()
    assert tally["analysed"] > 100 and tally["dead"] > 100, tally  # both paths were exercised


def test_aggregator_observations(tmp_path):
    """Every observations message is stored or dead-lettered, the aggregator never raises, and
    the SQL store holds exactly the distinct frames of the messages it did not dead-letter."""
    store = SqlStore(f"sqlite:///{tmp_path / 'fuzz.db'}")
    store.ensure_camera(Camera("cam-obs", "z", "s"))  # the valid messages' camera; random ones are undeclared
    bus = MemoryBus()
    aggregator = Aggregator(bus, store, MemoryLiveState())
    dead = Topic(bus, dead_letter_topic(OBSERVATIONS_TOPIC))
    accepted: set[tuple[str, int]] = set()
    tally = Counter[str]()

    def stored_frames() -> int:
        return sum(b.frames for b in store.buckets())

    @settings(FUZZ, max_examples=3000)
    @given(payload=observation_messages())
    @example(payload=_valid_observations(1).SerializeToString())
    @example(payload=_poisoned_observations())
    @example(payload=observations_pb2.FrameObservations(camera_id="c", frame_seq=2**63).SerializeToString())
    def stored_or_dead_lettered(payload: bytes) -> None:
        CASES["aggregator_observations"] += 1
        bus.publish(OBSERVATIONS_TOPIC, "cam-obs", payload)
        assert aggregator.step(timeout_s=0.0) == 1
        if dead.new():
            tally["dead"] += 1
        else:
            msg = observations_pb2.FrameObservations.FromString(payload)
            accepted.add((msg.camera_id, msg.frame_seq))
            tally["stored"] += 1
        assert stored_frames() == len(accepted)

    try:
        stored_or_dead_lettered()
        assert tally["stored"] > 100 and tally["dead"] > 100, tally
        cameras = {c.camera_id for c in store.cameras()}
        assert {camera for camera, _ in accepted} <= cameras
    finally:
        store.close()


# ---------------------------------------------------------------- the gateway's gRPC methods

# What a bad request may be answered with: never UNKNOWN or INTERNAL (a bug, or a message that
# may carry internals), and never a hang.
ACCEPTABLE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
METHODS = ("AnalyzeImage", "AnalyzeStream", "QueryStats", "WatchLive")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, astronaut) -> Iterator[tuple[analytics_pb2_grpc.AnalyticsStub, grpc.Channel]]:
    """A real gateway on loopback, built as tests/unit/test_gateway.py builds it."""
    from emolens.services.gateway import AnalyticsService, build_server

    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('gwfuzz') / 'g.db'}")
    store.ensure_camera(Camera("cam-a", "entrance", "mall"))
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs["happy"] = 1.0
    faces = [FaceResult((0, 0, 9, 9), [(0, 0)] * 6, 0.9, 0.9, False, 0.9, probs, track_id=t) for t in range(6)]
    store.apply([FrameObservations("cam-a", i, T0 + timedelta(seconds=20 * i), faces) for i in range(6)])
    live = MemoryLiveState()
    live.add([FrameObservations("cam-a", 0, T0, faces)])
    settings_ = Settings.from_env(inference=f"onnx://{MODEL_REPO}", k_anonymity=5, max_pixels=MAX_PIXELS)
    server, port = build_server(AnalyticsService(settings_, store, live), "127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield analytics_pb2_grpc.AnalyticsStub(channel), channel
    channel.close()
    server.stop(0)
    store.close()


def _status(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _alive(stub: analytics_pb2_grpc.AnalyticsStub) -> None:
    """The server still answers a good call after whatever came before."""
    resp = stub.QueryStats(analytics_pb2.QueryStatsRequest(camera_id="cam-a"), timeout=10)
    assert resp.k_anonymity == 5 and len(resp.buckets) == 2


@pytest.fixture(scope="module")
def gateway_images(astronaut, image_seeds, headerless_seeds) -> list[bytes]:
    return [_face_jpeg(astronaut), *image_seeds, *headerless_seeds]


def test_gateway_analyze_image(gateway, gateway_images):
    stub, _ = gateway
    codes = Counter[str]()

    @settings(FUZZ, max_examples=1500, deadline=timedelta(seconds=20))
    @given(image=st.binary(max_size=512) | mutated(gateway_images) | st.sampled_from(gateway_images))
    def answers(image: bytes) -> None:
        CASES["gateway_analyze_image"] += 1
        code = _status(lambda: stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=image), timeout=15))
        codes[code.name] += 1
        assert code == grpc.StatusCode.OK or code in ACCEPTABLE, code

    answers()
    assert codes["OK"] and codes["INVALID_ARGUMENT"], codes
    _alive(stub)


def test_gateway_analyze_stream(gateway, gateway_images):
    stub, _ = gateway

    @settings(FUZZ, max_examples=500, deadline=timedelta(seconds=30))
    @given(
        frames=st.lists(
            st.tuples(st.binary(max_size=128) | mutated(gateway_images), st.integers(0, 2**64 - 1)),
            min_size=0,
            max_size=3,
        )
    )
    def answers(frames: list[tuple[bytes, int]]) -> None:
        CASES["gateway_analyze_stream"] += 1
        requests = [analytics_pb2.StreamFrame(image=image, frame_seq=seq) for image, seq in frames]
        results: list[analytics_pb2.StreamResult] = []
        code = _status(lambda: results.extend(stub.AnalyzeStream(iter(requests), timeout=20)))
        assert code == grpc.StatusCode.OK or code in ACCEPTABLE, code
        # results come back in order, one per frame, until the first refused frame
        assert [r.frame_seq for r in results] == [seq for _, seq in frames[: len(results)]]
        if code == grpc.StatusCode.OK:
            assert len(results) == len(frames)

    answers()
    _alive(stub)


def test_gateway_query_stats(gateway):
    stub, _ = gateway

    @settings(FUZZ, max_examples=1500)
    @given(
        camera_id=TEXT | st.just("cam-a"),
        zone=TEXT | st.just("entrance"),
        site=TEXT | st.just("mall"),
        since=st.none() | _timestamps(),
        until=st.none() | _timestamps(),
    )
    @example(camera_id="cam-a", zone="", site="", since=(2**62, 0), until=None)  # far past year 9999
    @example(camera_id="", zone="", site="", since=None, until=(0, -1))  # negative nanos
    def answers(camera_id: str, zone: str, site: str, since, until) -> None:
        CASES["gateway_query_stats"] += 1
        request = analytics_pb2.QueryStatsRequest(camera_id=camera_id, zone=zone, site=site)
        for field, value in (("since", since), ("until", until)):
            if value is not None:
                _set_time(getattr(request, field), value)
        code = _status(lambda: stub.QueryStats(request, timeout=10))
        assert code == grpc.StatusCode.OK or code in ACCEPTABLE, code

    answers()
    _alive(stub)


def test_gateway_watch_live(gateway):
    """WatchLive with random camera ids, each call with a short deadline of its own: the client
    gets DEADLINE_EXCEEDED in time, and the server ends its loop with the call (else the stream
    slots, four per client, would stay taken and the last call be RESOURCE_EXHAUSTED)."""
    stub, _ = gateway

    def watch(camera_id: str, deadline_s: float) -> tuple[grpc.StatusCode, float, list[analytics_pb2.LiveCounters]]:
        got: list[analytics_pb2.LiveCounters] = []
        t0 = time.monotonic()
        request = analytics_pb2.WatchLiveRequest(camera_id=camera_id)
        code = _status(lambda: got.extend(stub.WatchLive(request, timeout=deadline_s)))
        return code, time.monotonic() - t0, got

    @settings(FUZZ, max_examples=60, deadline=timedelta(seconds=10))
    @given(camera_id=TEXT | st.just("cam-a"), deadline_s=st.floats(0.05, 0.4))
    def answers(camera_id: str, deadline_s: float) -> None:
        CASES["gateway_watch_live"] += 1
        code, elapsed, got = watch(camera_id, deadline_s)
        assert code in ACCEPTABLE, code  # the stream never ends by itself: it is cut or refused
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            assert elapsed < deadline_s + 1.0
        assert all(c.camera_id == (camera_id or c.camera_id) for c in got)

    answers()
    time.sleep(0.5)  # a handler notices a cut call within one poll period (0.2 s)
    code, elapsed, got = watch("cam-a", 0.3)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and elapsed < 1.3 and got[0].frames == 1
    _alive(stub)


def test_gateway_deadlines_are_honoured(gateway, astronaut):
    """A client's deadline, shorter than the work, ends the call in time with DEADLINE_EXCEEDED;
    the server goes on serving."""
    stub, _ = gateway
    face = _face_jpeg(astronaut, 256)

    def slow_frames() -> Iterator[analytics_pb2.StreamFrame]:
        yield analytics_pb2.StreamFrame(image=face, frame_seq=1)
        time.sleep(3)  # a client that stalls mid-stream
        yield analytics_pb2.StreamFrame(image=face, frame_seq=2)

    for call, deadline_s in (
        (lambda t: stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=face), timeout=t), 0.002),
        (lambda t: list(stub.AnalyzeStream(slow_frames(), timeout=t)), 0.5),
        (lambda t: list(stub.WatchLive(analytics_pb2.WatchLiveRequest(), timeout=t)), 0.3),
    ):
        t0 = time.monotonic()
        assert _status(lambda c=call, t=deadline_s: c(t)) == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < deadline_s + 1.0
    _alive(stub)


def _request_seeds(image: bytes) -> dict[str, bytes]:
    """One valid serialized request per method (a stream's is its first message)."""
    return {
        "AnalyzeImage": analytics_pb2.AnalyzeImageRequest(image=image).SerializeToString(),
        "AnalyzeStream": analytics_pb2.StreamFrame(image=image, frame_seq=7).SerializeToString(),
        "QueryStats": analytics_pb2.QueryStatsRequest(
            camera_id="cam-a", since=to_timestamp(T0), until=to_timestamp(T0 + timedelta(hours=1))
        ).SerializeToString(),
        "WatchLive": analytics_pb2.WatchLiveRequest(camera_id="cam-a").SerializeToString(),
    }


REQUEST_TYPES = {
    "AnalyzeImage": analytics_pb2.AnalyzeImageRequest,
    "AnalyzeStream": analytics_pb2.StreamFrame,
    "QueryStats": analytics_pb2.QueryStatsRequest,
    "WatchLive": analytics_pb2.WatchLiveRequest,
}
# grpc answers bytes its request deserializer cannot parse before any interceptor runs, with
# INTERNAL "Exception deserializing request!" (test_gateway_unparsable_request_is_invalid_argument).


def _raw_call(channel: grpc.Channel, method: str, payload: bytes) -> grpc.RpcError | None:
    """``payload`` as the request bytes of ``method``, past any client-side serializer."""
    streaming_request = method == "AnalyzeStream"
    streaming_response = method in ("AnalyzeStream", "WatchLive")
    kind = f"{'stream' if streaming_request else 'unary'}_{'stream' if streaming_response else 'unary'}"
    call = getattr(channel, kind)(
        f"/emolens.v1.Analytics/{method}", request_serializer=None, response_deserializer=None
    )
    try:
        response = call(iter([payload]) if streaming_request else payload, timeout=0.5 if method == "WatchLive" else 15)
        if streaming_response:
            list(response)
    except grpc.RpcError as exc:
        return exc
    return None


@pytest.mark.parametrize("method", METHODS)
def test_gateway_raw_request_bytes(gateway, astronaut, method):
    """Random and mutated request bytes, sent as they are: every answer OK or a status the
    caller can act on; bytes no protobuf parser accepts are INVALID_ARGUMENT."""
    stub, channel = gateway
    seed = _request_seeds(_face_jpeg(astronaut))[method]
    codes = Counter[str]()

    @settings(
        FUZZ, max_examples={"WatchLive": 40, "AnalyzeStream": 100}.get(method, 300), deadline=timedelta(seconds=20)
    )
    @given(payload=st.binary(max_size=256) | mutated([seed]))
    def answers(payload: bytes) -> None:
        CASES["gateway_raw_request_bytes"] += 1
        error = _raw_call(channel, method, payload)
        code = grpc.StatusCode.OK if error is None else error.code()
        try:
            REQUEST_TYPES[method].FromString(payload)
        except Exception:  # whatever the parser raises, grpc's raises too
            assert code == grpc.StatusCode.INVALID_ARGUMENT, code
            codes["unparsable"] += 1
            return
        codes[code.name] += 1
        assert code == grpc.StatusCode.OK or code in ACCEPTABLE, (payload, code)

    answers()
    assert sum(n for name, n in codes.items() if name != "unparsable") > 0, codes  # some parsed
    _alive(stub)


@pytest.mark.parametrize("method", METHODS)
def test_gateway_unparsable_request_is_invalid_argument(gateway, method):
    """Found by fuzzing: a request that is not the method's message at all (a field of wire type
    7) is the caller's mistake, INVALID_ARGUMENT, not INTERNAL."""
    _, channel = gateway
    error = _raw_call(channel, method, b"\xff\xff\xff")
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error and error.code()


# ---------------------------------------------------------------- atheris: coverage-guided


def test_atheris_decode_image(tmp_path, image_seeds):
    """One short, bounded coverage-guided run (libFuzzer via atheris) of decode_image, seeded
    with the valid images; any exception but InputError is a crash."""
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(image_seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    script = textwrap.dedent(
        f"""
        import sys
        import atheris
        with atheris.instrument_imports():
            from emolens.errors import InputError
            from emolens.media import decode_image

        def one(data):
            untrusted = bool(data[:1]) and data[0] & 1
            try:
                decode_image(data, {MAX_PIXELS}, untrusted=untrusted)
            except InputError:
                pass

        atheris.Setup(sys.argv, one)
        atheris.Fuzz()
        """
    )
    runs = 3000
    # Linux carries a process's peak RSS across fork and exec, and libFuzzer's limit reads that
    # peak: the child starts out "using" what this pytest process holds (about 3 GB late in the
    # suite, which tripped a flat 2 GB limit). So the limit is 2 GB above that.
    import resource

    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            f"-runs={runs}",
            "-max_total_time=40",
            "-max_len=4096",
            f"-artifact_prefix={tmp_path}/",
            f"-rss_limit_mb={inherited_mb + 2048}",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = [line for line in proc.stderr.splitlines() if line.startswith("Done ")]
    assert done, proc.stderr[-2000:]
    CASES["atheris_decode_image"] += int(done[-1].split()[1])  # "Done 3000 runs in 12 second(s)"


def test_fuzz_case_total():
    """Run last: when every target ran, hypothesis alone tried at least TOTAL_CASES inputs
    (atheris, where it installs, adds its own)."""
    missing = [t for t in TARGETS if t not in CASES and t != "atheris_decode_image"]
    if missing:
        pytest.skip(f"not every target ran ({', '.join(missing)})")
    assert sum(n for name, n in CASES.items() if not name.startswith("atheris")) >= TOTAL_CASES, dict(CASES)
