"""Synthetic statistics: a city of cameras with realistic days and weeks, written through the
aggregator's own code (``scripts/generate_stats.py``, the analytics benchmark, the tests).

    python scripts/generate_stats.py --db postgresql+psycopg://... --cameras 200 --days 30

Each camera belongs to a zone and a site. Visitors arrive at a rate that follows the hour
(closed at night, a lunch and an evening peak) and the weekday (busier weekends), stay for
an exponentially distributed time and show one dominant emotion and smile that depend on the
zone; about one in ten is too far away to count (low quality). Every visitor is an anonymous
track id, unique per camera.

Two ways in, both through :mod:`emolens.store.rollups`, the code the aggregator runs:

- ``frames``: every frame as a :class:`~emolens.observations.FrameObservations` through
  :meth:`SqlStore.apply`, exactly as the aggregator stores them (redelivery check included).
  The tests use it, at a low frame rate, and compute the expected figures from these frames.
- ``minutes`` (the default, for months of data): the same visitors summed per camera-minute
  directly (what :func:`~emolens.store.base.fold_frames` would make of the frames) through
  :meth:`SqlStore.apply_folded`, skipping only the per-frame objects and the per-frame
  redelivery rows, which would cost 432,000 frames per camera-day at 5 fps. A test checks
  that both ways leave identical tables.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from emolens import logs
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS, FaceResult
from emolens.store import Bucket, Camera, Folded, Sighting, SqlStore

log = logging.getLogger(__name__)

ZONES = ("entrance", "food-court", "checkout", "atrium", "parking")
CAMERAS_PER_SITE = 20
# Relative arrivals per hour of the day: closed 23-07, a lunch and an evening peak.
HOURLY = (0, 0, 0, 0, 0, 0, 0, 0.2, 0.5, 0.7, 0.8, 0.9, 1.0, 0.9, 0.7, 0.7, 0.8, 0.9, 1.0, 0.9, 0.6, 0.4, 0.2, 0)
WEEKDAY = (0.8, 0.8, 0.85, 0.9, 1.0, 1.4, 1.2)  # Monday .. Sunday
# Emotion mix and smile share per zone: food courts are happier than checkouts.
ZONE_MIX = {
    "entrance": (0.03, 0.01, 0.02, 0.25, 0.07, 0.07, 0.55),
    "food-court": (0.02, 0.01, 0.01, 0.45, 0.05, 0.06, 0.40),
    "checkout": (0.07, 0.02, 0.02, 0.18, 0.11, 0.05, 0.55),
    "atrium": (0.02, 0.01, 0.02, 0.35, 0.06, 0.09, 0.45),
    "parking": (0.05, 0.02, 0.04, 0.15, 0.09, 0.05, 0.60),
}
ZONE_SMILE = {"entrance": 0.30, "food-court": 0.50, "checkout": 0.22, "atrium": 0.40, "parking": 0.18}
LOW_QUALITY_SHARE = 0.1
MEAN_DWELL_S = 120.0
MAX_DWELL_S = 1800.0


@dataclass(frozen=True)
class Visitor:
    track_id: int
    first: int  # first frame index of the day it is seen in
    last: int  # last frame index (inclusive)
    label: str
    smile: float
    quality: float
    low_quality: bool


def cameras(n: int) -> list[Camera]:
    """``n`` cameras, 20 to a site, the zones in turn.

    >>> [(c.camera_id, c.zone, c.site) for c in cameras(2)]
    [('cam-0000', 'entrance', 'site-00'), ('cam-0001', 'food-court', 'site-00')]
    """
    return [Camera(f"cam-{i:04d}", ZONES[i % len(ZONES)], f"site-{i // CAMERAS_PER_SITE:02d}") for i in range(n)]


def _probs(label: str) -> dict[str, float]:
    p = dict.fromkeys(EMOTIONS, 0.05)
    p[label] = 0.7
    return p


def visitors(camera: Camera, index: int, day: datetime, fps: float, seed: int, rate: float) -> list[Visitor]:
    """The visitors camera ``index`` sees on ``day`` (a naive UTC midnight), seeded by both, so
    any subset of cameras and days is generated the same way."""
    rng = np.random.default_rng([seed, index, day.toordinal()])
    mix = np.array(ZONE_MIX[camera.zone])
    scale = rate * WEEKDAY[day.weekday()] * (0.6 + 0.8 * ((index * 7919) % 100) / 100)  # busier and quieter cameras
    out: list[Visitor] = []
    for hour, busy in enumerate(HOURLY):
        n = int(rng.poisson(scale * busy)) if busy else 0
        if not n:
            continue
        arrive = hour * 3600 + rng.uniform(0, 3600, n)
        dwell = np.minimum(rng.exponential(MEAN_DWELL_S, n) + 5.0, MAX_DWELL_S)
        labels = rng.choice(len(EMOTIONS), n, p=mix / mix.sum())
        smiling = rng.uniform(0, 1, n) < ZONE_SMILE[camera.zone]
        quality = rng.uniform(0.5, 0.95, n)
        low = rng.uniform(0, 1, n) < LOW_QUALITY_SHARE
        for i in range(n):
            first = math.ceil(arrive[i] * fps)
            last = min(math.floor((arrive[i] + dwell[i]) * fps), int(86400 * fps) - 1)
            if last < first:
                continue  # gone between two frames: never seen
            out.append(
                Visitor(
                    track_id=day.toordinal() * 100_000 + len(out),
                    first=first,
                    last=last,
                    label=EMOTIONS[int(labels[i])],
                    smile=0.85 if smiling[i] else 0.1,
                    quality=round(float(quality[i]), 3),
                    low_quality=bool(low[i]),
                )
            )
    return out


def _face(v: Visitor) -> FaceResult:
    return FaceResult((0, 0, 40, 40), [(0, 0)] * 6, 0.9, v.quality, v.low_quality, v.smile, _probs(v.label), v.track_id)


def frames(camera: Camera, day: datetime, fps: float, people: list[Visitor], seq0: int) -> list[FrameObservations]:
    """Every frame of the day (also those with nobody in them), each with the faces present."""
    n = int(86400 * fps)
    faces: list[list[FaceResult]] = [[] for _ in range(n)]
    for v in people:
        face = _face(v)
        for j in range(v.first, v.last + 1):
            faces[j].append(face)
    start = day.replace(tzinfo=UTC)
    return [
        FrameObservations(camera.camera_id, seq0 + j, start + timedelta(seconds=j / fps), faces[j]) for j in range(n)
    ]


def folded(camera: Camera, day: datetime, fps: float, people: list[Visitor]) -> Folded:
    """What :func:`~emolens.store.base.fold_frames` makes of :func:`frames`, computed per
    camera-minute without building the frames."""
    per_minute = 60 * fps
    if abs(per_minute - round(per_minute)) > 1e-9:
        raise ValueError(f"fps {fps} gives a fractional number of frames per minute")
    per_minute = round(per_minute)
    out = Folded()
    cam = camera.camera_id
    for m in range(1440):
        minute = day + timedelta(minutes=m)
        out.buckets[(cam, minute)] = Bucket(cam, minute, frames=per_minute)
    for v in people:
        probs = _probs(v.label)
        smiling = v.smile > 0.5
        for m in range(v.first // per_minute, v.last // per_minute + 1):
            lo, hi = max(v.first, m * per_minute), min(v.last, (m + 1) * per_minute - 1)
            k = hi - lo + 1
            minute = day + timedelta(minutes=m)
            b = out.buckets[(cam, minute)]
            if v.low_quality:
                b.low_quality += k
                continue
            b.faces += k
            b.smiles += k if smiling else 0
            b.smile_sum += k * v.smile
            b.quality_sum += k * v.quality
            b.counts[v.label] += k
            for e in EMOTIONS:
                b.prob_sums[e] += k * probs[e]
            s = Sighting(
                cam,
                minute,
                v.track_id,
                day + timedelta(seconds=lo / fps),
                day + timedelta(seconds=hi / fps),
                faces=k,
                smiles=k if smiling else 0,
                smile_sum=k * v.smile,
            )
            s.counts[v.label] = k
            out.sightings[(cam, minute, v.track_id)] = s
    return out


def _merge(into: Folded, more: Folded) -> None:
    into.buckets.update(more.buckets)
    into.sightings.update(more.sightings)
    into.untracked.update(more.untracked)


@dataclass
class Generated:
    cameras: int
    days: int
    visitors: int
    rows: int  # camera-minutes written
    seconds: float


def generate(
    store: SqlStore,
    n_cameras: int,
    n_days: int,
    start: datetime,
    *,
    fps: float = 5.0,
    mode: str = "minutes",
    seed: int = 0,
    rate: float = 15.0,
    cameras_per_batch: int = 10,
) -> Generated:
    """Fill ``store`` with ``n_days`` from ``start`` (a UTC day) for ``n_cameras`` cameras;
    ``rate`` is a camera's visitors per hour at its busiest. One transaction per day and
    ``cameras_per_batch`` cameras (minutes) or per camera-day (frames)."""
    if mode not in ("minutes", "frames"):
        raise ValueError(f"mode must be minutes or frames, not {mode!r}")
    t0 = time.perf_counter()
    cams = cameras(n_cameras)
    for c in cams:
        store.ensure_camera(c)
    day0 = start.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    total = rows = 0
    for d in range(n_days):
        day = day0 + timedelta(days=d)
        for first in range(0, n_cameras, cameras_per_batch):
            batch = Folded()
            for i in range(first, min(first + cameras_per_batch, n_cameras)):
                people = visitors(cams[i], i, day, fps, seed, rate)
                total += len(people)
                if mode == "frames":
                    store.apply(frames(cams[i], day, fps, people, seq0=day.toordinal() * 10_000_000))
                else:
                    _merge(batch, folded(cams[i], day, fps, people))
                rows += 1440
            if batch.buckets:
                store.apply_folded(batch)
        logs.event(log.info, "generated", day=day.date(), cameras=n_cameras, visitors=total)
    return Generated(n_cameras, n_days, total, rows, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    from emolens.logs import configure

    parser = argparse.ArgumentParser(prog="generate_stats.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="store URL (sqlite:///FILE or postgresql+psycopg://...)")
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--start", help="first day, ISO date (default: --days before today, UTC)")
    parser.add_argument("--fps", type=float, default=5.0, help="frames per second the cameras were sampled at")
    parser.add_argument("--mode", choices=["minutes", "frames"], default="minutes")
    parser.add_argument("--rate", type=float, default=15.0, help="a camera's visitors per hour at its busiest")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    configure("INFO", "text")
    if args.cameras < 1 or args.days < 1:
        parser.error("--cameras and --days must be at least 1")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    start = datetime.fromisoformat(args.start) if args.start else today - timedelta(days=args.days)
    store = SqlStore(args.db)
    try:
        g = generate(
            store, args.cameras, args.days, start, fps=args.fps, mode=args.mode, seed=args.seed, rate=args.rate
        )
    finally:
        store.close()
    sys.stderr.write(
        f"{g.cameras} cameras x {g.days} days from {start:%Y-%m-%d}: {g.visitors:,} visitors, "
        f"{g.rows:,} camera-minutes in {g.seconds:.1f} s\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
