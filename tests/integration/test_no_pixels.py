"""No face pixels persisted (docs/architecture.md, "Privacy by design"): the distributed stack
runs end to end (ingest -> Kafka -> detect on Triton -> Kafka -> aggregate into PostgreSQL and
Redis), the gateway answers one AnalyzeImage, and `emolens run` runs embedded; the services log
at their default level (INFO) to files. Then everything they keep is searched:

- where: a full ``pg_dump`` of the database, every Redis key (values by type, and DUMP), the
  observations topic and its dead-letter topic, every log file, the embedded run's SQLite file
  and everything else in its output folder;
- for what: JPEG (FF D8 FF) and PNG (89 50 4E 47) signatures raw, as hex (``ffd8ff``: bytea in
  pg_dump), as escaped bytes (``\\xff\\xd8\\xff``: a repr in a log), in base64 (``/9j/``,
  ``iVBORw0KGgo``, and any base64 or hex run decoded, whatever the alignment), and crop-sized
  arrays: 48*48 numbers in a row (byte values or floats), or that many bytes as base64 or hex.

Raw pixel bytes inside a binary file cannot be told from other bytes, so the stores are also
asked whether they have a place for a crop at all: no bytea or array column in PostgreSQL, no
BLOB (or crop-long text) cell in SQLite, no binary or crop-long Redis value, no bytes field in
an observation message.

Controls run the same search over the same files with a real face crop slipped in, in each of
those forms, and give each store check a crop to find: all must find it, so the test can fail.
The frames topic, the one place frames live, must have a short retention.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, Message, dead_letter_topic, make_bus
from emolens.store import SqlStore
from emolens_tools import dev
from tests.conftest import MODEL_REPO
from tests.integration.conftest import topic_configs, wait_until

pytestmark = pytest.mark.pixel

CROP = 48  # the emotion model's crop side: the smallest face image worth keeping
START = "2026-04-02T09:00:00"

# ---------------------------------------------------------------- the search

JPEG = b"\xff\xd8\xff"
PNG = b"\x89PNG\r\n\x1a\n"
SIGNATURES = {"jpeg": JPEG, "png": PNG[:4]}
PATTERNS: dict[str, re.Pattern[bytes]] = {
    "jpeg": re.compile(re.escape(JPEG)),
    "png": re.compile(re.escape(PNG[:4])),
    "jpeg-hex": re.compile(rb"ffd8ff", re.I),  # PostgreSQL's bytea in pg_dump, bytes.hex() in a log
    "png-hex": re.compile(rb"89504e47", re.I),
    "jpeg-escaped": re.compile(rb"\\xff\\xd8\\xff", re.I),  # a bytes object logged with %r
    "png-escaped": re.compile(rb"\\x89PNG"),
    "jpeg-base64": re.compile(rb"/9j/|_9j_"),  # FF D8 FF at the start of a base64 text
    "png-base64": re.compile(rb"iVBORw0KGgo"),
    # a crop's CROP*CROP values as text: base64 (4 characters per 3 bytes) or hex (2 per byte)
    "base64-run": re.compile(rb"[A-Za-z0-9+/]{%d,}" % (CROP * CROP * 4 // 3)),
    "hex-run": re.compile(rb"[0-9a-fA-F]{%d,}" % (CROP * CROP * 2)),
}
# encoded runs long enough to hold an image worth leaking (a JPEG crop is hundreds of bytes);
# shorter ones (identifiers, hashes) would decode to chance bytes
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{64,}")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){32,}")
_NUMBER = re.compile(rb"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_SEPARATOR = re.compile(rb"[\s,;\[\]()]+")


def _number_runs(data: bytes, least: int) -> list[int]:
    """Offsets of runs of at least ``least`` numbers separated only by commas, spaces or brackets
    (a crop as a list of byte values, or of normalised floats)."""
    found, run, start, end = [], 0, 0, -1
    for m in _NUMBER.finditer(data):
        if run and _SEPARATOR.fullmatch(data, end, m.start()):
            run += 1
        else:
            if run >= least:
                found.append(start)
            run, start = 1, m.start()
        end = m.end()
    if run >= least:
        found.append(start)
    return found


def _encoded_signatures(data: bytes) -> list[str]:
    """Image signatures inside base64 or hex text, wherever in the encoded bytes they start
    (the literal patterns only see one alignment): each run is decoded and searched."""
    found = []
    for m in _BASE64_RUN.finditer(data):
        run = m.group().replace(b"-", b"+").replace(b"_", b"/")
        for shift in range(4):  # the run may begin mid-quantum
            chunk = run[shift:]
            decoded = base64.b64decode(chunk[: len(chunk) // 4 * 4])
            found += [f"{kind}-in-base64@{m.start()}" for kind, sig in SIGNATURES.items() if sig in decoded]
    for m in _HEX_RUN.finditer(data):
        decoded = bytes.fromhex(m.group().decode())
        found += [f"{kind}-in-hex@{m.start()}" for kind, sig in SIGNATURES.items() if sig in decoded]
    return found


def image_data(data: bytes) -> list[str]:
    """What in ``data`` looks like image data, ``kind@offset`` for each finding: JPEG and PNG
    signatures raw, escaped or encoded, and crop-sized runs of numbers, base64 or hex."""
    found = [f"{kind}@{m.start()}" for kind, pattern in PATTERNS.items() for m in pattern.finditer(data)]
    found += _encoded_signatures(data)
    found += [f"numbers@{o}" for o in _number_runs(data, CROP * CROP)]
    return found


# The one binary column: redelivery bitmaps (one bit a frame, 1024 frames a cell). A cell longer
# than a bitmap counts as a place for a crop.
BITMAP_COLUMNS = {("frames_seen_blocks", "bits"): 128}


def sqlite_cells_that_could_hold_a_crop(path: Path) -> list[str]:
    """Cells of any table that are BLOBs, or text as long as a crop's bytes: raw pixels in a
    file of pages cannot be told from other binary data, so the store's cells are read."""
    import sqlite3

    found = []
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                bitmap = BITMAP_COLUMNS.get((table, column))
                blob = "typeof(\"{c}\") = 'blob'" if bitmap is None else 'length("{c}") > ' + str(bitmap)
                (n,) = db.execute(
                    f'SELECT count(*) FROM "{table}" WHERE {blob.format(c=column)} '
                    f'OR (typeof("{column}") = \'text\' AND length("{column}") >= ?)',
                    (CROP * CROP,),
                ).fetchone()
                if n:
                    found.append(f"{table}.{column}: {n}")
    return found


def postgres_columns_that_could_hold_bytes(conn) -> list[str]:
    """Columns of type bytea (or arrays, which could hold a crop's values) on ``conn``'s database;
    a bitmap column counts only where a cell is longer than a bitmap."""
    rows = conn.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
        "AND (data_type = 'bytea' OR data_type = 'ARRAY')"
    ).fetchall()
    found = []
    for schema, table, column, kind in rows:
        bitmap = BITMAP_COLUMNS.get((table, column))
        if bitmap is not None and kind == "bytea":
            (n,) = conn.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE octet_length("{column}") > {bitmap}'
            ).fetchone()
            if not n:
                continue
            kind = f"bytea, {n} cells longer than a bitmap"
        found.append(f"{schema}.{table}.{column} ({kind})")
    return found


def redis_values_that_could_hold_a_crop(values: dict[str, list[bytes]]) -> list[str]:
    """Values not plain UTF-8 text, or as long as a crop's bytes (Redis values are binary-safe)."""
    found = []
    for key, items in values.items():
        for v in items:
            try:
                v.decode()
            except UnicodeDecodeError:
                found.append(f"{key}: binary value of {len(v)} bytes")
                continue
            if len(v) >= CROP * CROP:
                found.append(f"{key}: value of {len(v)} bytes")
    return found


def bytes_fields(descriptor) -> list[str]:
    """Fields of a protobuf message type, nested ones included, that can carry bytes."""
    from google.protobuf.descriptor import FieldDescriptor

    found = []
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_BYTES:
            found.append(f.full_name)
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            found += bytes_fields(f.message_type)
    return found


# ---------------------------------------------------------------- the run


@dataclass
class Kept:
    """Everything the run left behind: bytes by where they were found (searched for image
    data), and the stores themselves (checked for cells that could hold a crop)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    sqlite: Path = Path()
    postgres_url: str = ""
    redis_values: dict[str, list[bytes]] = field(default_factory=dict)
    observations: list[Message] = field(default_factory=list)


def _stored(db: str, camera: str) -> int:
    store = SqlStore(db, create=False)
    try:
        return sum(b.frames for b in store.buckets(camera_id=camera))
    finally:
        store.close()


def _analyze_image_once(port: int, image: np.ndarray) -> int:
    import grpc

    from emolens.v1 import analytics_pb2, analytics_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=120)
        reply = analytics_pb2_grpc.AnalyticsStub(channel).AnalyzeImage(
            analytics_pb2.AnalyzeImageRequest(image=cv2.imencode(".jpg", image)[1].tobytes()), timeout=60
        )
    return len(reply.faces)


def _redis_values(url: str) -> tuple[dict[str, list[bytes]], bytes]:
    """Every key's values read by type, and the DUMP (serialised value) of every key."""
    import redis

    r = redis.Redis.from_url(url)
    values: dict[str, list[bytes]] = {}
    dumps = []
    for key in r.scan_iter(count=1000):
        dumps += [key, r.dump(key) or b""]
        kind = r.type(key).decode()
        if kind == "string":
            items = [r.get(key) or b""]
        elif kind == "hash":
            items = [b for kv in r.hgetall(key).items() for b in kv]
        elif kind == "list":
            items = r.lrange(key, 0, -1)
        elif kind == "set":
            items = list(r.smembers(key))
        elif kind == "zset":
            items = [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        else:  # a stream or a module type: nothing of ours makes one
            items = [repr(r.xrange(key)).encode()] if kind == "stream" else [kind.encode()]
        values[key.decode(errors="replace")] = items
    r.close()
    return values, b"\n".join(dumps)


def _topic_messages(kafka_url: str, topics: list[str]) -> list[Message]:
    """Every message of ``topics`` from the beginning (a fresh group)."""
    bus = make_bus(kafka_url)
    consumer = bus.consumer(topics, f"pixel-audit-{uuid.uuid4().hex[:8]}")
    messages, idle_since = [], time.monotonic()
    while time.monotonic() - idle_since < 5:
        batch = consumer.poll(0.5, 500)
        if batch:
            idle_since = time.monotonic()
        messages += batch
    consumer.close()
    bus.close()
    return messages


def _run_the_stack(work: Path, env: dict[str, str], camera: str, clip: Path, face: np.ndarray) -> None:
    """Detector and aggregator as long-running services, one ingest of ``clip``, then the
    gateway's AnalyzeImage on ``face``; every process logs to ``work/logs`` and is stopped
    (SIGTERM, logs flushed) before this returns."""
    logs = work / "logs"
    db, live = env["EMOLENS_DB"], env["EMOLENS_LIVE"]
    services: list[dev.Service] = []
    try:
        services.append(dev.start_emolens("detector", ["detect"], env, logs))
        services.append(dev.start_emolens("aggregator", ["aggregate"], env, logs))
        with (logs / "ingest.log").open("wb") as log:
            cmd = [sys.executable, "-m", "emolens", "ingest", "--source", str(clip), "--camera-id", camera]
            cmd += ["--zone", "gate", "--site", "hq", "--fps", "10", "--start", START, "--seq-start", "900000"]
            env_all = {**os.environ, **env}
            subprocess.run(cmd, env=env_all, stdout=log, stderr=subprocess.STDOUT, timeout=300, check=True)
        wait_until("40 frames stored", lambda: _stored(db, camera) == 40, timeout_s=300, every_s=0.5)
        port = dev.free_port()
        services.append(dev.start_emolens("gateway", ["gateway", "--port", str(port), "--live", live], env, logs))
        assert _analyze_image_once(port, face) >= 1
    finally:
        for svc in reversed(services):
            dev.stop(svc)


@pytest.fixture(scope="module")
def kept(tmp_path_factory, demo_clip, astronaut, kafka_url, postgres_url, redis_url, triton_url) -> Iterator[Kept]:
    work = tmp_path_factory.mktemp("pixels")
    env = {"EMOLENS_BUS": kafka_url, "EMOLENS_INFERENCE": triton_url, "EMOLENS_DB": postgres_url}
    env["EMOLENS_LIVE"] = redis_url
    camera = "cam-pixel"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("EMOLENS_LOG_LEVEL", "EMOLENS_LOG_FORMAT"):  # the services' own default: INFO, text
            mp.delenv(name, raising=False)
        _run_the_stack(work, env, camera, demo_clip, astronaut)

    out = work / "embedded"
    out.mkdir()
    with (work / "logs" / "embedded.log").open("wb") as log:
        cmd = [sys.executable, "-m", "emolens", "run", "--source", str(demo_clip), "--camera-id", "cam-pixel-emb"]
        cmd += ["--db", f"sqlite:///{out / 'emolens.db'}", "--fps", "10", "--start", START]
        cmd += ["--inference", f"onnx://{MODEL_REPO}"]
        subprocess.run(
            cmd,
            cwd=out,
            env={**os.environ, "EMOLENS_LOG_LEVEL": "INFO"},
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    assert _stored(f"sqlite:///{out / 'emolens.db'}", "cam-pixel-emb") == 40

    port = postgres_url.rsplit(":", 1)[1].split("/")[0]
    dump = subprocess.run(
        [dev._pg_bin("pg_dump"), "-h", "127.0.0.1", "-p", port, "-U", "emolens", "--no-owner", "emolens"],
        capture_output=True,
        check=True,
    ).stdout
    assert b"minute_buckets" in dump and b"cam-pixel" in dump  # the dump holds the run's data
    redis_values, redis_dumps = _redis_values(redis_url)
    observations = _topic_messages(kafka_url, [OBSERVATIONS_TOPIC, dead_letter_topic(OBSERVATIONS_TOPIC)])
    blobs = {
        "pg_dump": dump,
        "redis": b"\n".join(k.encode() + b"\n" + b"\n".join(v) for k, v in redis_values.items()),
        "redis:dump": redis_dumps,
        "kafka:observations": b"\n".join(m.key.encode() + b"\n" + m.value for m in observations),
    }
    assert b"cam-pixel" in blobs["redis"] and b"cam-pixel" in blobs["kafka:observations"]
    for path in sorted((work / "logs").rglob("*.log")):
        blobs[f"log:{path.name}"] = path.read_bytes()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        blobs[f"embedded:{path.relative_to(out)}"] = path.read_bytes()
    yield Kept(blobs, out / "emolens.db", postgres_url, redis_values, observations)


# ---------------------------------------------------------------- the checks


def test_services_log_at_info_by_default(kept):
    """The logs searched below are not empty: at their default level the services log events."""
    for name in ("detector", "aggregator", "gateway", "ingest"):
        text = kept.blobs[f"log:{name}.log"].decode(errors="replace")
        assert "level=INFO" in text and "event=" in text, (name, text[-2000:])


def test_nothing_kept_holds_image_data(kept):
    expected = {"pg_dump", "redis", "redis:dump", "kafka:observations", "log:embedded.log", "embedded:emolens.db"}
    assert expected <= set(kept.blobs)
    found = {name: image_data(blob)[:5] for name, blob in kept.blobs.items()}
    assert not any(found.values()), {k: v for k, v in found.items() if v}


def test_no_store_has_a_place_for_a_crop(kept):
    """Raw pixels in binary files cannot be told from other bytes, so the stores are asked:
    no bytea or array column in PostgreSQL, no BLOB or crop-long text in the SQLite store, no
    binary or crop-long Redis value, and no bytes field in an observation message (each parses)."""
    import psycopg

    from emolens.v1 import observations_pb2

    with psycopg.connect(kept.postgres_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        assert postgres_columns_that_could_hold_bytes(conn) == []
    assert sqlite_cells_that_could_hold_a_crop(kept.sqlite) == []
    assert kept.redis_values and redis_values_that_could_hold_a_crop(kept.redis_values) == []
    assert bytes_fields(observations_pb2.FrameObservations.DESCRIPTOR) == []
    assert kept.observations
    for m in kept.observations:
        if m.topic == OBSERVATIONS_TOPIC:
            observations_pb2.FrameObservations.FromString(m.value)


def test_the_frames_topic_is_the_only_place_frames_live_and_it_forgets(kafka_url):
    """Frames (the pixels) stay in ``emolens.frames`` for 10 minutes by default, its segments
    rolled as often, so Kafka can delete them in time (docs/deploy.md, "Kafka topics")."""
    from emolens.v1 import frames_pb2

    assert bytes_fields(frames_pb2.Frame.DESCRIPTOR) == ["emolens.v1.Frame.jpeg"]
    configs = topic_configs(kafka_url.removeprefix("kafka://"), [FRAMES_TOPIC])[FRAMES_TOPIC]
    assert int(configs["retention.ms"]) <= 10 * 60_000
    assert int(configs["segment.ms"]) <= int(configs["retention.ms"])


# ---------------------------------------------------------------- the controls: the search can fail


@pytest.fixture(scope="module")
def face_crop(astronaut, analyzer) -> np.ndarray:
    """A real face, as the detector crops it: grayscale, CROP x CROP."""
    (face, *_) = analyzer.analyze(astronaut)
    x0, y0, x1, y1 = (int(v) for v in face.box)
    gray = cv2.cvtColor(astronaut[max(y0, 0) : y1, max(x0, 0) : x1], cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, (CROP, CROP), interpolation=cv2.INTER_AREA)


def _leaks(crop: np.ndarray) -> dict[str, bytes]:
    jpeg = cv2.imencode(".jpg", crop)[1].tobytes()
    png = cv2.imencode(".png", crop)[1].tobytes()
    return {
        "jpeg": jpeg,
        "png": png,
        "jpeg-hex": b"\\x" + jpeg.hex().encode(),  # a bytea column in pg_dump
        "jpeg-escaped": repr(jpeg).encode(),  # a bytes object logged with %r
        "jpeg-base64": b"crop=" + base64.b64encode(jpeg),
        "png-base64": b'{"crop": "' + base64.b64encode(png) + b'"}',
        "jpeg-base64-shifted": b"frame=" + base64.b64encode(b"xy" + jpeg),
        "jpeg-urlsafe-base64": base64.urlsafe_b64encode(b"z" + jpeg),
        "numbers": repr(crop.ravel().tolist()).encode(),
        "floats": ", ".join(f"{v / 255:.4f}" for v in crop.ravel()).encode(),
        "raw-base64": base64.b64encode(crop.tobytes()),
        "raw-hex": crop.tobytes().hex().encode(),
    }


@pytest.mark.parametrize("form", list(_leaks(np.zeros((CROP, CROP), np.uint8))))
def test_the_search_finds_a_face_crop_in_every_form(kept, face_crop, form):
    """The control: the same search over each kind of file the run kept, with the crop slipped
    into its middle, finds it; the same files without it are clean (the test above)."""
    leak = _leaks(face_crop)[form]
    for name in ("pg_dump", "redis", "kafka:observations", "log:detector.log", "embedded:emolens.db"):
        clean = kept.blobs[name]
        middle = len(clean) // 2
        assert image_data(clean[:middle] + b"\n" + leak + b"\n" + clean[middle:]), (form, name)


def test_the_store_checks_find_a_crop_given_a_place(kept, face_crop, tmp_path):
    """The control of the stores' checks: a bytea column, a crop in a copy of the SQLite store,
    a crop in a Redis value, and the one message that does carry pixels (a frame)."""
    import shutil
    import sqlite3

    import psycopg

    from emolens.v1 import frames_pb2

    with psycopg.connect(kept.postgres_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TEMP TABLE leak (face bytea)")  # gone with the connection
        assert postgres_columns_that_could_hold_bytes(conn)
    copy = tmp_path / "leaky.db"
    shutil.copy(kept.sqlite, copy)
    with sqlite3.connect(copy) as db:  # a camera's zone overwritten with the crop's bytes
        db.execute("UPDATE cameras SET zone = ? WHERE camera_id = 'cam-pixel-emb'", (face_crop.tobytes(),))
    assert sqlite_cells_that_could_hold_a_crop(copy) == ["cameras.zone: 1"]
    with sqlite3.connect(copy) as db:  # and a redelivery bitmap overwritten with it
        db.execute(
            "UPDATE frames_seen_blocks SET bits = ? WHERE rowid = (SELECT min(rowid) FROM frames_seen_blocks)",
            (face_crop.tobytes(),),
        )
    assert sqlite_cells_that_could_hold_a_crop(copy) == ["cameras.zone: 1", "frames_seen_blocks.bits: 1"]
    leaky = {**kept.redis_values, "emolens:live:cam-x": [b"crop", face_crop.tobytes()]}
    assert redis_values_that_could_hold_a_crop(leaky)
    assert bytes_fields(frames_pb2.Frame.DESCRIPTOR)
