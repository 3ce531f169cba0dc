"""Every CLI command on real images (the astronaut photo, the demo clip) and every bad input."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emolens.cli import main
from tests.conftest import MODEL_REPO, ROOT

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


def test_a_broken_video_gives_one_error_line_without_ffmpegs_own(tmp_path):
    """FFmpeg writes to the process's stderr itself (not through Python), so run a real process."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "emolens", "analyze", str(tmp_path / "empty.mp4"), *INF],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and lines[0].startswith("error:"), done.stderr
    assert lines[1:] == ["analyzed 0 input(s), 0 face(s); 1 failed"], done.stderr  # no "[mov,mp4 @ 0x..]" lines


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
        "heavy = ('torch', 'emolens_tools')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_evaluate_without_skimage_says_so_before_any_figure(tmp_path, capsys, monkeypatch):
    """The pipeline evaluation's backgrounds need scikit-image, imported late: `evaluate` checks
    for it first (before: from the wheel it ran ~12 s, printing the direct figures, then failed)."""
    import importlib.util

    from emolens_tools.evaluation import run

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else find_spec(name, *a)
    )
    loaded: list[object] = []
    monkeypatch.setattr(run, "load_split", lambda *a: loaded.append(a))
    assert main(["evaluate", "--data-dir", str(tmp_path), "--out", str(tmp_path / "c.md")]) == 2
    assert one_error(capsys, alone=True).startswith("error: `emolens evaluate` needs 'skimage', which is not installed")
    assert loaded == [] and not (tmp_path / "c.md").exists()


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
    import emolens_tools.bench

    def needs_torch(argv):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(emolens_tools.bench, "main", needs_torch)
    assert main(["bench", "--only", "precision"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: `emolens bench` needs 'torch', which is not installed here;")


def test_a_tool_verb_without_the_tools_says_how_to_get_them(monkeypatch, capsys):
    """The runtime alone (the wheel a user installs) has no developer tools: their verbs say in
    one line where they are, instead of a traceback."""
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])  # emolens-tools not installed
    monkeypatch.setitem(sys.modules, "emolens_tools.verbs", None)  # nor tools/ on sys.path
    for verb in ("bench", "evaluate", "dev"):
        assert main([verb, "--help"]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line == (
            f"error: `emolens {verb}` is a developer tool of emolens-tools, which is not installed here: "
            "in a checkout, `make install-dev` (or pip install -e tools)"
        )


def test_tool_verbs_are_the_entry_points_the_tools_declare():
    """emolens_tools.verbs (a checkout's tools/ on sys.path) and the entry points of
    tools/pyproject.toml (the tools installed) name the same functions, and each exists."""
    import importlib
    import tomllib

    from emolens_tools.verbs import VERBS

    declared = tomllib.loads((ROOT / "tools" / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["emolens.tools"] == VERBS
    assert set(VERBS) == {"bench", "evaluate", "dev"}
    for target in VERBS.values():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func))


# ---------------------------------------------------------------- bad input: one `error:` line, never a traceback


def one_error(capsys, *, alone: bool = True) -> str:
    """The one ``error:`` line on stderr; ``alone``: nothing else was printed there either."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    if alone:
        assert err.splitlines() == lines, err
    return lines[0]


def emolens_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``emolens`` script, as a user runs it."""
    script = Path(sys.executable).with_name("emolens")
    return subprocess.run([str(script), *argv], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_analyze_out_in_a_missing_folder(images, tmp_path, capsys):
    out = tmp_path / "nodir" / "x.jsonl"
    assert main(["analyze", str(images / "color.jpg"), "--out", str(out), *INF]) == 2
    assert one_error(capsys) == f"error: --out {out}: folder {out.parent} does not exist"
    assert not out.parent.exists()


def test_analyze_outputs_make_what_they_name_never_the_folders_above(images, tmp_path, capsys):
    """--out FILE and --annotate DIR follow one rule: the file or folder named is made, a
    missing folder above it is an error (before: --annotate made a whole missing tree)."""
    ann = tmp_path / "nodir" / "ann"
    assert main(["analyze", str(images / "color.jpg"), "--annotate", str(ann), *INF]) == 2
    assert one_error(capsys) == f"error: --annotate {ann}: folder {ann.parent} does not exist"
    assert not ann.parent.exists()
    out = tmp_path / "faces.jsonl"
    argv = ["analyze", str(images / "color.jpg"), "--annotate", str(tmp_path / "ann"), "--out", str(out)]
    assert main([*argv, *INF]) == 0
    assert (tmp_path / "ann" / "color.jpg").is_file() and out.read_text().strip()


def test_analyze_annotate_names_a_file(images, tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("mine")
    assert main(["analyze", str(images / "color.jpg"), "--annotate", str(target), *INF]) == 2
    assert one_error(capsys) == f"error: --annotate {target}: is a file, not a folder"
    assert target.read_text() == "mine"


@pytest.mark.parametrize("verb", ["stats", "run", "db-current", "db-upgrade"])
def test_sqlite_file_in_a_missing_folder(verb, images, tmp_path, capsys):
    db = tmp_path / "nonexistent_dir" / "x.db"
    argv = {
        "stats": ["stats"],
        "run": ["run", "--source", str(images / "color.jpg"), "--camera-id", "c", *INF],
        "db-current": ["db", "current"],
        "db-upgrade": ["db", "upgrade"],
    }[verb]
    assert main([*argv, "--db", f"sqlite:///{db}"]) == 2
    line = one_error(capsys)
    # a writer says which folder is missing; a reader that there is no such database
    assert line.startswith(f"error: SQLite database {db}: ")
    assert ("no such database" if verb in ("stats", "db-current") else f"folder {db.parent} does not exist") in line
    assert not db.parent.exists()


def test_stats_refuses_a_missing_database_without_creating_it(tmp_path):
    """Run as a user does (the installed script): one line on stderr, no traceback, no file."""
    proc = emolens_cli("stats", "--db", "sqlite:///missing.db", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: SQLite database missing.db: no such database (`emolens run` or `emolens db upgrade` creates it)"
    ]
    assert proc.stdout == "" and not (tmp_path / "missing.db").exists()
    proc = emolens_cli("db", "current", "--db", "sqlite:///missing.db", cwd=tmp_path)
    assert proc.returncode == 2 and "no such database" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "missing.db").exists()


def test_stats_refuses_a_file_that_holds_no_emolens_data(tmp_path, images, capsys):
    (tmp_path / "empty.db").write_bytes(b"")
    assert main(["stats", "--db", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2
    assert "holds no emolens data" in one_error(capsys)
    assert (tmp_path / "empty.db").read_bytes() == b""  # a reader changes nothing
    photo = images / "color.jpg"
    for argv in (["stats"], ["run", "--source", str(photo), "--camera-id", "c", *INF]):
        assert main([*argv, "--db", f"sqlite:///{photo}"]) == 2
        assert one_error(capsys).endswith("is not usable (file is not a database)")


def test_unknown_camera_names_the_camera_only(tmp_path, capsys):
    from emolens.store import Camera, SqlStore

    db = tmp_path / "secret-path.db"
    store = SqlStore(f"sqlite:///{db}")
    store.ensure_camera(Camera("c1"))
    store.close()
    assert main(["stats", "--db", f"sqlite:///{db}", "--camera-id", "nope"]) == 2
    assert one_error(capsys) == "error: unknown camera 'nope'"


def test_database_urls_never_show_a_password(capsys):
    for url, expected in (
        ("mysql://u:s3cret@h/x", "error: db (EMOLENS_DB) is 'mysql://u:***@h/x': use sqlite:///FILE or"),
        ("postgresql+nodriver://u:s3cret@h/x", "error: unknown database driver in 'postgresql+nodriver://u:***@h/x'"),
        ("postgresql://u:s3cret@[::1/x", "error: the database URL is malformed"),
    ):
        assert main(["stats", "--db", url]) == 2
        line = one_error(capsys)
        assert line.startswith(expected) and "s3cret" not in line


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("psycopg", ["run", "--db", "postgresql+psycopg://u@127.0.0.1:1/x"], "postgres"),
        ("psycopg", ["stats", "--db", "postgresql+psycopg://u@127.0.0.1:1/x"], "postgres"),
        ("redis", ["run", "--live", "redis://127.0.0.1:1/0"], "redis"),
        ("kafka", ["ingest", "--bus", "kafka://127.0.0.1:1"], "kafka"),
        ("tritonclient.grpc", ["analyze", "--inference", "triton://127.0.0.1:1"], "triton"),
    ],
)
def test_a_url_without_its_extra_names_the_extra(module, argv, extra, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    monkeypatch.chdir(tmp_path)  # `run` makes its default database here
    photo = str(images / "color.jpg")
    source = {"analyze": [photo], "stats": []}.get(argv[0], ["--source", photo, "--camera-id", "c"])
    assert main([*argv, *source]) == 2
    line = one_error(capsys)
    assert line.endswith(f"which is not installed here: pip install 'emolens[{extra}]'"), line
    assert line.startswith(f"error: {argv[-1].split('://')[0]}://")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--source", "PHOTO", "--camera-id", "c", "--fps", "nan"], "error: fps (EMOLENS_FPS) is nan"),
        (["run", "--source", "PHOTO", "--camera-id", "c", "--fps", "-1"], "error: fps (EMOLENS_FPS) is -1.0"),
        (["analyze", "PHOTO", "--fps", "0"], "error: fps (EMOLENS_FPS) is 0.0"),
        (["stats", "--k", "0"], "error: k_anonymity (EMOLENS_K_ANONYMITY) is 0"),
        (["run", "--source", "PHOTO", "--camera-id", ""], "error: --camera-id must be 1-128 characters, got 0"),
        (["run", "--source", "PHOTO", "--camera-id", "c" * 129], "error: --camera-id must be 1-128 characters"),
        (["ingest", "--source", "PHOTO", "--camera-id", "c", "--seq-start", "-1"], "error: --seq-start -1 is outside"),
        (["gateway", "--port", "-5"], "error: --port -5 is not a port number"),
        (["aggregate", "--idle-exit", "-1"], "error: --idle-exit -1.0 must be a positive number"),
    ],
)
def test_odd_flag_values_are_one_line(argv, message, images, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [str(images / "color.jpg") if a == "PHOTO" else a for a in argv]
    assert main(argv) == 2
    assert one_error(capsys).startswith(message)
    assert not (tmp_path / "emolens.db").exists()


def test_unreadable_inputs_are_one_error_each(tmp_path, capsys):
    """A folder with no image, a FIFO (reading it would block) and a file that cannot be read."""
    import os

    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("x")
    os.mkfifo(tmp_path / "pipe.jpg")
    unreadable = tmp_path / "locked.jpg"
    if os.geteuid() == 0:  # root reads any file; /proc/self/mem refuses a read at offset 0
        unreadable.symlink_to("/proc/self/mem")
    else:
        unreadable.write_bytes(b"\xff\xd8")
        unreadable.chmod(0)
    for path, reason in (
        (tmp_path / "no-images", "folder holds no images or videos"),
        (tmp_path / "pipe.jpg", "not a regular file"),
        (unreadable, "cannot read ("),
    ):
        assert main(["analyze", str(path), *INF]) == 2
        assert one_error(capsys, alone=False).startswith(f"error: {path}: {reason}")


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path):
    """``emolens cameras | head -1``: the closed pipe ends the command with 141, no traceback."""
    import subprocess
    import sys

    from emolens.store import Camera, SqlStore

    db = f"sqlite:///{tmp_path / 'c.db'}"
    store = SqlStore(db)
    for i in range(3000):
        store.ensure_camera(Camera(f"camera-{i:04d}", "zone", "site"))
    store.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "emolens", "cameras", "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # the reader leaves while the table is still being written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00", "9999-12-31T23:59:00", "1999-12-31T23:59:59"])
@pytest.mark.parametrize("verb", ["run", "ingest"])
def test_a_start_outside_what_a_frame_may_carry_is_one_error_line(verb, start, demo_clip, tmp_path):
    """Year 1 and 9999 once reached the aggregator and stopped it on PostgreSQL (docs/reliability.md,
    "A bad timestamp stops every camera"); the edges refuse them: 2000-01-01 to a day ahead."""
    argv = [verb, "--source", str(demo_clip), "--camera-id", "c", "--start", start]
    argv += ["--db", f"sqlite:///{tmp_path / 's.db'}", *INF] if verb == "run" else ["--bus", "memory://"]
    done = subprocess.run([sys.executable, "-m", "emolens", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"error: --start {start}") and "Traceback" not in done.stderr
    assert "2000-01-01" in done.stderr or "ahead of the clock" in done.stderr


def _stats_db(tmp_path: Path) -> str:
    from datetime import datetime

    from emolens.observations import FrameObservations
    from emolens.results import EMOTIONS, FaceResult
    from emolens.store import Camera, SqlStore

    db = f"sqlite:///{tmp_path / 'full.db'}"
    store = SqlStore(db)
    store.ensure_camera(Camera("cam-full", "z", "s"))
    probs = dict.fromkeys(EMOTIONS, 0.0)
    probs["happy"] = 1.0
    faces = [FaceResult((0, 0, 9, 9), [(0, 0)] * 6, 0.9, 0.9, False, 0.9, probs, track_id=t) for t in range(6)]
    store.apply([FrameObservations("cam-full", i, datetime(2026, 3, 1, 10, i % 60), faces) for i in range(200)])
    store.close()
    return db


@pytest.mark.parametrize("what", ["analyze --out", "analyze stdout", "stats stdout"])
def test_a_failed_write_is_one_error_line(what, images, tmp_path):
    """A full disk (/dev/full answers every write with ENOSPC): one ``error:`` line and a
    non-zero exit, never a traceback nor Python's "Exception ignored" at exit."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    if what == "analyze --out":
        argv, stdout = ["analyze", str(images / "color.jpg"), "--out", "/dev/full", *INF], subprocess.PIPE
    elif what == "analyze stdout":
        argv, stdout = ["analyze", str(images / "color.jpg"), *INF], open("/dev/full", "w")  # noqa: SIM115
    else:
        argv = ["stats", "--db", _stats_db(tmp_path), "--k", "1", "--format", "json"]
        stdout = open("/dev/full", "w")  # noqa: SIM115
    try:
        done = subprocess.run(
            [sys.executable, "-m", "emolens", *argv], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        if stdout is not subprocess.PIPE:
            stdout.close()
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert "analyzed" not in done.stderr  # no summary claiming the faces were written


# ---------------------------------------------------------------- the server extra


SERVER = ("grpc", "grpc_health", "grpc_reflection")  # what the `server` extra brings


def test_the_embedded_verbs_need_no_grpc(demo_clip, tmp_path):
    """analyze, run, stats and report, the embedded shape, run with the `server` extra's modules
    unimportable (as after `pip install 'emolens[demo]'`), and never try to load them."""
    db = f"sqlite:///{tmp_path / 'e.db'}"
    probe = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({SERVER!r}))  # `import grpc` raises, as if not installed\n"
        "from emolens.cli import main\n"
        f"assert main(['analyze', {str(demo_clip)!r}, '--out', {str(tmp_path / 'f.jsonl')!r}, *{INF!r}]) == 0\n"
        f"assert main(['run', '--source', {str(demo_clip)!r}, '--camera-id', 'c', '--db', {db!r},"
        f" '--start', '2026-01-01T12:00', *{INF!r}]) == 0\n"
        f"assert main(['stats', '--db', {db!r}, '--k', '1', '--format', 'csv']) == 0\n"
        f"assert main(['report', '--db', {db!r}, '--since', '2026-01-01', '--until', '2026-01-02',"
        f" '--k', '1', '--out', {str(tmp_path / 'r.html')!r}]) == 0\n"
        f"print(sorted(m for m in sys.modules if m.startswith({SERVER!r}) and sys.modules[m] is not None))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert "c,2026-01-01T12:00" in done.stdout  # stats printed the run's minute
    assert (tmp_path / "r.html").stat().st_size > 0


@pytest.mark.parametrize("argv", [["gateway", "--port", "0"], ["ingest", "--source", "x.mp4", "--camera-id", "c"]])
def test_a_service_without_the_server_extra_is_one_line(monkeypatch, capsys, tmp_path, argv):
    for name in [m for m in sys.modules if m.startswith(("emolens.services", "emolens.v1")) or m in SERVER]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, and put back afterwards
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if the extra were not installed
    assert main([*argv, "--db", f"sqlite:///{tmp_path / 's.db'}"] if argv[0] == "gateway" else argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    needs = "needs 'grpc', which is not installed here: pip install 'emolens[server]'"
    assert line == f"error: `emolens {argv[0]}` {needs}"


def test_each_verb_is_a_module_of_its_own():
    """The entry point only maps names to modules: each verb's module adds its own options and
    runs its own code, and `emolens --help` lists them in the order of that map."""
    import argparse

    from emolens.cli import VERBS, build_parser, tools

    (verbs,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(verbs.choices) == [*VERBS, *tools.HELP]
    for name, module in VERBS.items():
        assert module.__name__ == f"emolens.cli.{name}"
        assert verbs.choices[name].get_default("func") is module.run
    for name in tools.HELP:
        assert verbs.choices[name].get_default("func") is tools.run
