"""What the redelivery bookkeeping costs: synthetic observations of one camera for two "days"
applied to SQLite, once keeping every frame's bit and once pruning the first day's blocks before
the second; rows, bookkeeping bytes (SQLite's own page accounting, ``dbstat``) and file size
after each step, against the same frames kept as one row each (the layout before revision 0004)
(docs/reliability.md, "Bounded redelivery bookkeeping"). The test runs a camera-hour at 5 fps in
seconds; the documented figures are one camera-day at 5 fps:

    .venv/bin/python -m tests.unit.test_bookkeeping_size --frames 432000

and the same camera-day on PostgreSQL (a throwaway server from ``emolens_tools.dev``), bytes per
table as ``pg_total_relation_size`` counts them (heap, indexes, TOAST; partitions summed):

    .venv/bin/python -m tests.unit.test_bookkeeping_size --postgres
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, String, Table, create_engine, func, select

from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.store import SqlStore, seen
from emolens.store.sql import bucket_tracks, frames_seen_blocks, minute_buckets

FPS = 5.0
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
BATCH = 512  # the aggregator's max_records


def observations(frames: int, day: int, seed: int = 0) -> Iterator[list[FrameObservations]]:
    """Batches of one camera's frames from ``DAY0 + day``: 0-3 visitors in view, each tracked
    for 5-30 s, a new one arriving every 8 s on average; a quarter of faces low quality."""
    rng = random.Random(seed + day)
    visitors: list[tuple[int, int]] = []  # (track id, last frame index)
    next_track = day << 32
    batch: list[FrameObservations] = []
    for i in range(frames):
        visitors = [(t, end) for t, end in visitors if end >= i]
        if len(visitors) < 3 and rng.random() < 1 / (8 * FPS):
            next_track += 1
            visitors.append((next_track, i + int(rng.uniform(5, 30) * FPS)))
        faces = []
        for track, _ in visitors:
            probs = {e: rng.random() for e in EMOTIONS}
            total = sum(probs.values())
            probs = {e: p / total for e, p in probs.items()}
            quality = rng.random()
            box = (0, 0, 40, 40)
            faces.append(FaceResult(box, [(0, 0)] * 6, 0.9, quality, quality < 0.25, rng.random(), probs, track))
        stamp = DAY0 + timedelta(days=day, seconds=i / FPS)
        batch.append(FrameObservations("cam-m", day * frames + i, stamp, faces))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class Snapshot:
    step: str
    seconds: float  # the step's own time (applying the day's frames, or the prune)
    seen_blocks: int  # frames_seen_blocks rows
    seen_bytes: int  # pages of frames_seen_blocks and its indexes
    bucket_tracks: int
    minute_buckets: int
    file_bytes: int  # database + write-ahead log, after a checkpoint
    free_bytes: int  # pages SQLite keeps for reuse after a delete


def snapshot(store: SqlStore, path: Path, step: str, seconds: float = 0.0) -> Snapshot:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [
            conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (frames_seen_blocks, bucket_tracks)
        ]
        seen_bytes = table_bytes(conn, "frames_seen_blocks")
        buckets = conn.execute(select(func.count()).select_from(minute_buckets)).scalar_one()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        page = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    return Snapshot(step, seconds, rows[0], seen_bytes, rows[1], buckets, size, free * page)


def table_bytes(conn: Any, table: str) -> int:
    """Bytes of the pages a table and its indexes take, as SQLite counts them."""
    names = [table] + [
        r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_schema WHERE tbl_name = ?", (table,)) if r[0]
    ]
    marks = ", ".join("?" * len(names))
    return int(conn.exec_driver_sql(f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})", tuple(names)).scalar())


def per_frame_table(name: str) -> Table:
    """The layout before revision 0004: one row per frame accepted (its primary key and the
    index on ``seen_at``)."""
    return Table(
        name,
        MetaData(),
        Column("camera_id", String(128), primary_key=True),
        Column("frame_seq", BigInteger, primary_key=True, autoincrement=False),
        Column("seen_at", DateTime(timezone=False), nullable=False),
        Index(f"ix_{name}_seen_at", "seen_at"),
    )


def fill_per_frame(conn: Any, table: Table, frames: int) -> None:
    """Day 0's frames (``observations``), one row each, as the old store wrote them."""
    now = datetime(2026, 3, 1, 12, 0, 0, 123456)
    for batch in observations(frames, day=0):
        conn.execute(
            table.insert(), [{"camera_id": f.camera_id, "frame_seq": f.frame_seq, "seen_at": now} for f in batch]
        )


def per_frame_row_bytes(folder: Path, frames: int) -> int:
    """The same day of frames kept as one row each (``frames_seen`` before revision 0004), in
    bytes of SQLite pages."""
    engine = create_engine(f"sqlite:///{folder / 'rows.db'}")
    table = per_frame_table("frames_seen")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        fill_per_frame(conn, table, frames)
        out = table_bytes(conn, "frames_seen")
    engine.dispose()
    return out


def measure(folder: Path, frames: int) -> dict[str, list[Snapshot]]:
    """Day 1, then (pruned run only) the window passing, then day 2, in two databases."""
    out: dict[str, list[Snapshot]] = {}
    for run in ("kept", "pruned"):
        path = folder / f"{run}.db"
        store = SqlStore(f"sqlite:///{path}")
        steps = [snapshot(store, path, "empty")]
        t0 = time.perf_counter()
        for batch in observations(frames, day=0):
            store.apply(batch)
        steps.append(snapshot(store, path, "day 1", time.perf_counter() - t0))
        if run == "pruned":
            t0 = time.perf_counter()
            store.prune_seen(timedelta(0))  # the window has passed for every frame of day 1
            steps.append(snapshot(store, path, "day 1 pruned", time.perf_counter() - t0))
        t0 = time.perf_counter()
        for batch in observations(frames, day=1):
            store.apply(batch)
        steps.append(snapshot(store, path, "day 2", time.perf_counter() - t0))
        store.close()
        out[run] = steps
    return out


def table(result: dict[str, list[Snapshot]]) -> str:
    lines = [
        "| run | step | seconds | frames_seen_blocks rows | their bytes | bucket_tracks rows | minute_buckets rows "
        "| file | free in file |"
    ]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run, steps in result.items():
        for s in steps:
            lines.append(
                f"| {run} | {s.step} | {s.seconds:.1f} "
                f"| {s.seen_blocks:,} | {s.seen_bytes:,} | {s.bucket_tracks:,} | {s.minute_buckets:,} "
                f"| {s.file_bytes / 2**20:.2f} MiB | {s.free_bytes / 2**20:.2f} MiB |"
            )
    return "\n".join(lines)


def test_pruning_keeps_the_redelivery_rows_to_one_window(tmp_path):
    frames = int(3600 * FPS)  # one camera-hour
    result = measure(tmp_path, frames)
    print("\n" + table(result))
    kept, pruned = ({s.step: s for s in result[run]} for run in ("kept", "pruned"))
    day1, day2 = ({seq // seen.BLOCK_FRAMES for seq in range(d * frames, (d + 1) * frames)} for d in (0, 1))
    assert kept["day 1"].seen_blocks == len(day1) == 18  # consecutive frames: one row per 1024
    assert kept["day 2"].seen_blocks == len(day1 | day2)
    assert pruned["day 1 pruned"].seen_blocks == 0 and pruned["day 2"].seen_blocks == len(day2)
    # the data itself is never pruned: both runs hold the same buckets and tracks
    for table_rows in ("bucket_tracks", "minute_buckets"):
        assert getattr(pruned["day 2"], table_rows) == getattr(kept["day 2"], table_rows)


def test_a_bit_per_frame_is_over_fifty_times_smaller_than_a_row_per_frame(tmp_path):
    frames = int(3600 * FPS)
    result = measure(tmp_path, frames)
    day1 = {s.step: s for s in result["kept"]}["day 1"]
    rows = per_frame_row_bytes(tmp_path, frames)
    print(f"\n{frames:,} frames: one row each {rows:,} bytes, bitmaps {day1.seen_bytes:,} bytes")
    assert day1.seen_bytes * 50 <= rows
    assert rows / frames > 40  # a row per frame really was tens of bytes (key, time, two indexes)


def postgres_sizes(url: str, frames: int) -> dict[str, int]:
    """One camera-day through ``SqlStore.apply`` on PostgreSQL, then the same frames as one row
    each (``frames_seen_rows``, the layout before revision 0004, for comparison): bytes per table."""
    store = SqlStore(url)
    for batch in observations(frames, day=0):
        store.apply(batch)
    rows = per_frame_table("frames_seen_rows")
    rows.metadata.create_all(store.engine)
    with store.engine.begin() as conn:
        fill_per_frame(conn, rows, frames)
    with store.engine.connect() as conn:
        sized = conn.exec_driver_sql(
            "SELECT regexp_replace(c.relname, '_p[0-9]{8}$', ''), sum(pg_total_relation_size(c.oid)) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY 1 ORDER BY 1"
        ).all()
    store.close()
    return {name: int(size) for name, size in sized}


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=int(86400 * FPS), help="frames per day (one camera-day)")
    parser.add_argument("--postgres", action="store_true", help="measure on a throwaway PostgreSQL instead")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.postgres:
        from emolens_tools import dev

        with tempfile.TemporaryDirectory() as folder:
            Path(folder).chmod(0o755)  # the postgres user must reach its data folder inside
            server = dev.start_postgres(Path(folder) / "pg")
            try:
                sizes = postgres_sizes(server.url, args.frames)
            finally:
                dev.stop(server)
        print("| table | bytes |\n| --- | ---: |")
        for name, size in sizes.items():
            print(f"| {name} | {size:,} |")
        store_bytes = sum(v for k, v in sizes.items() if k != "frames_seen_rows")
        print(f"store (without frames_seen_rows): {store_bytes:,} bytes for {args.frames:,} frames")
        print(f"{args.frames:,} frames a day, {time.perf_counter() - t0:.1f} s")
        raise SystemExit(0)
    with tempfile.TemporaryDirectory() as folder:
        print(table(measure(Path(folder), args.frames)))
        rows = per_frame_row_bytes(Path(folder), args.frames)
        print(f"the same frames as one row each (before revision 0004): {rows:,} bytes")
    print(f"{args.frames:,} frames a day, {time.perf_counter() - t0:.1f} s")
