"""Faults injected into the real distributed stack (Kafka-protocol broker, Triton, PostgreSQL,
Redis, and the emolens services as processes), each compared count for count with a run of the
same recording without faults (docs/reliability.md has the table).

Every scenario runs ingest -> detect -> aggregate on the same 12 s recording for its own camera
id; the fault lands mid-stream (after a third of the frames are stored). Per-track smoothing is
off (``EMOLENS_SMOOTHING=0``) so that a frame's labels do not depend on which detector process
saw the frames before it: a restarted detector then gives the same per-frame answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, make_bus
from emolens.contract import default_repository
from emolens.live import RedisLiveState
from emolens.stages import dead_letter_topic
from emolens.store import SqlStore
from emolens_tools import dev
from tests.integration.conftest import TRITON_VENV, wait_until

pytestmark = pytest.mark.fault

START = "2026-05-04T09:59:30"  # the recording straddles a minute boundary
FPS = "5"


@dataclass
class Stack:
    work: Path
    pg: dev.Service
    pg_port: int
    redis: dev.Service
    redis_port: int
    kafka: dev.Service
    kafka_port: int
    triton: dev.Service
    triton_ports: tuple[int, int]
    triton_repo: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "EMOLENS_BUS": f"kafka://127.0.0.1:{self.kafka_port}",
            "EMOLENS_INFERENCE": f"triton://127.0.0.1:{self.triton_ports[1]}?timeout=1",
            "EMOLENS_DB": f"postgresql+psycopg://emolens@127.0.0.1:{self.pg_port}/emolens",
            "EMOLENS_LIVE": f"redis://127.0.0.1:{self.redis_port}/0",
            "EMOLENS_SMOOTHING": "0",
            "EMOLENS_FPS": FPS,
        }


@pytest.fixture(scope="module")
def stack(services_dir) -> Iterator[Stack]:
    """Servers of its own, on fixed ports, so that each can be stopped and started again."""
    from emolens.inference.triton_repo import write_cpu_repository

    work = services_dir / "faults"  # a folder the postgres user can reach
    work.mkdir()
    pg_port, redis_port, kafka_port = dev.free_port(), dev.free_port(), dev.free_port()
    triton_ports = (dev.free_port(), dev.free_port())
    repo = write_cpu_repository(default_repository(), work / "triton-repo")
    venv = dev.install_triton(TRITON_VENV)
    s = Stack(
        work,
        dev.start_postgres(work / "pg", pg_port),
        pg_port,
        dev.start_redis(work / "redis", redis_port),
        redis_port,
        dev.start_kafka(work / "kafka", kafka_port),
        kafka_port,
        dev.start_triton(work / "triton", repo, venv, triton_ports),
        triton_ports,
        repo,
    )
    SqlStore(s.env["EMOLENS_DB"]).close()  # schema
    yield s
    for svc in (s.triton, s.kafka, s.redis, s.pg):
        dev.stop(svc)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from emolens.demo import write_demo_clip

    return write_demo_clip(tmp_path_factory.mktemp("rec") / "rec.mp4", seconds=12.0, fps=10)


class Run:
    """One camera's pass through the stack, with handles on its service processes."""

    def __init__(self, stack: Stack, camera: str, recording: Path, name: str) -> None:
        self.stack, self.camera, self.recording = stack, camera, recording
        self.logs = stack.work / name
        self.services: dict[str, dev.Service] = {}
        self.ports = {"detect": dev.free_port(), "aggregate": dev.free_port()}
        self.metrics_port = dev.free_port()

    def start(self, service: str, extra_env: dict[str, str] | None = None) -> dev.Service:
        env = {**self.stack.env, "EMOLENS_HEALTH_PORT": str(self.ports[service]), **(extra_env or {})}
        if service == "aggregate":
            env["EMOLENS_METRICS_PORT"] = str(self.metrics_port)
        svc = dev.start_emolens(service, [service], env, self.logs / f"{service}-{time.monotonic_ns()}")
        self.services[service] = svc
        return svc

    def ingest(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "emolens", "ingest", "--source", str(self.recording)]
        cmd += ["--camera-id", self.camera, "--zone", "hall", "--site", "hq", "--start", START]
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **self.stack.env, **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if wait:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out[-2000:]
        return proc

    def stored(self) -> int:
        store = SqlStore(self.stack.env["EMOLENS_DB"], create=False)
        try:
            return sum(b.frames for b in store.buckets(camera_id=self.camera))
        finally:
            store.close()

    def tail_logs(self, lines: int = 15) -> str:
        out = []
        for log in sorted(self.logs.glob("*/*.log")):
            out.append(f"--- {log.parent.name}/{log.name}")
            out += log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def kill(self, service: str) -> None:
        dev.stop(self.services.pop(service), sig=signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.services):
            dev.stop(self.services.pop(name))

    def ready(self, service: str) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{self.ports[service]}") as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        return status == health_pb2.HealthCheckResponse.SERVING


def snapshot(stack: Stack, camera: str) -> dict:
    """The camera's buckets, distinct visitors (per minute, and over the whole run) and live counters."""
    from sqlalchemy import text

    store = SqlStore(stack.env["EMOLENS_DB"], create=False)
    try:
        buckets = store.buckets(camera_id=camera)
        with store.engine.connect() as conn:
            visitors = conn.execute(
                text("SELECT count(DISTINCT track_id) FROM bucket_tracks WHERE camera_id = :c"), {"c": camera}
            ).scalar_one()
    finally:
        store.close()
    live = RedisLiveState(stack.env["EMOLENS_LIVE"]).get(camera)
    return {
        "buckets": [(b.minute, b.frames, b.faces, b.low_quality, b.smiles, dict(b.counts)) for b in buckets],
        "tracks": [b.tracks for b in buckets],
        "visitors": visitors,
        "frames": sum(b.frames for b in buckets),
        "live": (live.frames, live.faces, live.smiles, dict(live.emotions)),
        "sql_totals": (
            sum(b.frames for b in buckets),
            sum(b.faces for b in buckets),
            sum(b.smiles for b in buckets),
            {e: sum(b.counts[e] for b in buckets) for e in buckets[0].counts} if buckets else {},
        ),
    }


def observed(stack: Stack, camera: str) -> list[tuple]:
    """Every frame's faces as the detector emitted them for ``camera`` (the first copy of each
    frame, the one the store keeps), read back from the observations topic: box, quality, the
    low-quality flag, smile and emotions (rounded below the last digits a dynamic batch of
    another size may change), and track ids renumbered by first appearance (a detector numbers
    its tracks from the clock)."""
    from kafka import KafkaConsumer, TopicPartition

    from emolens.v1 import observations_pb2

    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{stack.kafka_port}", group_id=None)
    try:
        tps = [TopicPartition(OBSERVATIONS_TOPIC, p) for p in consumer.partitions_for_topic(OBSERVATIONS_TOPIC)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records = []
        while batch := consumer.poll(timeout_ms=2000):
            records += [r for rs in batch.values() for r in rs]
    finally:
        consumer.close()
    first: dict[int, observations_pb2.FrameObservations] = {}
    for r in sorted(records, key=lambda r: r.offset):  # one camera lies in one partition: its order
        if r.key == camera.encode():
            o = observations_pb2.FrameObservations.FromString(r.value)
            first.setdefault(o.frame_seq, o)
    ids: dict[int, int] = {}
    return [
        (
            seq,
            [
                (
                    tuple(round(v, 1) for v in (f.box.x0, f.box.y0, f.box.x1, f.box.y1)),
                    round(f.quality, 3),
                    f.low_quality,
                    round(f.smile, 3),
                    tuple(round(p, 3) for p in f.emotions),
                    ids.setdefault(f.track_id, len(ids)),
                )
                for f in first[seq].faces
            ],
        )
        for seq in sorted(first)
    ]


def _published(stack: Stack, camera: str, recording: Path) -> int:
    """How many frames a full ingest of the recording publishes (one per sampled position)."""
    from emolens.media import iter_video

    return sum(1 for _ in iter_video(str(recording), float(FPS)))


@pytest.fixture(scope="module")
def baseline(stack, recording) -> dict:
    """The recording through the stack with no fault at all."""
    run = Run(stack, "cam-base", recording, "base")
    run.start("detect")
    run.start("aggregate")
    try:
        run.ingest()
        expected = _published(stack, "cam-base", recording)
        wait_until("baseline stored", lambda: run.stored() == expected)
        time.sleep(1.0)  # the live counters follow the store
    finally:
        run.stop_all()
    snap = snapshot(stack, "cam-base")
    assert snap["frames"] == expected > 30
    assert snap["live"] == snap["sql_totals"]
    return snap


def _line(snap: dict) -> str:
    frames, faces, smiles, _ = snap["sql_totals"]
    lq = sum(b[3] for b in snap["buckets"])
    tracks = sum(snap["tracks"])
    return (
        f"frames {frames}, faces {faces}, low quality {lq}, smiles {smiles}, tracks {tracks} "
        f"({snap['visitors']} distinct), live {snap['live'][:3]}"
    )


def _assert_same(got: dict, want: dict, tracks: str = "equal") -> None:
    # one line per scenario for docs/reliability.md (pytest -s shows it)
    name = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    print(f"\nFAULT-REPORT {name}\n  fault-free: {_line(want)}\n  with fault: {_line(got)}")
    assert got["buckets"] == want["buckets"]  # frames, faces, low quality, smiles, emotion mix per minute
    assert got["live"] == got["sql_totals"]  # live counters agree with SQL, count for count
    if tracks == "equal":
        assert got["tracks"] == want["tracks"]  # distinct visitors
        assert got["visitors"] == want["visitors"]
    elif tracks == "within_one":  # a restarted detector goes on with the ids its predecessor emitted
        assert abs(got["visitors"] - want["visitors"]) <= 1
        assert all(abs(g - w) <= 1 for g, w in zip(got["tracks"], want["tracks"], strict=True))
    else:  # replayed frames reach a tracker out of order: it may add tracks, never lose them
        assert all(g >= w for g, w in zip(got["tracks"], want["tracks"], strict=True))
        assert sum(got["tracks"]) <= sum(want["tracks"]) + 6


@contextmanager
def running(stack: Stack, recording: Path, camera: str, aggregator_env: dict[str, str] | None = None) -> Iterator[Run]:
    """A camera's pass with a detector and an aggregator up; every service it started is stopped after."""
    run = Run(stack, camera, recording, camera)
    run.start("detect")
    run.start("aggregate", aggregator_env)
    try:
        yield run
    finally:
        run.stop_all()


def _mid_stream(run: Run, expected: int) -> None:
    wait_until("a third of the frames stored", lambda: run.stored() >= expected // 3, every_s=0.05)
    assert run.stored() < expected, "the run finished before the fault could land mid-stream"


def _finish(run: Run, expected: int) -> None:
    try:
        wait_until("every frame stored", lambda: run.stored() >= expected)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {run.stored()} of {expected}\n{run.tail_logs()}") from None
    time.sleep(1.5)  # nothing more may arrive, and the live counters settle
    assert run.stored() == expected


def test_detector_killed_mid_stream_and_restarted(stack, recording, baseline):
    """Distinct visitors stay within one of the clean run: the new detector reads back the
    observations its predecessor emitted and goes on with their track ids (before: every face
    in view at the restart got a second id, and the visitors only grew)."""
    expected = baseline["frames"]
    with running(stack, recording, "cam-detector-kill") as run:
        run.ingest()
        _mid_stream(run, expected)
        run.kill("detect")
        run.start("detect")
        _finish(run, expected)
    _assert_same(snapshot(stack, run.camera), baseline, tracks="within_one")


@pytest.mark.parametrize("how", ["kill -9", "between database and offset commit"])
def test_aggregator_killed_mid_stream_and_restarted(stack, recording, baseline, how):
    camera = "cam-agg-kill" if how == "kill -9" else "cam-agg-failpoint"
    expected = baseline["frames"]
    failpoint = {"EMOLENS_FAILPOINT": "aggregator.after_db_commit:1"} if how != "kill -9" else {}
    with running(stack, recording, camera, failpoint) as run:
        agg = run.services["aggregate"]
        run.ingest()
        if failpoint:
            wait_until(
                "the aggregator to die at its failpoint",
                lambda: (
                    not Path(f"/proc/{agg.pid}").exists() or Path(f"/proc/{agg.pid}/stat").read_text().split()[2] == "Z"
                ),
            )
            assert run.stored() > 0  # its first batch is in the database; its offsets are not committed
            run.services.pop("aggregate")
        else:
            _mid_stream(run, expected)
            run.kill("aggregate")
        run.start("aggregate")
        _finish(run, expected)
    _assert_same(snapshot(stack, run.camera), baseline)


def test_triton_paused_then_killed_mid_stream(stack, recording, baseline):
    """SIGSTOP: calls time out; the detector retries with backoff, says NOT_SERVING, drops
    nothing; SIGCONT and it goes on. Then Triton killed and started again on its ports."""
    expected = baseline["frames"]
    with running(stack, recording, "cam-triton") as run:
        run.ingest()
        _mid_stream(run, expected)
        os.kill(stack.triton.pid, signal.SIGSTOP)
        try:
            wait_until("the detector to say NOT_SERVING", lambda: not run.ready("detect"), timeout_s=60)
            paused_at = run.stored()
            time.sleep(2)
            assert run.stored() == paused_at  # nothing is classified while Triton is frozen
        finally:
            os.kill(stack.triton.pid, signal.SIGCONT)
        wait_until("the detector ready again", lambda: run.ready("detect"), timeout_s=60)
        wait_until("two thirds stored", lambda: run.stored() >= 2 * expected // 3, every_s=0.05)
        if run.stored() < expected:
            dev.stop(stack.triton, sig=signal.SIGKILL)
            wait_until("the detector to say NOT_SERVING", lambda: not run.ready("detect"), timeout_s=60)
            time.sleep(3)
            stack.triton = dev.start_triton(stack.work / "triton", stack.triton_repo, TRITON_VENV, stack.triton_ports)
        _finish(run, expected)
    _assert_same(snapshot(stack, run.camera), baseline)
    # frame by frame, the faces the detector emitted: a retried batch must see its frames as the
    # failed attempt did (before: the face follower had moved on, and the retry detected anew)
    assert observed(stack, run.camera) == observed(stack, "cam-base")


def test_postgres_stopped_mid_stream(stack, recording, baseline):
    expected = baseline["frames"]
    with running(stack, recording, "cam-pg") as run:
        run.ingest()
        _mid_stream(run, expected)
        dev.stop(stack.pg)
        wait_until("the aggregator to say NOT_SERVING", lambda: not run.ready("aggregate"), timeout_s=60)
        time.sleep(3)
        stack.pg = dev.start_postgres(stack.work / "pg", stack.pg_port)
        wait_until("the aggregator ready again", lambda: run.ready("aggregate"), timeout_s=60)
        _finish(run, expected)
    _assert_same(snapshot(stack, run.camera), baseline)


def test_redis_stopped_then_restarted_empty(stack, recording, baseline):
    """Live counters degrade while Redis is away and are rebuilt from SQL once it is back (it
    comes back empty: no persistence); SQL statistics never notice."""
    expected = baseline["frames"]
    with running(stack, recording, "cam-redis") as run:
        run.ingest()
        _mid_stream(run, expected)
        dev.stop(stack.redis)
        wait_until("two thirds stored while Redis is away", lambda: run.stored() >= 2 * expected // 3, every_s=0.1)
        assert run.ready("aggregate")  # degraded live counters are not an outage of the store
        stack.redis = dev.start_redis(stack.work / "redis", stack.redis_port)
        _finish(run, expected)
        wait_until(
            "live counters rebuilt",
            lambda: snapshot(stack, run.camera)["live"] == snapshot(stack, run.camera)["sql_totals"],
            timeout_s=30,
        )
        # every other camera's counters were rebuilt too
        base = snapshot(stack, "cam-base")
        assert base["live"] == base["sql_totals"] == baseline["sql_totals"]
    _assert_same(snapshot(stack, run.camera), baseline)


def test_ingest_killed_mid_file_then_rerun_and_the_recording_ingested_twice(stack, recording, baseline):
    """The ingest dies after publishing its first 32 frames (a failpoint: a kill from outside
    lands after the whole 12 s file is published); the rerun sends them again, then the rest.
    The detector answers the frames it has seen as before, so its tracks go on from frame 32
    and nothing changes, distinct visitors included (before: the replayed frames ran through
    the tracker after frame 32, and faces in view got new ids)."""
    expected = baseline["frames"]
    with running(stack, recording, "cam-ingest") as run:
        proc = run.ingest({"EMOLENS_FAILPOINT": "ingest.after_flush:1"}, wait=False)
        proc.communicate(timeout=300)
        assert proc.returncode == 137  # died at the failpoint, mid-file
        wait_until("the first 32 frames stored", lambda: run.stored() >= 32, every_s=0.05)
        run.ingest()  # the restart publishes the whole file again
        run.ingest()  # and someone ingests the same recording once more
        _finish(run, expected)
    _assert_same(snapshot(stack, run.camera), baseline)


def test_poison_messages_go_to_dead_letter_topics_and_block_nothing(stack, recording, baseline):
    expected = baseline["frames"]
    bus = make_bus(stack.env["EMOLENS_BUS"])
    long_id = "x" * 300
    from emolens.v1 import frames_pb2, observations_pb2

    bus.publish(FRAMES_TOPIC, "cam-poison", b"\x08\xff\xff not a frame")
    bus.publish(OBSERVATIONS_TOPIC, long_id, observations_pb2.FrameObservations(camera_id=long_id).SerializeToString())
    bus.publish(OBSERVATIONS_TOPIC, "cam-poison", b"\xff\xfe garbage")
    bus.publish(
        FRAMES_TOPIC, "cam-poison", frames_pb2.Frame(camera_id="cam-poison", jpeg=b"no jpeg").SerializeToString()
    )
    bus.flush()
    with running(stack, recording, "cam-poison") as run:
        run.ingest()
        _finish(run, expected)
        with urllib.request.urlopen(f"http://127.0.0.1:{run.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        counted = [line for line in text.splitlines() if line.startswith("emolens_dead_letters_total{")]
        assert counted and sum(float(line.rsplit(" ", 1)[1]) for line in counted) == 2
    consumer = bus.consumer([dead_letter_topic(FRAMES_TOPIC), dead_letter_topic(OBSERVATIONS_TOPIC)], "inspect-dlq")
    dead = []
    wait_until(
        "dead letters readable", lambda: bool(dead.extend(consumer.poll(1.0, 100)) or len(dead) >= 4), timeout_s=30
    )
    assert sorted(m.topic for m in dead) == sorted(
        [dead_letter_topic(FRAMES_TOPIC)] * 2 + [dead_letter_topic(OBSERVATIONS_TOPIC)] * 2
    )
    consumer.close()
    bus.close()
    _assert_same(snapshot(stack, run.camera), baseline)


def test_broker_restart_loses_what_it_held_and_the_services_recover(stack, recording, baseline):
    """The Tansu broker here keeps topics in memory: a restart loses every message and every
    committed offset. What the platform does: ingest, detector and aggregator retry until the
    broker is back and go on by themselves; frames that sat in the broker are lost (never
    counted twice); what is published after the restart is counted. A durable broker (Kafka
    with replicated, persisted topics, as the chart expects) keeps both and loses nothing."""
    expected = baseline["frames"]
    with running(stack, recording, "cam-broker") as run:
        run.ingest()
        _mid_stream(run, expected)
        dev.stop(stack.kafka, sig=signal.SIGKILL)
        time.sleep(2)
        stack.kafka = dev.start_kafka(stack.work / "kafka", stack.kafka_port)
        lost_at = run.stored()
        time.sleep(5)
        run.ingest()  # the recording again: the frames the broker lost are counted now, once
        _finish(run, expected)
        assert lost_at < expected
    _assert_same(snapshot(stack, run.camera), baseline, tracks="at_least")
