"""The services as real processes over a real Kafka-protocol broker, Triton, PostgreSQL and
Redis: ingest -> Kafka -> detect (Triton) -> Kafka -> aggregate (PostgreSQL, Redis) must give
the same buckets as `emolens run` in the embedded shape, and QueryStats must return them."""

import os
import subprocess
import sys
import time

import pytest

from emolens.live import RedisLiveState
from emolens.store import SqlStore
from tests.conftest import MODEL_REPO

START = "2026-04-01T10:00:58"  # the 4 s clip straddles a minute boundary


def emolens(*args, env=None, timeout=300):
    proc = subprocess.run(
        [sys.executable, "-m", "emolens", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def embedded_buckets(demo_clip, tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('emb') / 'e.db'}"
    emolens(
        "run",
        "--source",
        str(demo_clip),
        "--camera-id",
        "cam-e2e",
        "--db",
        db,
        "--fps",
        "10",
        "--start",
        START,
        "--inference",
        f"onnx://{MODEL_REPO}",
    )
    return SqlStore(db).buckets()


def test_services_match_embedded(demo_clip, kafka_url, postgres_url, redis_url, triton_url, embedded_buckets):
    """Embedded: ONNX Runtime in-process, SQLite. Distributed: Kafka, Triton, PostgreSQL, Redis."""
    env = {**os.environ, "EMOLENS_BUS": kafka_url, "EMOLENS_INFERENCE": triton_url}
    ingest = ["ingest", "--source", str(demo_clip), "--camera-id", "cam-e2e", "--zone", "door", "--site", "hq"]
    ingest += ["--fps", "10", "--start", START, "--seq-start", "5000", "--db", postgres_url]  # declares the camera
    emolens(*ingest, env=env)
    emolens("detect", "--idle-exit", "8", env=env)
    emolens("aggregate", "--db", postgres_url, "--live", redis_url, "--idle-exit", "8", env=env)

    store = SqlStore(postgres_url)
    got = store.buckets(camera_id="cam-e2e")
    assert len(got) == len(embedded_buckets) == 2
    for a, b in zip(got, embedded_buckets, strict=True):
        assert (a.minute, a.frames, a.faces, a.tracks, a.low_quality, a.smiles, a.counts) == (
            b.minute,
            b.frames,
            b.faces,
            b.tracks,
            b.low_quality,
            b.smiles,
            b.counts,
        )
        assert a.smile_sum == pytest.approx(b.smile_sum, abs=1e-3)
        for e in a.prob_sums:
            assert a.prob_sums[e] == pytest.approx(b.prob_sums[e], abs=1e-3)
    assert sum(b.frames for b in got) == 40
    (cam,) = [c for c in store.cameras() if c.camera_id == "cam-e2e"]
    assert (cam.zone, cam.site) == ("door", "hq")
    live = RedisLiveState(redis_url).get("cam-e2e")
    assert live.frames == 40 and live.faces == sum(b.faces for b in got)

    # redelivery: the same frames (same sequence numbers) published again are analysed again,
    # but the aggregator's idempotent upsert counts each frame once
    emolens(*ingest, env=env)
    emolens("detect", "--idle-exit", "8", env=env)
    emolens("aggregate", "--db", postgres_url, "--idle-exit", "8", env=env)
    again = store.buckets(camera_id="cam-e2e")
    assert [(b.frames, b.faces, b.tracks) for b in again] == [(b.frames, b.faces, b.tracks) for b in got]


def test_query_stats_over_grpc_returns_the_buckets(postgres_url, triton_url):
    """The gateway on the distributed stack answers from the PostgreSQL buckets written above."""
    import grpc

    from emolens.services.gateway import AnalyticsService, build_server
    from emolens.settings import Settings
    from emolens.v1 import analytics_pb2, analytics_pb2_grpc

    store = SqlStore(postgres_url)
    expected = store.buckets(camera_id="cam-e2e")
    assert expected, "run after test_services_match_embedded"
    settings = Settings.from_env(inference=triton_url, db=postgres_url, k_anonymity=1)
    server, port = build_server(AnalyticsService(settings, store, None), "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            resp = analytics_pb2_grpc.AnalyticsStub(channel).QueryStats(
                analytics_pb2.QueryStatsRequest(camera_id="cam-e2e", site="hq"), timeout=10
            )
    finally:
        server.stop(0)
    assert [(b.frames, b.faces, b.tracks, b.smiles) for b in resp.buckets] == [
        (b.frames, b.faces, b.tracks, b.smiles) for b in expected
    ]
    assert [b.smile_sum for b in resp.buckets] == pytest.approx([b.smile_sum for b in expected])


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """A /metrics page as {(sample name, its labels): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(page: dict, name: str, **labels: str) -> float:
    return page[(name, frozenset(labels.items()))]


def test_running_detector_and_aggregator_serve_their_metrics(
    demo_clip, kafka_url, postgres_url, redis_url, triton_url, tmp_path
):
    """/metrics of a detector and an aggregator while they run (EMOLENS_METRICS_PORT): the
    frames and faces they handled, their consumer lag (back to 0 once they caught up: both
    stages set it after each poll) and readiness."""
    from emolens_tools import dev

    env = {"EMOLENS_BUS": kafka_url, "EMOLENS_INFERENCE": triton_url, "EMOLENS_DB": postgres_url}
    env["EMOLENS_LIVE"] = redis_url
    ports = {"detect": dev.free_port(), "aggregate": dev.free_port()}
    services = [
        dev.start_emolens(name, [name], {**env, "EMOLENS_METRICS_PORT": str(port)}, tmp_path / name)
        for name, port in ports.items()
    ]
    store = SqlStore(postgres_url)

    def caught_up() -> bool:
        stored = sum(b.frames for b in store.buckets(camera_id="cam-metrics"))
        det, agg = scrape(ports["detect"]), scrape(ports["aggregate"])
        lags = (
            sample(det, "emolens_consumer_lag", stage="detector"),
            sample(agg, "emolens_consumer_lag", stage="aggregator"),
        )
        return stored == 40 and lags == (0, 0)

    try:
        ingest = ["ingest", "--source", str(demo_clip), "--camera-id", "cam-metrics", "--fps", "10"]
        emolens(*ingest, "--start", START, "--seq-start", "7000", env={**os.environ, **env})
        deadline = time.monotonic() + 240
        while not _quietly(caught_up):
            assert time.monotonic() < deadline, "the services did not store the frames and catch up in time"
            time.sleep(0.5)
        det, agg = scrape(ports["detect"]), scrape(ports["aggregate"])
    finally:
        for svc in services:
            dev.stop(svc)
    faces = sum(b.faces for b in store.buckets(camera_id="cam-metrics"))
    assert faces > 0
    assert sample(det, "emolens_frames_total", stage="detector", direction="in") >= 40
    assert sample(det, "emolens_frames_total", stage="detector", direction="out") == sample(
        det, "emolens_frames_total", stage="detector", direction="in"
    )
    assert sample(det, "emolens_faces_total", stage="detector") >= faces
    assert sample(agg, "emolens_frames_total", stage="aggregator", direction="out") >= 40
    assert sample(agg, "emolens_faces_total", stage="aggregator") >= faces
    for page, stage in ((det, "detector"), (agg, "aggregator")):
        assert sample(page, "emolens_ready", stage=stage) == 1
        assert sample(page, "emolens_batch_seconds_count", stage=stage) >= 1


def _quietly(check) -> bool:
    """``check()``, False while what it reads is not there yet (a port not open, a gauge unset)."""
    try:
        return bool(check())
    except (OSError, KeyError):
        return False
