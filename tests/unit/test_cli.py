"""Every CLI command on real images (the astronaut photo, the demo clip) and every bad input."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emolens.cli import main
from tests.conftest import MODEL_REPO

INF = ["--inference", f"onnx://{MODEL_REPO}"]


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def images(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("imgs")
    cv2.imwrite(str(d / "color.jpg"), astronaut)
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "rgba.png"), cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(d / "deep16.png"), astronaut.astype(np.uint16) * 257)
    return d


def test_analyze_image_jsonl(images, capsys):
    assert main(["analyze", str(images / "color.jpg"), *INF]) == 0
    (rec,) = records(capsys.readouterr().out)
    assert rec["source"].endswith("color.jpg") and rec["frame"] == 0
    assert set(rec) >= {"source", "frame", "timestamp", "track_id", "box", "quality", "smile", "emotions", "label"}
    assert 0 <= rec["smile"] <= 1 and abs(sum(rec["emotions"].values()) - 1) < 1e-3
    assert rec["label"] == max(rec["emotions"], key=rec["emotions"].get)
    x0, y0, x1, y1 = rec["box"]
    assert x0 < 226 < x1 and y0 < 122 < y1  # the astronaut's face


@pytest.mark.parametrize("name", ["gray.png", "rgba.png", "deep16.png"])
def test_analyze_accepts_gray_rgba_and_16_bit(images, capsys, name):
    assert main(["analyze", str(images / name), *INF]) == 0
    assert len(records(capsys.readouterr().out)) == 1


def test_analyze_folder_out_file_and_annotations(images, tmp_path, capsys):
    out = tmp_path / "faces.jsonl"
    assert main(["analyze", str(images), "--out", str(out), "--annotate", str(tmp_path / "ann"), "--blur", *INF]) == 0
    recs = records(out.read_text())
    assert sorted(Path(r["source"]).name for r in recs) == ["color.jpg", "deep16.png", "gray.png", "rgba.png"]
    written = sorted(p.name for p in (tmp_path / "ann").iterdir())
    assert written == ["color.jpg", "deep16.png", "gray.png", "rgba.png"]
    annotated = cv2.imread(str(tmp_path / "ann" / "color.jpg"))
    original = cv2.imread(str(images / "color.jpg"))
    face = (slice(90, 160), slice(190, 260))
    # blurred: far less detail inside the face than in the original
    assert cv2.Laplacian(annotated[face], cv2.CV_32F).var() < 0.5 * cv2.Laplacian(original[face], cv2.CV_32F).var()


def test_analyze_video_tracks_faces(demo_clip, tmp_path, capsys):
    assert main(["analyze", str(demo_clip), "--annotate", str(tmp_path), *INF]) == 0
    recs = records(capsys.readouterr().out)
    frames = {r["frame"] for r in recs}
    assert len(frames) >= 35  # 40 frames, a face in nearly all
    assert all(r["track_id"] is not None for r in recs)
    # the main face keeps one id through most of the clip
    ids = [r["track_id"] for r in recs]
    assert max(ids.count(i) for i in set(ids)) >= 30
    ts = sorted({r["timestamp"] for r in recs})
    assert ts[1] - ts[0] == pytest.approx(0.1, abs=1e-3)
    assert (tmp_path / "demo.annotated.mp4").stat().st_size > 10_000


def test_bad_inputs_are_reported_and_the_rest_processed(images, tmp_path, capsys, demo_clip):
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    data = demo_clip.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    huge = np.zeros((20000, 20000), np.uint8)
    cv2.imwrite(str(tmp_path / "huge.png"), huge, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    del huge
    bad = ["missing.jpg", "notes.jpg", "empty.png", "corrupt.mp4", "truncated.mp4", "huge.png"]
    args = [str(tmp_path / b) for b in bad] + [str(images / "color.jpg")]
    assert main(["analyze", *args, *INF]) == 0  # one input worked
    cap = capsys.readouterr()
    assert len(records(cap.out)) == 1
    errors = [line for line in cap.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad)
    for name in bad:
        assert any(name in e for e in errors), name
    assert "Traceback" not in cap.err
    assert any("20000x20000" in e for e in errors)


def test_nothing_processed_exits_non_zero(tmp_path, capsys):
    (tmp_path / "notes.jpg").write_text("x")
    assert main(["analyze", str(tmp_path / "notes.jpg"), str(tmp_path / "nope.png"), *INF]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_empty_folder_and_blank_frame(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty"), *INF]) == 2
    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((480, 640, 3), np.uint8))
    assert main(["analyze", str(tmp_path / "black.png"), *INF]) == 0
    assert records(capsys.readouterr().out) == []


def test_run_then_stats(demo_clip, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'e.db'}"
    rc = main(
        [
            "run",
            "--source",
            str(demo_clip),
            "--camera-id",
            "c1",
            "--zone",
            "z",
            "--site",
            "s",
            "--db",
            db,
            "--fps",
            "5",
            "--start",
            "2026-03-01T10:00:30",
            *INF,
        ]
    )
    assert rc == 0
    assert main(["stats", "--db", db, "--camera-id", "c1", "--k", "1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["minute"] for r in rows] == ["2026-03-01T10:00"]
    assert rows[0]["frames"] == 20  # 4 s at 5 fps
    assert rows[0]["faces"] + rows[0]["low_quality"] >= 20
    assert 1 <= rows[0]["tracks"] <= 8  # 1-3 faces on screen, a few tracks, not one per frame
    assert main(["stats", "--db", db, "--camera-id", "c1", "--format", "table", "--k", "100"]) == 0
    table = capsys.readouterr().out
    assert "1 bucket(s) with fewer than 100 distinct faces suppressed" in table
    cells = table.splitlines()[1].split()
    assert cells[:2] == ["c1", "2026-03-01T10:00"] and set(cells[2:]) == {"-"}
    assert main(["stats", "--db", db, "--camera-id", "nope"]) == 2
    assert "unknown camera" in capsys.readouterr().err
    # the same recording run again (another start time, as after a crash) counts nothing twice
    again = ["run", "--source", str(demo_clip), "--camera-id", "c1", "--db", db, "--fps", "5", *INF]
    assert main([*again, "--start", "2026-03-01T10:00:30"]) == 0
    assert main([*again, "--start", "2026-03-01T11:00:00"]) == 0
    capsys.readouterr()
    assert main(["stats", "--db", db, "--camera-id", "c1", "--k", "1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows


def test_run_bad_source(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--source",
                str(tmp_path / "nope.mp4"),
                "--camera-id",
                "c",
                "--db",
                f"sqlite:///{tmp_path}/x.db",
                *INF,
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith("error: ")


def test_run_image_folder(images, tmp_path):
    db = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["run", "--source", str(images), "--camera-id", "dir", "--db", db, "--fps", "1", *INF]) == 0


def test_entry_point_and_bad_flag():
    out = subprocess.run([sys.executable, "-m", "emolens", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "analyze" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "emolens", "run"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--source" in bad.stderr


def test_run_from_an_http_stream(demo_clip, tmp_path, capsys):
    """A URL source: the demo clip, as a streamable MJPEG AVI, served over HTTP on loopback."""
    import functools
    import http.server
    import threading

    from emolens.media import iter_video

    served = tmp_path / "www"
    served.mkdir()
    writer = cv2.VideoWriter(str(served / "cam.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10, (640, 480))
    for frame in iter_video(str(demo_clip)):
        writer.write(frame.image)
    writer.release()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.avi"
        db = f"sqlite:///{tmp_path / 'h.db'}"
        assert main(["run", "--source", url, "--camera-id", "web", "--db", db, "--fps", "5", *INF]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert "camera web: 20 frames" in capsys.readouterr().err


def test_bad_start_time_is_a_one_line_error(demo_clip, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", "--source", str(demo_clip), "--camera-id", "c", "--db", db, "--start", "noon", *INF]) == 2
    assert capsys.readouterr().err.startswith("error: --start 'noon'")


def test_help_loads_no_tool_and_no_training_stack():
    """`emolens --help` stays fast: the developer tools and torch load only inside their verbs."""
    probe = (
        "import sys\nfrom emolens.cli import build_parser\nbuild_parser()\n"
        "heavy = ('torch', 'emolens.training', 'emolens.bench', 'emolens.dev', 'emolens.evaluation')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tool_verbs_pass_their_arguments_on(tmp_path, capsys):
    """bench, evaluate and dev hand every argument after the verb to their module's own parser."""
    assert main(["evaluate", "--data-dir", str(tmp_path), "--skip-pipeline", "--out", str(tmp_path / "c.md")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {tmp_path / 'smiles.npz'} not found: set EMOLENS_DATA_DIR to the folder holding smiles.npz"]
    assert not (tmp_path / "c.md").exists()
    assert main(["dev", "down", "--workdir", str(tmp_path / "never-up")]) == 0  # nothing recorded, nothing to stop
    with pytest.raises(SystemExit) as bad:
        main(["bench", "--only", "nonsense"])
    assert bad.value.code == 2 and "emolens bench: error: argument --only: invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as helped:
        main(["dev", "--help"])
    assert helped.value.code == 0 and "usage: emolens dev" in capsys.readouterr().out
    with pytest.raises(SystemExit) as unknown:
        main(["stats", "--bogus"])  # other verbs still refuse what they do not know
    assert unknown.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_a_tool_without_its_extra_is_a_one_line_error(monkeypatch, capsys):
    import emolens.bench

    def needs_torch(argv):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(emolens.bench, "main", needs_torch)
    assert main(["bench", "--only", "precision"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: `emolens bench` needs 'torch', which is not installed here;")
