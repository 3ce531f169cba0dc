"""One ingest process for many cameras (issue 23: the chart's grouped ingest pods): `emolens
ingest --cameras FILE` publishes every camera's frames on the real broker, a source may come
from an environment variable (a Secret), a recording that fails ends only its own camera, and a
live camera that does not open is retried without stopping the others."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from emolens.bus import FRAMES_TOPIC, make_bus
from emolens.demo import write_demo_clip

pytestmark = pytest.mark.integration


def _frames_by_camera(kafka_url: str, cameras: set[str], want: int) -> dict[str, int]:
    bus = make_bus(kafka_url)
    consumer = bus.consumer([FRAMES_TOPIC], f"g-{uuid.uuid4().hex[:8]}")
    counts = dict.fromkeys(cameras, 0)
    end = time.monotonic() + 60
    while time.monotonic() < end and sum(counts.values()) < want:
        for m in consumer.poll(0.5, 500):
            if m.key in counts:
                counts[m.key] += 1
    consumer.close()
    bus.close()
    return counts


def test_one_ingest_publishes_every_camera_of_its_file(kafka_url, tmp_path: Path):
    clip = write_demo_clip(tmp_path / "clip.mp4", seconds=2.0, fps=15)  # 10 frames at 5 fps
    tag = uuid.uuid4().hex[:6]
    a, b, broken, live = (f"{name}-{tag}" for name in ("a", "b", "broken", "live"))
    (tmp_path / "cameras.yaml").write_text(
        yaml.safe_dump(
            {
                "cameras": [
                    {"id": a, "source": str(clip), "zone": "door", "site": "hq"},
                    {"id": b, "source_env": "CAMERA_B_SOURCE", "zone": "till", "site": "hq"},
                    {"id": broken, "source": str(tmp_path / "missing.mp4"), "site": "hq"},
                    {"id": live, "source": "http://127.0.0.1:9/stream.mjpg", "site": "hq"},
                ]
            }
        )
    )
    env = {
        **os.environ,
        "EMOLENS_BUS": kafka_url,
        "CAMERA_B_SOURCE": str(clip),
        "EMOLENS_SOURCE_OPEN_TIMEOUT_S": "1",
        "EMOLENS_FPS": "5",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "emolens", "ingest", "--cameras", str(tmp_path / "cameras.yaml")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        counts = _frames_by_camera(kafka_url, {a, b, broken, live}, 20)
        assert counts == {a: 10, b: 10, broken: 0, live: 0}
        time.sleep(4)  # the live camera's first tries give up after 1 s each and are retried
        assert proc.poll() is None, "a live camera that does not open must not end the process"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-3000:]  # the broken recording failed
    assert "event=camera_failed" in err and broken in err
    assert "event=camera_retry" in err and live in err
    assert f"ingest {a}: published 10 frames" in err and f"ingest {b}: published 10 frames" in err
    assert f"ingest: 1 of 4 cameras failed: {broken}" in err
    assert "Traceback" not in err


def test_one_camera_or_a_file_not_both(tmp_path: Path):
    (tmp_path / "c.yaml").write_text("- {id: x, source: a.mp4}\n")
    run = subprocess.run(
        [sys.executable, "-m", "emolens", "ingest", "--cameras", str(tmp_path / "c.yaml"), "--source", "a.mp4"],
        capture_output=True,
        text=True,
        env={**os.environ, "EMOLENS_BUS": "memory://"},
        timeout=60,
    )
    assert run.returncode == 2 and "not both" in run.stderr
