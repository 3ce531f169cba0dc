"""`emolens report` on a real SQLite store filled through the aggregator's path (SqlStore.apply):
its figures against counts computed here from the frames themselves, the k rule, the CSV zip and
the HTML, and one line for each user mistake."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import random
import struct
import subprocess
import sys
import termios
import zipfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from emolens.analytics_report.model import DWELL_EDGES_S
from emolens.cli import main
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.store import Camera, SqlStore

CAMERAS = [
    Camera("cam-a1", "entrance", "mall-a"),
    Camera("cam-a2", "entrance", "mall-a"),
    Camera("cam-b1", "food-court", "mall-b"),
    Camera("cam-b2", "staff-room", "mall-b"),  # 1 visitor a day, staying 20 minutes: below k = 5
]
START = datetime(2026, 3, 1)  # the report covers 2026-03-03..05, the previous period 03-01..03
SINCE, UNTIL = datetime(2026, 3, 3), datetime(2026, 3, 5)


def _face(rng: random.Random, track: int) -> FaceResult:
    label = rng.choice(EMOTIONS)
    probs = dict.fromkeys(EMOTIONS, 0.05)
    probs[label] = 1 - 0.05 * (len(EMOTIONS) - 1)
    return FaceResult(
        box=(10, 10, 60, 60),
        landmarks=[],
        detection_score=0.9,
        quality=0.8,
        low_quality=False,
        smile=rng.choice([0.1, 0.9]),
        emotions=probs,
        track_id=track,
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A store with four days of visits, and what each zone and day should show."""
    path = tmp_path_factory.mktemp("report-db") / "stats.db"
    url = f"sqlite:///{path}"
    store = SqlStore(url)
    rng = random.Random(3)
    visitors: dict[tuple[str, str], set[tuple[str, int]]] = defaultdict(set)  # (zone, day) -> tracks
    faces: dict[tuple[str, str], int] = defaultdict(int)
    smiles: dict[tuple[str, str], int] = defaultdict(int)
    dwell_by_track: dict[tuple[str, int], tuple[datetime, datetime]] = {}
    try:
        for cam in CAMERAS:
            store.ensure_camera(cam)
            seq = 0
            track = 0
            for day in range(4):
                staff = cam.zone == "staff-room"
                for hour in (10,) if staff else (10, 13, 16):
                    n_tracks = 1 if staff else rng.randint(3, 6)
                    frames = []
                    for _ in range(n_tracks):
                        track += 1
                        begin = START + timedelta(days=day, hours=hour, minutes=rng.randint(0, 40))
                        seconds = 1200 if staff else rng.choice([3, 8, 15, 45, 90, 400])
                        for s in range(0, seconds + 1, max(1, seconds // 4)):
                            seq += 1
                            face = _face(rng, track)
                            t = begin + timedelta(seconds=s)
                            frames.append(FrameObservations(cam.camera_id, seq, t, [face]))
                            key = (f"{cam.site}/{cam.zone}", t.strftime("%Y-%m-%d"))
                            visitors[key].add((cam.camera_id, track))
                            faces[key] += 1
                            smiles[key] += face.smiling
                            first, _ = dwell_by_track.get((cam.camera_id, track), (t, t))
                            dwell_by_track[(cam.camera_id, track)] = (first, t)
                    store.apply(sorted(frames, key=lambda f: f.frame_seq))
    finally:
        store.close()
    return url, visitors, faces, smiles, dwell_by_track


def _zip_tables(path) -> dict[str, list[dict[str, str]]]:
    with zipfile.ZipFile(path) as zf:
        return {n[:-4]: list(csv.DictReader(io.StringIO(zf.read(n).decode()))) for n in zf.namelist()}


def _period_sum(table: dict, since: datetime, until: datetime, zone: str) -> int:
    days = {(since + timedelta(days=i)).strftime("%Y-%m-%d") for i in range((until - since).days)}
    return sum(len(v) for (z, d), v in table.items() if z == zone and d in days)


def test_csv_figures_match_counts_from_the_frames(filled, tmp_path, capsys):
    url, visitors, faces, smiles, dwell_by_track = filled
    out = tmp_path / "report.zip"
    argv = ["report", "--db", url, "--since", "2026-03-03", "--until", "2026-03-05", "--out", str(out), "--k", "5"]
    assert main(argv) == 0
    assert "report:" in capsys.readouterr().err
    t = _zip_tables(out)
    assert set(t) == {
        "summary",
        "change_by_group",
        "emotion_mix",
        "visitors",
        "dwell",
        "busiest_hours",
        "smile_heatmap",
    }
    prev = SINCE - (UNTIL - SINCE)
    by_zone = {row["zone"]: row for row in t["change_by_group"]}
    assert set(by_zone) == {"mall-a/entrance", "mall-b/food-court"}  # the staff room never reaches k
    for zone, row in by_zone.items():
        assert int(row["visitors"]) == _period_sum(visitors, SINCE, UNTIL, zone)
        assert int(row["visitors_previous"]) == _period_sum(visitors, prev, SINCE, zone)
        zone_faces = sum(v for (z, d), v in faces.items() if z == zone and "2026-03-03" <= d < "2026-03-05")
        zone_smiles = sum(v for (z, d), v in smiles.items() if z == zone and "2026-03-03" <= d < "2026-03-05")
        assert float(row["smile_rate"]) == pytest.approx(zone_smiles / zone_faces, abs=1e-4)
    summary = {row["metric"]: row for row in t["summary"]}
    assert int(summary["visitors"]["this_period"]) == sum(
        _period_sum(visitors, SINCE, UNTIL, z) for z in ("mall-a/entrance", "mall-b/food-court")
    )
    # dwell: every visitor first seen in the period, in its bin; bins below k are empty cells
    expected = [0] * len(DWELL_EDGES_S)
    for first, last in dwell_by_track.values():
        if SINCE <= first < UNTIL:
            seconds = (last - first).total_seconds()
            expected[max(i for i, e in enumerate(DWELL_EDGES_S) if seconds >= e)] += 1
    got = [row["visitors"] for row in t["dwell"]]
    assert got == [str(n) if n >= 5 else "" for n in expected]
    assert any(n >= 5 for n in expected) and any(0 < n < 5 for n in expected)  # both cases happen here
    for rows in t.values():
        assert "staff-room" not in str(rows)


def test_days_count_when_they_start_inside_the_period(filled, tmp_path):
    """--since 2026-03-03 in Berlin is 03-02 23:00 UTC: the UTC days that start inside the period
    are 03-03 and 03-04, as in UTC; 03-02 (which began an hour before) is not part of it."""
    url, visitors, *_ = filled
    common = ["report", "--db", url, "--since", "2026-03-03", "--until", "2026-03-05", "--k", "5"]
    assert main([*common, "--out", str(tmp_path / "utc.zip")]) == 0
    assert main([*common, "--tz", "Europe/Berlin", "--out", str(tmp_path / "berlin.zip")]) == 0
    utc = {r["zone"]: int(r["visitors"]) for r in _zip_tables(tmp_path / "utc.zip")["change_by_group"]}
    berlin = {r["zone"]: int(r["visitors"]) for r in _zip_tables(tmp_path / "berlin.zip")["change_by_group"]}
    assert berlin == utc == {z: _period_sum(visitors, SINCE, UNTIL, z) for z in utc}


def test_html_report_from_the_store(filled, tmp_path):
    url, *_ = filled
    out = tmp_path / "report.html"
    argv = [
        "report",
        "--db",
        url,
        "--since",
        "2026-03-03",
        "--until",
        "2026-03-05",
        "--by",
        "camera",
        "--out",
        str(out),
    ]
    assert main([*argv, "--tz", "Europe/Berlin"]) == 0
    html = out.read_text()
    for plot in ("change", "emotion-mix", "visitors", "dwell", "busiest-hours", "smile-heatmap"):
        assert f'data-plot="{plot}"' in html
    assert 'data-group="cam-a1"' in html and "cam-b2" not in html
    assert "in Europe/Berlin" in html


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--since", "2026-03-05", "--until", "2026-03-03"], "must be after"),
        (["--since", "March", "--until", "2026-03-03"], "not an ISO date"),
        (["--since", "2026-03-03", "--until", "2026-03-05", "--tz", "Mars/Olympus"], "not a time zone"),
        (["--since", "2026-03-03", "--until", "2026-03-05", "--format", "csv"], "zip"),
    ],
)
def test_user_mistakes_are_one_line(filled, tmp_path, capsys, extra, message):
    url, *_ = filled
    assert main(["report", "--db", url, "--out", str(tmp_path / "r.html"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


@pytest.mark.parametrize(
    "name, extra, message",
    [
        ("r.zip", ["--format", "html"], "--format html writes an HTML page, so name it *.html"),
        ("r.txt", [], "name it *.html for the report or *.zip for its tables as CSV"),
        ("r.txt", ["--format", "html"], "name it *.html for the report or *.zip for its tables as CSV"),
        ("r.html", ["--format", "csv"], "--format csv writes one CSV per table into a zip, so name it *.zip"),
    ],
)
def test_report_format_follows_the_out_suffix(filled, tmp_path, capsys, name, extra, message):
    """One rule for --out and --format: the suffix says what the file holds and --format, if
    given, must agree (before: HTML was written into r.zip and r.txt, only csv was checked)."""
    url, *_ = filled
    argv = ["report", "--db", url, "--since", "2026-03-03", "--until", "2026-03-05", "--out", str(tmp_path / name)]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"error: --out {tmp_path / name}: {message}", err
    assert not (tmp_path / name).exists()


def test_report_too_large_names_the_reports_own_remedies_once(filled):
    """The report has no --every: its refusal names what it does have, once (before: the stats
    hint, --every included, then the report's own)."""
    from emolens.analytics_report import collect
    from emolens.analytics_report.source import StoreSource
    from emolens.errors import QueryTooLarge

    url, *_ = filled
    store = SqlStore(url, create=False)
    try:
        with pytest.raises(QueryTooLarge) as err:
            collect(StoreSource(store, max_rows=10), SINCE, UNTIL, "camera", 5, UTC)
    finally:
        store.close()
    message = str(err.value)
    assert "--every" not in message and message.count("--since") == 1 and message.count("--by") == 1, message
    assert "span 4 camera(s) x 48 hour(s) = 192 rows, more than 10" in message, message


def test_missing_database_is_not_created(tmp_path, capsys):
    db = tmp_path / "nothing.db"
    argv = ["report", "--db", f"sqlite:///{db}", "--since", "2026-03-01", "--until", "2026-03-02"]
    assert main([*argv, "--out", str(tmp_path / "r.html")]) == 2
    assert "no such database" in capsys.readouterr().err and not db.exists()


def _stderr_of(argv: list[str], terminal: bool) -> str:
    """``emolens`` in a child process whose stderr is a terminal (a pseudo-terminal) or a pipe."""
    if not terminal:
        return subprocess.run(
            [sys.executable, "-m", "emolens", *argv], capture_output=True, text=True, check=True
        ).stderr
    main_fd, child_fd = os.openpty()
    # a terminal of 24 x 100 characters: in one of 0 x 0 (a bare pty) a progress bar has no room
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.run([sys.executable, "-m", "emolens", *argv], stderr=child_fd, stdout=subprocess.DEVNULL)
        os.close(child_fd)
        chunks = []
        while True:
            try:
                chunk = os.read(main_fd, 1 << 16)
            except OSError:  # EIO: the child's side is closed and everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(main_fd)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_only_on_a_terminal(filled, tmp_path):
    url, *_ = filled
    argv = ["report", "--db", url, "--since", "2026-03-03", "--until", "2026-03-05", "--out", str(tmp_path / "r.html")]
    on_terminal = _stderr_of(argv, terminal=True)
    assert "querying" in on_terminal and "rows" in on_terminal
    piped = _stderr_of(argv, terminal=False)
    assert "querying" not in piped and piped.startswith("report: ")
    assert "querying" not in _stderr_of([*argv, "--no-progress"], terminal=True)


def test_the_report_reads_the_row_limit_from_the_settings(filled, tmp_path):
    """EMOLENS_STATS_MAX_ROWS bounds `emolens report` as it bounds `stats` and QueryStats (the
    report used to keep its own 200,000)."""
    url, *_ = filled
    argv = [sys.executable, "-m", "emolens", "report", "--db", url, "--since", "2026-03-03", "--until", "2026-03-05"]
    argv += ["--by", "camera", "--out", str(tmp_path / "r.html")]
    small = subprocess.run(argv, env={**os.environ, "EMOLENS_STATS_MAX_ROWS": "10"}, capture_output=True, text=True)
    assert small.returncode == 2 and "more than 10" in small.stderr, small.stderr
    default = subprocess.run(argv, capture_output=True, text=True)
    assert default.returncode == 0, default.stderr


@pytest.mark.parametrize(("by", "offered"), [("camera", "(zone, site)"), ("zone", "(site)"), ("site", None)])
def test_report_too_large_offers_only_wider_groups(filled, by, offered):
    from emolens.analytics_report import collect
    from emolens.analytics_report.source import StoreSource
    from emolens.errors import QueryTooLarge

    url, *_ = filled
    store = SqlStore(url, create=False)
    try:
        with pytest.raises(QueryTooLarge) as err:
            collect(StoreSource(store, max_rows=2), SINCE, UNTIL, by, 5, UTC)
    finally:
        store.close()
    message = str(err.value)
    if offered is None:
        assert "--by" not in message, message
    else:
        assert f"a wider --by {offered}" in message, message
