"""`emolens demo`: its per-minute table counts what `analyze` finds in the frames the ingest sends."""

import json

import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage", reason="emolens demo builds its clip from scikit-image's photo (the demo extra)")

from emolens.cli import main  # noqa: E402
from emolens.stages import JPEG_QUALITY  # noqa: E402


def _faces(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    usable = sum(not row["low_quality"] for row in rows)
    return usable, len(rows) - usable


def _as_ingest_sends(clip, out):
    """The clip with every frame through the camera-ingest's JPEG encoding, stored losslessly."""
    reader = cv2.VideoCapture(str(clip))
    writer = None
    try:
        while True:
            ok, frame = reader.read()
            if not ok:
                break
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            assert ok
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), 15, size)
            writer.write(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))
    finally:
        reader.release()
        if writer is not None:
            writer.release()
    return out


def test_demo_table_counts_the_faces_analyze_finds_in_the_frames_the_ingest_sends(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    raw_usable, _ = _faces(tmp_path / "faces.jsonl")
    capsys.readouterr()
    db = ["--db", f"sqlite:///{tmp_path / 'emolens.db'}"]
    assert main(["stats", "--camera-id", "demo-cam", "--k", "1", "--format", "json", *db]) == 0
    (minute,) = json.loads(capsys.readouterr().out)

    sent = _as_ingest_sends(tmp_path / "demo.mp4", tmp_path / "as-sent.avi")
    assert main(["analyze", str(sent), "--out", str(tmp_path / "as-sent.jsonl")]) == 0
    sent_usable, sent_low = _faces(tmp_path / "as-sent.jsonl")

    assert minute["frames"] == 180
    assert minute["faces"] == sent_usable > 0
    assert minute["low_quality"] == sent_low
    # JPEG moves the quality gate by a few faces at most; the usable faces are the same ones
    assert abs(sent_usable - raw_usable) <= 3
