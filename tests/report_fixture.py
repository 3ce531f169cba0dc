"""Small k-safe statistics in the shapes of the analytics views, for the report's renderer tests
(no database): a few zones with a daily and weekly rhythm and one quiet zone below k."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from emolens.analytics_report import RowsPage
from emolens.analytics_report.model import DwellBin, StatRow
from emolens.results import EMOTIONS

ZONES = ("mall-a/entrance", "mall-a/food-court", "mall-b/entrance", "mall-b/quiet-corner")


EPOCH = datetime(2026, 1, 1)


def _hour_rows(start: datetime, end: datetime) -> list[StatRow]:
    """The same hour always gets the same figures, whichever range asks for it; visitors grow
    by about 1% a day, so a period differs from the one before it."""
    rows = []
    t = start
    while t < end:
        days = (t - EPOCH) / timedelta(days=1)
        rng = random.Random(int(days * 24))
        for i, zone in enumerate(ZONES):
            busy = max(0.0, math.sin(math.pi * (t.hour - 7) / 14)) if 7 <= t.hour <= 21 else 0.0
            weekend = 1.6 if t.weekday() >= 5 else 1.0
            scale = 0.08 if zone.endswith("quiet-corner") else 1.0 + 0.4 * i
            visitors = int(60 * busy * weekend * scale * (1 + 0.01 * days) * rng.uniform(0.8, 1.2))
            if visitors == 0:
                continue
            faces = visitors * rng.randint(8, 14)
            happy_bias = 0.25 + 0.1 * (t.weekday() >= 5) + 0.05 * i + 0.1 * (12 <= t.hour <= 14)
            weights = {"angry": 0.04, "disgust": 0.01, "fear": 0.02, "happy": happy_bias, "sad": 0.08, "surprise": 0.06}
            weights["neutral"] = max(0.05, 1 - sum(weights.values()))
            counts = dict.fromkeys(EMOTIONS, 0)
            for e in rng.choices(list(weights), list(weights.values()), k=faces):
                counts[e] += 1
            smiles = int(counts["happy"] * 0.9)
            rows.append(StatRow(zone, t, faces, visitors, smiles, 0.8, rng.uniform(15, 90), counts))
        t += timedelta(hours=1)
    return rows


class FixtureSource:
    """The :class:`emolens.analytics_report.StatsSource` of fixed, deterministic data. Rows with
    fewer than ``db_k`` visitors are left out, as the database's query does."""

    def __init__(self, db_k: int = 1, page: int = 200, dwell: bool = True) -> None:
        self.db_k, self.page, self.dwell = db_k, page, dwell
        self.calls: list[tuple[datetime, datetime, str, str]] = []

    def rows(self, since: datetime, until: datetime, every: str) -> list[StatRow]:
        hourly = _hour_rows(since, until)
        if every == "hour":
            return [r for r in hourly if r.visitors >= self.db_k]
        days: dict[tuple[str, datetime], list[StatRow]] = {}
        for r in hourly:
            days.setdefault((r.group, r.period_start.replace(hour=0)), []).append(r)
        out = []
        for (g, d), rs in sorted(days.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            counts = {e: sum(r.count(e) for r in rs) for e in EMOTIONS}
            visitors = sum(r.visitors for r in rs)
            dwell = sum((r.mean_dwell_s or 0) * r.visitors for r in rs) / visitors
            out.append(StatRow(g, d, sum(r.faces for r in rs), visitors, sum(r.smiles for r in rs), 0.8, dwell, counts))
        return [r for r in out if r.visitors >= self.db_k]

    def stat_pages(self, since: datetime, until: datetime, by: str, every: str, k: int) -> Iterator[RowsPage]:
        """``k`` is ignored: the fixture's own k is ``db_k``, so tests can hand the report rows
        below its k and see that it drops them."""
        self.calls.append((since, until, by, every))
        rows = self.rows(since, until, every)
        for i in range(0, len(rows), self.page):
            yield RowsPage(rows[i : i + self.page])

    def dwell_bins(self, since: datetime, until: datetime, edges: Sequence[float]) -> list[DwellBin] | None:
        if not self.dwell:
            return None
        counts = [3, 40, 120, 300, 260, 410, 220, 90, 12, 2][: len(edges)]
        return [
            DwellBin(float(lo), float(edges[i + 1]) if i + 1 < len(edges) else None, counts[i])
            for i, lo in enumerate(edges)
        ]
