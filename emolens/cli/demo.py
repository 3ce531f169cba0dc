"""`emolens demo`: build the demo clip, run it end to end (analyze, run, stats), print the statistics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emolens.cli.options import parse_verb

HELP = "build a demo clip, run it end to end, print the statistics"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo", help="folder for the clip, faces.jsonl, annotated video and database")


def run(args: argparse.Namespace) -> int:
    from emolens.cli import analyze, stats
    from emolens.cli import run as run_verb
    from emolens.demo import write_demo_clip
    from emolens.stages import JPEG_QUALITY

    out = Path(args.out)
    clip = write_demo_clip(out / "demo.mp4")
    db = out / "emolens.db"
    if db.exists():
        db.unlink()
    print(f"demo clip: {clip}", file=sys.stderr)
    common = ["--db", f"sqlite:///{db}"]
    rc = analyze.run(parse_verb(analyze, [str(clip), "--annotate", str(out), "--out", str(out / "faces.jsonl")]))
    if rc:
        return rc
    print(f"annotated video: {out / 'demo.annotated.mp4'}, faces: {out / 'faces.jsonl'}", file=sys.stderr)
    rc = run_verb.run(
        parse_verb(
            run_verb,
            [
                "--source",
                str(clip),
                "--camera-id",
                "demo-cam",
                "--zone",
                "lobby",
                "--site",
                "demo",
                "--fps",
                "15",
                "--start",
                "2026-01-01T12:00:00",
                *common,
            ],
        )
    )
    if rc:
        return rc
    # k=1: the demo's only face is its own, so nothing needs hiding.
    print(
        "statistics of the demo, shown with --k 1 (emolens stats hides a minute with fewer than 5 "
        "distinct faces unless told otherwise). The run reads frames as the camera-ingest sends them, "
        f"JPEG quality {JPEG_QUALITY}, so its face and low-quality counts can differ by a few from "
        "the analyze pass over the raw frames:",
        file=sys.stderr,
    )
    return stats.run(parse_verb(stats, ["--camera-id", "demo-cam", "--k", "1", *common]))
