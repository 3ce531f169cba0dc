"""Tables for people: the ``stats`` command's table, CSV and JSON of buckets and statistics rows,
Markdown tables of the generated docs (model card, benchmarks)."""

from __future__ import annotations

import csv
import json
from typing import IO, Any

from emolens.results import EMOTIONS
from emolens.store import Bucket, StatsRow


def bucket_summary(b: Bucket, k: int) -> dict[str, Any]:
    """One bucket as a flat record; buckets with fewer than ``k`` distinct faces are suppressed."""
    row: dict[str, Any] = {"camera_id": b.camera_id, "minute": b.minute.isoformat(timespec="minutes")}
    if b.suppressed(k):
        row["suppressed"] = True
        return row
    row.update(
        {
            "suppressed": False,
            "frames": b.frames,
            "faces": b.faces,
            "tracks": b.tracks,
            "low_quality": b.low_quality,
            "smile_rate": round(b.smiles / b.faces, 4) if b.faces else None,
            "mean_quality": round(b.mean_quality, 4),
            "top_emotion": max(EMOTIONS, key=lambda e: b.counts[e]) if b.faces else None,
            **{f"n_{e}": b.counts[e] for e in EMOTIONS},
        }
    )
    return row


def print_buckets(buckets: list[Bucket], k: int, fmt: str, out: IO[str]) -> None:
    rows = [bucket_summary(b, k) for b in buckets]
    if fmt == "json":
        out.write(json.dumps(rows, indent=1) + "\n")
        return
    columns = [
        "camera_id",
        "minute",
        "frames",
        "faces",
        "tracks",
        "low_quality",
        "smile_rate",
        "mean_quality",
        "top_emotion",
    ]
    columns += [f"n_{e}" for e in EMOTIONS]
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=[*columns, "suppressed"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return
    if not rows:
        out.write("no data\n")
        return
    cells = [
        [_fmt(r.get(c)) if not r["suppressed"] or c in ("camera_id", "minute") else "-" for c in columns] for r in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + "\n")
    hidden = sum(r["suppressed"] for r in rows)
    if hidden:
        out.write(f"({hidden} bucket(s) with fewer than {k} distinct faces suppressed)\n")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table.

    >>> print(markdown_table(["a", "b"], [["1", "2"]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


STATS_COLUMNS = [
    "period_start",
    "site",
    "zone",
    "camera_id",
    "cameras",
    "frames",
    "faces",
    "visitors",
    "low_quality",
    "smile_rate",
    "mean_quality",
    "mean_dwell_s",
    "top_emotion",
    *[f"n_{e}" for e in EMOTIONS],
]


def stats_record(row: StatsRow) -> dict[str, Any]:
    """One :class:`~emolens.analytics.StatsRow` as a flat record (k-safe already)."""
    return {
        "period_start": row.period_start.isoformat(timespec="minutes"),
        "site": row.site,
        "zone": row.zone,
        "camera_id": row.camera_id,
        "cameras": row.cameras,
        "frames": row.frames,
        "faces": row.faces,
        "visitors": row.visitors,
        "low_quality": row.low_quality,
        "smile_rate": None if row.smile_rate is None else round(row.smile_rate, 4),
        "mean_quality": None if row.mean_quality is None else round(row.mean_quality, 4),
        "mean_dwell_s": None if row.mean_dwell_s is None else round(row.mean_dwell_s, 1),
        "top_emotion": row.top_emotion,
        **{f"n_{e}": row.emotions[e] for e in EMOTIONS},
    }


def print_stats(rows: list[StatsRow], by: str, k: int, suppressed: int | None, fmt: str, out: IO[str]) -> None:
    """``emolens stats --by/--every``: a table, CSV or JSON of k-safe groups. The table says
    how many groups were left out for k; CSV and JSON hold only what may be shown."""
    drop = {"camera": set(), "zone": {"camera_id"}, "site": {"camera_id", "zone"}}[by]
    columns = [c for c in STATS_COLUMNS if c not in drop]
    records = [{c: v for c, v in stats_record(r).items() if c not in drop} for r in rows]
    if fmt == "json":
        out.write(json.dumps({"k": k, "suppressed": suppressed, "rows": records}, indent=1) + "\n")
        return
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
        return
    if not records:
        out.write("no data\n")
    else:
        cells = [[_fmt(r[c]) for c in columns] for r in records]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + "\n")
        for row in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + "\n")
    if suppressed:
        out.write(f"({suppressed} group(s) with fewer than {k} distinct visitors left out)\n")
