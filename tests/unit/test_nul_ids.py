"""A NUL in a camera, zone or site id (PostgreSQL's text cannot hold one) is refused at the edge:
the ingest refuses to start with one error line, the detector dead-letters such a frame with the
reason before spending inference on it. Before, only the aggregator refused it, after inference."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, MemoryBus
from emolens.errors import InputError
from emolens.inference import make_classifier
from emolens.settings import Settings
from emolens.stages import DLQ_REASON, Detector, Ingest, dead_letter_topic, drain
from emolens.store import Camera
from emolens.v1 import frames_pb2
from tests.conftest import MODEL_REPO, ROOT


def _frame(seq: int, site: str) -> bytes:
    image = np.zeros((48, 64, 3), np.uint8)
    frame = frames_pb2.Frame(camera_id="cam-n", frame_seq=seq, zone="hall", site=site)
    frame.jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    frame.captured_at.GetCurrentTime()
    return frame.SerializeToString()


def test_the_detector_dead_letters_a_frame_whose_site_holds_a_nul_before_inference():
    settings = Settings.from_env(inference=f"onnx://{MODEL_REPO}", fps=5)
    bus = MemoryBus()
    bus.publish(FRAMES_TOPIC, "cam-n", _frame(1, "hq\x00evil"))
    bus.publish(FRAMES_TOPIC, "cam-n", _frame(2, "hq"))
    detector = Detector(bus, settings, make_classifier(settings.inference))
    assert drain(detector, idle_s=0.2) == 2
    dead = bus.consumer([dead_letter_topic(FRAMES_TOPIC)], "t").poll(0.1, 10)
    assert len(dead) == 1
    reason = dict(dead[0].headers)[DLQ_REASON].decode()
    assert reason.startswith("bad id: site") and "NUL" in reason, reason
    out = bus.consumer([OBSERVATIONS_TOPIC], "t").poll(0.1, 10)
    assert len(out) == 1  # only the good frame went on to the aggregator


@pytest.mark.parametrize("field", ["camera_id", "zone", "site"])
def test_an_ingest_whose_ids_hold_a_nul_does_not_start(field):
    ids = {"camera_id": "cam-n", "zone": "hall", "site": "hq", field: "a\x00b"}
    with pytest.raises(InputError, match="NUL"):
        Ingest(MemoryBus(), Camera(ids["camera_id"], ids["zone"], ids["site"]), Settings())


def test_run_refuses_a_cameras_file_with_a_nul_in_one_line(tmp_path, demo_clip):
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(f'- id: cam-n\n  source: {demo_clip}\n  zone: hall\n  site: "hq\\0x"\n')
    done = subprocess.run(
        [sys.executable, "-m", "emolens", "run", "--cameras", str(cameras), "--db", f"sqlite:///{tmp_path}/e.db"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "EMOLENS_INFERENCE": f"onnx://{MODEL_REPO}"},
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and "NUL" in errors[0], done.stderr
