"""Under `emolens dev up` no frame outlives the frames' retention, and dead letters outlive
`emolens dev down` (docs/reliability.md, "Frames under `make up`"). The dev broker (Tansu, memory
storage) ignores ``retention.ms``, so the supervisor recycles it on the retention's timer
(emolens_tools.broker_recycle.FramesRetention). A 30 s retention stands for the 10 minutes.

    pytest -m pixel tests/integration/test_dev_retention.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emolens.bus import FRAMES_TOPIC, dead_letter_topic
from emolens.store import SqlStore
from tests.conftest import ROOT
from tests.integration.conftest import TRITON_VENV, wait_until

pytestmark = pytest.mark.pixel

RETENTION_S = 30
# the runtime and the developer tools (`emolens dev`) of this checkout, for the processes it starts
TOOLS_PATH = os.pathsep.join([str(ROOT), str(ROOT / "tools")])


def emolens_dev(work: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMOLENS_TRITON_VENV": str(TRITON_VENV), "PYTHONPATH": TOOLS_PATH}
    env["EMOLENS_FRAMES_RETENTION_MS"] = str(RETENTION_S * 1000)  # the supervisor's and the services'
    cmd = [sys.executable, "-m", "emolens", "dev", *args, "--workdir", str(work)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def service_env(work: Path) -> dict[str, str]:
    from emolens_tools import dev

    state = dev.read_state(work)
    assert state is not None
    gateway = next(s for s in state["services"] if s["name"] == "gateway")
    return {**os.environ, **gateway["spec"]["env"], "PYTHONPATH": TOOLS_PATH}


def topic_messages(bootstrap: str, topic: str) -> list:
    """Every record ``topic`` holds now, read from its beginning."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        ends = reader.end_offsets(tps)
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        got: list = []
        deadline = time.monotonic() + 20
        while any(reader.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic}")
            for tp, records in reader.poll(timeout_ms=500).items():
                got += [r for r in records if r.offset < ends[tp]]
        return got
    finally:
        reader.close()


def ingest(work: Path, clip: Path, camera: str) -> None:
    cmd = [sys.executable, "-m", "emolens", "ingest", "--source", str(clip), "--camera-id", camera]
    cmd += ["--zone", "hall", "--site", "hq", "--fps", "5"]
    done = subprocess.run(cmd, env=service_env(work), capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def stored(work: Path, camera: str) -> int:
    store = SqlStore(service_env(work)["EMOLENS_DB"], create=False)
    try:
        return sum(b.frames for b in store.buckets(camera_id=camera))
    finally:
        store.close()


def published(clip: Path) -> int:
    from emolens.media import iter_video

    return sum(1 for _ in iter_video(str(clip), 5.0))


def test_no_frame_outlives_the_retention_and_nothing_stored_is_lost_or_counted_twice(services_dir, demo_clip):
    from kafka import KafkaProducer

    work = services_dir / "retention"
    done = emolens_dev(work, "up", "--broker-memory-mb", "0")  # only the retention recycles
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        bootstrap = service_env(work)["EMOLENS_BUS"].removeprefix("kafka://")
        ages: list[float] = []  # the oldest frame's age at each look
        looking = threading.Event()

        def watch() -> None:
            while not looking.is_set():
                try:
                    frames = topic_messages(bootstrap, FRAMES_TOPIC)
                except Exception:  # the broker is being recycled
                    time.sleep(0.2)
                    continue
                if frames:
                    ages.append(time.time() - min(r.timestamp for r in frames) / 1000)
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        producer.send(FRAMES_TOPIC, b"\xff not a frame", key=b"poison-cam")  # a dead letter to keep
        producer.flush()
        producer.close()
        expected = published(demo_clip)
        ingest(work, demo_clip, "ret-a")
        wait_until("ret-a stored", lambda: stored(work, "ret-a") >= expected, 240)
        time.sleep(RETENTION_S + 6)  # ret-a's frames are past the promise now
        ingest(work, demo_clip, "ret-b")  # new frames flow through recycles
        wait_until("ret-b stored", lambda: stored(work, "ret-b") >= expected, 240)
        time.sleep(RETENTION_S + 6)
        looking.set()
        watcher.join(30)
        left = topic_messages(bootstrap, FRAMES_TOPIC)
        print(f"looks {len(ages)}, oldest frame seen {max(ages):.1f} s, frames left {len(left)}")
        assert len(ages) >= 10 and max(ages) <= RETENTION_S, f"a frame {max(ages):.1f} s old was held"
        assert all(time.time() - r.timestamp / 1000 <= RETENTION_S for r in left)
        assert (stored(work, "ret-a"), stored(work, "ret-b")) == (expected, expected)  # none lost, none twice
        log = (work / "logs" / "supervisor.log").read_text()
        assert "why=frames_retention" in log

        def poison() -> list:
            return [r for r in topic_messages(bootstrap, dead_letter_topic(FRAMES_TOPIC)) if r.key == b"poison-cam"]

        wait_until("the poison dead-lettered", lambda: len(poison()) == 1, 60)
        assert emolens_dev(work, "down").returncode == 0  # the dead letter outlives the broker
        again = emolens_dev(work, "up", "--broker-memory-mb", "0")
        assert again.returncode == 0, again.stdout + again.stderr
        bootstrap = service_env(work)["EMOLENS_BUS"].removeprefix("kafka://")
        kept = poison()
        assert len(kept) == 1 and b"not a usable Frame" in dict(kept[0].headers)["emolens-dlq-reason"]
        assert kept[0].value == b""  # bytes that are no Frame keep nothing
    finally:
        emolens_dev(work, "down", "--wipe")
