"""Several cameras in one embedded run (`emolens run --camera ... --cameras FILE`): each camera's
statistics are what running it alone gives, the faces of all cameras share one classifier call
per tick, and camera ids, zones and sites reach the store."""

from datetime import UTC, datetime

import cv2
import pytest

import emolens.stages
from emolens import Settings
from emolens.cli import main
from emolens.errors import ConfigError
from emolens.inference import EMOTION, make_classifier
from emolens.media import iter_video
from emolens.runner import CameraSource, load_cameras, parse_camera, run_cameras
from emolens.store import Camera, SqlStore

START = datetime(2026, 3, 1, 10, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def mirrored_clip(demo_clip, tmp_path_factory):
    """The demo clip mirrored: other faces at other places, as a second camera would see."""
    path = tmp_path_factory.mktemp("mirrored") / "mirrored.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (640, 480))
    for frame in iter_video(str(demo_clip)):
        writer.write(frame.image[:, ::-1].copy())
    writer.release()
    return path


class CountingClassifier:
    """The real classifier, counting emotion-model calls and the faces in each."""

    def __init__(self, inner):
        self.inner, self.emotion_batches = inner, []

    def info(self, model):
        return self.inner.info(model)

    def predict(self, model, x):
        if model == EMOTION:
            self.emotion_batches.append(len(x))
        return self.inner.predict(model, x)


def _buckets(db):
    store = SqlStore(db)
    try:
        return {b.camera_id: b for b in store.buckets()}, {c.camera_id: c for c in store.cameras()}
    finally:
        store.close()


def test_two_cameras_in_one_run_give_what_each_gives_alone(demo_clip, mirrored_clip, tmp_path, monkeypatch):
    settings = Settings.from_env({}, fps=5)
    classifier = make_classifier("onnx://")
    cameras = [
        CameraSource(str(demo_clip), Camera("door-1", "entrance", "mall-a")),
        CameraSource(str(mirrored_clip), Camera("till-2", "tills", "mall-b")),
    ]
    alone = {}
    for c in cameras:
        db = f"sqlite:///{tmp_path / (c.camera.camera_id + '.db')}"
        store = SqlStore(db)
        run_cameras([c], store, settings, start=START, classifier=classifier)
        store.close()
        alone.update(_buckets(db)[0])

    counting = CountingClassifier(classifier)
    ticks = []
    together = emolens.stages.analyze_together

    def recording(jobs):
        before = len(counting.emotion_batches)
        out = together(jobs)
        cameras_with_faces = sum(1 for faces in out if any(f for f in faces))
        ticks.append((cameras_with_faces, len(counting.emotion_batches) - before))
        return out

    monkeypatch.setattr(emolens.stages, "analyze_together", recording)
    db = f"sqlite:///{tmp_path / 'both.db'}"
    store = SqlStore(db)
    summary = run_cameras(cameras, store, settings, start=START, classifier=counting)
    store.close()
    both, known = _buckets(db)

    assert summary.frames_by_camera == {"door-1": 20, "till-2": 20}  # 4 s at 5 fps each
    assert set(both) == set(alone) == {"door-1", "till-2"}
    for camera_id, ref in alone.items():
        got = both[camera_id]
        assert (got.frames, got.faces, got.low_quality, got.tracks) == (
            ref.frames,
            ref.faces,
            ref.low_quality,
            ref.tracks,
        )
        assert got.smiles == ref.smiles and got.counts == ref.counts
        # the batch differs (other faces beside them), so the float sums may differ in the last bits
        assert got.smile_sum == pytest.approx(ref.smile_sum, abs=1e-3)
        for emotion, p in ref.prob_sums.items():
            assert got.prob_sums[emotion] == pytest.approx(p, abs=1e-3)
    assert known["door-1"] == Camera("door-1", "entrance", "mall-a")
    assert known["till-2"] == Camera("till-2", "tills", "mall-b")
    # one emotion call per tick, and ticks that held faces of both cameras
    assert all(calls == (1 if n else 0) for n, calls in ticks), ticks
    assert any(n == 2 for n, _ in ticks), ticks


def test_run_takes_cameras_from_flags_and_a_yaml_file(demo_clip, mirrored_clip, tmp_path):
    listing = tmp_path / "cameras.yaml"
    listing.write_text(f"cameras:\n  - {{id: till-2, source: '{mirrored_clip}', zone: tills, site: mall}}\n")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["run", "--camera", f"id=door-1,source={demo_clip},zone=entrance,site=mall", "--cameras", str(listing)]
    # a fixed start: from "now" the 4 s clip crosses into the next minute in 1 run of 15
    start = ["--start", "2026-06-01T09:00:00"]
    assert main([*args, *start, "--db", db, "--fps", "2", "--inference", "onnx://"]) == 0
    buckets, known = _buckets(db)
    assert known == {"door-1": Camera("door-1", "entrance", "mall"), "till-2": Camera("till-2", "tills", "mall")}
    assert {k: b.frames for k, b in buckets.items()} == {"door-1": 8, "till-2": 8}


def test_camera_specs_and_files_are_checked(tmp_path, capsys):
    assert parse_camera("source=rtsp://10.0.0.5/a,b,id=c1") == CameraSource("rtsp://10.0.0.5/a,b", Camera("c1"))
    for bad in ("source=x.mp4", "id=c1", "room=3,id=c1,source=x.mp4", "c1 x.mp4", f"id={'x' * 200},source=a"):
        with pytest.raises(ConfigError):
            parse_camera(bad)
    for typo, key in (("id=y,source=camA.mp4,zoen=foo", "zoen"), ("id=x,src=camA.mp4", "src")):
        with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
            parse_camera(typo)
    with pytest.raises(ConfigError, match="id given twice"):
        parse_camera("id=x,source=a.mp4,id=z")
    with pytest.raises(ConfigError, match="zone without a value"):
        parse_camera("id=x,source=a.mp4,zone")
    listing = tmp_path / "bad.yaml"
    for text in ("cameras: 3\n", "- {id: a}\n", "[unclosed\n", "[]\n"):
        listing.write_text(text)
        with pytest.raises(ConfigError, match="--cameras"):
            load_cameras(listing)
    listing.write_text("- {id: 7, source: 0}\n")  # YAML numbers: a camera id and a webcam index
    assert load_cameras(listing) == [CameraSource("0", Camera("7"))]
    db = f"sqlite:///{tmp_path / 'x.db'}"
    clip = tmp_path / "nope.mp4"
    two_same = ["run", "--camera", f"id=a,source={tmp_path}", "--camera", f"id=a,source={tmp_path}", "--db", db]
    assert main(two_same) == 2
    assert "its own camera id" in capsys.readouterr().err
    assert main(["run", "--source", str(clip), "--db", db]) == 2  # --source without --camera-id
    assert "--camera-id" in capsys.readouterr().err
