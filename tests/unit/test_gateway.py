"""The gRPC API on loopback: every method and its errors (SQLite store, in-memory live state)."""

from datetime import UTC, datetime, timedelta

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from emolens.live import MemoryLiveState
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.services.gateway import SERVICE_NAME, AnalyticsService, build_server
from emolens.settings import Settings
from emolens.store import Camera, SqlStore
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens.wire import face_from_pb, to_timestamp
from tests.conftest import MODEL_REPO

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def _face(track: int) -> FaceResult:
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs["happy"] = 1.0
    return FaceResult((0, 0, 9, 9), [(0, 0)] * 6, 0.9, 0.9, False, 0.9, probs, track_id=track)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('gw') / 'g.db'}")
    store.ensure_camera(Camera("cam-a", "entrance", "mall"))
    frames = [
        FrameObservations("cam-a", i, T0 + timedelta(seconds=10 * i), [_face(t) for t in range(6)]) for i in range(9)
    ]
    store.apply(frames)
    live = MemoryLiveState()
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", k_anonymity=5)
    server, port = build_server(AnalyticsService(settings, store, live), "127.0.0.1:0", reflection=True)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield analytics_pb2_grpc.AnalyticsStub(channel), channel, live
    channel.close()
    server.stop(0)
    store.close()


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_analyze_image(env, astronaut):
    stub, _, _ = env
    resp = stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=_jpeg(astronaut)), timeout=30)
    assert len(resp.faces) == 1
    face = face_from_pb(resp.faces[0])
    assert face.box[0] < 226 < face.box[2]
    assert sum(face.emotions.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("payload", [b"", b"not an image at all"])
def test_analyze_image_rejects_bad_bytes(env, payload):
    stub, _, _ = env
    with pytest.raises(grpc.RpcError) as err:
        stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=payload), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_analyze_stream_tracks_across_frames(env, astronaut):
    stub, _, _ = env
    frames = [analytics_pb2.StreamFrame(image=_jpeg(np.roll(astronaut, 3 * i, axis=1)), frame_seq=i) for i in range(5)]
    results = list(stub.AnalyzeStream(iter(frames), timeout=60))
    assert [r.frame_seq for r in results] == list(range(5))
    ids = {r.faces[0].track_id for r in results}
    assert len(ids) == 1


def test_query_stats(env):
    stub, _, _ = env
    resp = stub.QueryStats(analytics_pb2.QueryStatsRequest(camera_id="cam-a"), timeout=10)
    assert resp.k_anonymity == 5
    assert [b.minute.ToDatetime() for b in resp.buckets] == [datetime(2026, 5, 1, 9, 0), datetime(2026, 5, 1, 9, 1)]
    first = resp.buckets[0]
    assert (first.suppressed, first.frames, first.faces, first.tracks) == (False, 6, 36, 6)
    assert first.emotion_counts[EMOTIONS.index("happy")] == 36
    by_site = stub.QueryStats(analytics_pb2.QueryStatsRequest(site="mall", zone="entrance"), timeout=10)
    assert len(by_site.buckets) == 2
    window = stub.QueryStats(
        analytics_pb2.QueryStatsRequest(camera_id="cam-a", since=to_timestamp(T0 + timedelta(minutes=1))), timeout=10
    )
    assert len(window.buckets) == 1


def test_query_stats_errors(env):
    stub, _, _ = env
    with pytest.raises(grpc.RpcError) as err:
        stub.QueryStats(analytics_pb2.QueryStatsRequest(camera_id="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    bad = analytics_pb2.QueryStatsRequest(since=to_timestamp(T0), until=to_timestamp(T0 - timedelta(minutes=5)))
    with pytest.raises(grpc.RpcError) as err:
        stub.QueryStats(bad, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_watch_live_pushes_changes(env):
    stub, _, live = env
    live.add([FrameObservations("cam-live", 0, T0, [_face(1)])])
    stream = stub.WatchLive(analytics_pb2.WatchLiveRequest(camera_id="cam-live"), timeout=10)
    first = next(stream)
    assert (first.frames, first.faces, first.smiles) == (1, 1, 1)
    live.add([FrameObservations("cam-live", 1, T0, [_face(1), _face(2)])])
    second = next(stream)
    assert (second.frames, second.faces) == (2, 3)
    assert second.emotion_counts[EMOTIONS.index("happy")] == 3
    stream.cancel()
    with pytest.raises(grpc.RpcError) as err:
        next(stub.WatchLive(analytics_pb2.WatchLiveRequest(camera_id="ghost"), timeout=10))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_and_reflection(env):
    _, channel, _ = env
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE_NAME):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    (resp,) = list(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    )
    names = {s.name for s in resp.list_services_response.service}
    assert SERVICE_NAME in names and "grpc.health.v1.Health" in names
