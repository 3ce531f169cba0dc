"""The services as real processes over a real Kafka-protocol broker, PostgreSQL and Redis:
ingest -> Kafka -> detect -> Kafka -> aggregate must give the same buckets as `emolens run`."""

import os
import subprocess
import sys

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


def test_services_match_embedded(demo_clip, kafka_url, postgres_url, redis_url, embedded_buckets):
    env = {**os.environ, "EMOLENS_BUS": kafka_url, "EMOLENS_INFERENCE": f"onnx://{MODEL_REPO}"}
    ingest = ["ingest", "--source", str(demo_clip), "--camera-id", "cam-e2e", "--zone", "door", "--site", "hq"]
    ingest += ["--fps", "10", "--start", START, "--seq-start", "5000"]
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
