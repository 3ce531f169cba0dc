"""Partner queries on the real stack (docs/reliability.md, "Partner queries"): QueryStats on a
real PostgreSQL with a real Redis behind the gateway, as `emolens gateway --db ... --live ...`
builds it: minute granularity, bad enums and NULs, ids of any length, and Redis down or frozen."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from emolens.live import make_live_state
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.services.gateway import LIVE_RETRY_AFTER_S, LIVE_TIMEOUT_S, AnalyticsService, build_server
from emolens.settings import Settings
from emolens.store import Camera, SqlStore
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens.wire import to_timestamp
from emolens_tools import dev
from tests.conftest import MODEL_REPO

T0 = datetime(2026, 4, 5, 6, 0, tzinfo=UTC)
K = 5


def _face(track: int) -> FaceResult:
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs["happy"] = 1.0
    return FaceResult((0, 0, 9, 9), [(0, 0)] * 6, 0.9, 0.9, False, 0.9, probs, track_id=track)


@pytest.fixture(scope="module")
def redis_svc(services_dir):
    """A Redis of this module's own: the tests freeze and stop it."""
    svc = dev.start_redis(services_dir / "redis-query-stats")
    yield svc
    with contextlib.suppress(ProcessLookupError):
        os.kill(svc.pid, signal.SIGCONT)
    dev.stop(svc)


@pytest.fixture(scope="module")
def gateway(postgres_url, redis_svc):
    store = SqlStore(postgres_url)
    store.ensure_camera(Camera("qs-cam", "qs-zone", "qs-site"))
    # 3 minutes of 6 distinct faces each: above k, so every minute is shown
    frames = [
        FrameObservations("qs-cam", i, T0 + timedelta(seconds=20 * i), [_face(t) for t in range(6)]) for i in range(9)
    ]
    store.apply(frames)
    live = make_live_state(redis_svc.url, timeout_s=LIVE_TIMEOUT_S)  # as cmd_gateway makes it
    live.add(frames[:1])
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", k_anonymity=K, health_interval=60.0)
    server, port = build_server(AnalyticsService(settings, store, live), "127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield analytics_pb2_grpc.AnalyticsStub(channel)
    channel.close()
    server.stop(0)
    with store.engine.begin() as conn:
        for table in (
            "bucket_tracks",
            "frames_seen_blocks",
            "minute_buckets",
            "rollup_hourly_tracks",
            "rollup_daily_tracks",
            "rollup_hourly",
            "rollup_daily",
            "visitor_timelines",
            "cameras",
        ):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE camera_id = 'qs-cam'")
    store.close()


def _request(**fields) -> analytics_pb2.QueryStatsRequest:
    req = analytics_pb2.QueryStatsRequest(**fields)
    req.since.CopyFrom(to_timestamp(T0))
    req.until.CopyFrom(to_timestamp(T0 + timedelta(hours=1)))
    return req


def _code(call) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_minute_granularity_answers_on_postgres(gateway):
    """Was INTERNAL on PostgreSQL: "Unknown PG numeric type: 25" (an untyped NULL for the dwell
    time, which minutes do not keep)."""
    resp = gateway.QueryStats(_request(granularity=analytics_pb2.GRANULARITY_MINUTE, camera_id="qs-cam"), timeout=10)
    assert [r.period_start.ToDatetime(tzinfo=UTC) for r in resp.rows] == [T0 + timedelta(minutes=m) for m in range(3)]
    assert all(r.frames == 3 and r.visitors == 6 and not r.HasField("mean_dwell_s") for r in resp.rows)
    hourly = gateway.QueryStats(_request(granularity=analytics_pb2.GRANULARITY_HOUR, camera_id="qs-cam"), timeout=10)
    assert [r.frames for r in hourly.rows] == [9]


@pytest.mark.parametrize(
    "fields",
    [
        {"granularity": 7},
        {"granularity": analytics_pb2.GRANULARITY_HOUR, "group_by": 9},
        {"granularity": analytics_pb2.GRANULARITY_HOUR, "site": "qs\x00site"},
        {"zone": "qs\x00zone"},
        {"camera_id": "qs\x00cam"},
    ],
    ids=["granularity", "group_by", "nul-site", "nul-zone", "nul-camera"],
)
def test_unknown_enums_and_nuls_are_invalid_argument(gateway, fields):
    """Were INTERNAL (a KeyError; PostgreSQL refusing a NUL in a text parameter), or for an
    unknown group_by a silent answer grouped by camera."""
    code, details = _code(lambda: gateway.QueryStats(_request(**fields), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "NUL" in details or "none of" in details


@pytest.mark.parametrize("length", [7_000, 100_000])
def test_long_ids_are_cut_in_answers_and_logs(gateway, caplog, length):
    """A 7 KB id came back whole; a 100 KB one broke the response and wrote a 100 KB log line."""
    caplog.set_level(logging.DEBUG)
    for field in ("camera_id", "site", "zone"):
        code, details = _code(lambda f=field: gateway.QueryStats(_request(**{f: "x" * length}), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert f"{length:,} characters" in details and len(details) < 300, details[:300]
    longest = max(len(r.getMessage()) for r in caplog.records)
    assert longest < 500, longest


def test_history_answers_while_redis_is_frozen_then_down(gateway, redis_svc):
    """Historical QueryStats read the live state only to learn cameras it alone knows; it
    failed with Redis down (UNAVAILABLE) or frozen (no answer: DEADLINE_EXCEEDED). Now the live
    read has a short timeout and history answers; only the live fields (WatchLive) degrade."""
    query = _request(granularity=analytics_pb2.GRANULARITY_HOUR, camera_id="qs-cam")
    assert len(gateway.QueryStats(query, timeout=10).rows) == 1
    os.kill(redis_svc.pid, signal.SIGSTOP)  # frozen: it accepts connections and never answers
    try:
        for _ in range(2):  # the first call waits LIVE_TIMEOUT_S, the next skips the live state
            t0 = time.monotonic()
            assert len(gateway.QueryStats(query, timeout=5).rows) == 1
            assert time.monotonic() - t0 < LIVE_TIMEOUT_S + 1.5
        raw = gateway.QueryStats(analytics_pb2.QueryStatsRequest(camera_id="qs-cam"), timeout=5)
        assert len(raw.buckets) == 3
        t0 = time.monotonic()
        code, _ = _code(lambda: list(gateway.WatchLive(analytics_pb2.WatchLiveRequest(camera_id="qs-cam"), timeout=5)))
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert time.monotonic() - t0 < 3  # the live read's timeout, not the caller's deadline
    finally:
        os.kill(redis_svc.pid, signal.SIGCONT)
    dev.stop(redis_svc)  # down: connections refused
    time.sleep(LIVE_RETRY_AFTER_S)  # the gateway asks the live state again
    t0 = time.monotonic()
    assert len(gateway.QueryStats(query, timeout=5).rows) == 1
    assert time.monotonic() - t0 < LIVE_TIMEOUT_S + 1.5
