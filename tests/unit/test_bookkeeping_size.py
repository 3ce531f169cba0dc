"""What the replay window saves: synthetic observations of one camera for two "days" applied to
SQLite, once keeping every frame's redelivery row and once pruning the first day's before the
second; rows and file size after each step (docs/reliability.md, "Bounded redelivery
bookkeeping"). The test runs a camera-hour at 5 fps in seconds; the documented figures are
one camera-day at 5 fps:

    .venv/bin/python -m tests.unit.test_bookkeeping_size --frames 432000
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.store import SqlStore
from emolens.store.sql import bucket_tracks, frames_seen, minute_buckets

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
    frames_seen: int
    bucket_tracks: int
    minute_buckets: int
    file_bytes: int  # database + write-ahead log, after a checkpoint
    free_bytes: int  # pages SQLite keeps for reuse after a delete


def snapshot(store: SqlStore, path: Path, step: str, seconds: float = 0.0) -> Snapshot:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (frames_seen, bucket_tracks)]
        buckets = conn.execute(select(func.count()).select_from(minute_buckets)).scalar_one()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        page = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    return Snapshot(step, seconds, rows[0], rows[1], buckets, size, free * page)


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
        "| run | step | seconds | frames_seen rows | bucket_tracks rows | minute_buckets rows | file | free in file |"
    ]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run, steps in result.items():
        for s in steps:
            lines.append(
                f"| {run} | {s.step} | {s.seconds:.1f} "
                f"| {s.frames_seen:,} | {s.bucket_tracks:,} | {s.minute_buckets:,} "
                f"| {s.file_bytes / 2**20:.2f} MiB | {s.free_bytes / 2**20:.2f} MiB |"
            )
    return "\n".join(lines)


def test_pruning_keeps_the_redelivery_rows_to_one_window(tmp_path):
    frames = int(3600 * FPS)  # one camera-hour
    result = measure(tmp_path, frames)
    print("\n" + table(result))
    kept, pruned = ({s.step: s for s in result[run]} for run in ("kept", "pruned"))
    assert kept["day 2"].frames_seen == 2 * frames
    assert pruned["day 1 pruned"].frames_seen == 0 and pruned["day 2"].frames_seen == frames
    # the data itself is never pruned: both runs hold the same buckets and tracks
    for table_rows in ("bucket_tracks", "minute_buckets"):
        assert getattr(pruned["day 2"], table_rows) == getattr(kept["day 2"], table_rows)
    # SQLite reuses the freed pages: day 2 grows the pruned file by far less than day 1 did
    day1 = kept["day 1"].file_bytes - kept["empty"].file_bytes
    assert pruned["day 1 pruned"].file_bytes == pruned["day 1"].file_bytes  # a delete does not shrink it
    assert pruned["day 2"].file_bytes - pruned["day 1"].file_bytes < day1 / 2
    assert kept["day 2"].file_bytes - kept["day 1"].file_bytes > day1 * 0.8


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=int(86400 * FPS), help="frames per day (one camera-day)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        print(table(measure(Path(folder), args.frames)))
    print(f"{args.frames:,} frames a day, {time.perf_counter() - t0:.1f} s")
