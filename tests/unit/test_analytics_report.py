"""`emolens report`'s content on fixed statistics (tests/report_fixture.py, no database): the k
rule, the figures in each table against sums computed here, the previous period it compares
with, a file that needs no network, and the CSV export. The database path and the browser are
tested in test_report_store.py and test_report_browser.py."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from emolens.analytics_report import collect, render, write_csv_zip
from emolens.analytics_report.model import DwellBin, StatRow, all_tables
from emolens.errors import ConfigError
from emolens.results import EMOTIONS
from tests.report_fixture import FixtureSource

SINCE, UNTIL = datetime(2026, 3, 2), datetime(2026, 3, 16)  # two weeks, Monday to Monday


@pytest.fixture(scope="module")
def fixture_data():
    return collect(FixtureSource(), SINCE, UNTIL, "zone", 5, UTC)


def tables(data):
    return {t.name: t for t in all_tables(data)}


def test_asks_for_this_period_and_the_previous_one_of_equal_length():
    source = FixtureSource()
    collect(source, SINCE, UNTIL, "site", 5, UTC)
    assert set(source.calls) == {
        (SINCE, UNTIL, "site", "hour"),
        (SINCE, UNTIL, "site", "day"),
        (SINCE - timedelta(days=14), SINCE, "site", "day"),
    }


def test_rows_below_k_are_left_out_of_every_table_and_chart():
    """The database here lets everything through (db_k=1): the report's own k must hide the quiet
    zone's thin hours, and a group that never reaches k must not appear anywhere."""
    source = FixtureSource(db_k=1)
    raw = source.rows(SINCE, UNTIL, "hour")
    thin = [r for r in raw if r.visitors < 5]
    assert thin and any(r.visitors >= 5 for r in raw if r.group == "mall-b/quiet-corner")
    data = collect(source, SINCE, UNTIL, "zone", 5, UTC)
    assert all(r.visitors >= 5 for r in data.hourly + data.daily + data.previous_daily)
    thin_days = [r for r in source.rows(SINCE, UNTIL, "day") if r.visitors < 5]
    thin_days += [r for r in source.rows(SINCE - timedelta(days=14), SINCE, "day") if r.visitors < 5]
    assert data.hidden_rows == len(thin) + len(thin_days)
    heat = tables(data)["smile_heatmap"]
    quiet = [row for row in heat.rows if row[0] == "mall-b/quiet-corner"]
    # every heat-map cell of the quiet zone rests on kept hours only
    kept_hours = {
        (r.period_start.weekday(), r.period_start.hour) for r in data.hourly if r.group == "mall-b/quiet-corner"
    }
    assert {(row[1], row[2]) for row in quiet} == kept_hours
    assert all(row[5] >= 5 for row in quiet)

    # a group that is always below k: its name is nowhere in the HTML or the CSV
    class WithTinyZone(FixtureSource):
        def rows(self, since, until, every):
            extra = [
                StatRow("mall-c/staff-room", r.period_start, 12, 4, 3, 0.8, 30.0, {"happy": 3, "neutral": 9})
                for r in super().rows(since, until, every)
                if r.group == "mall-a/entrance"
            ]
            return super().rows(since, until, every) + extra

    data = collect(WithTinyZone(db_k=1), SINCE, UNTIL, "zone", 5, UTC)
    assert "staff-room" not in render(data, "test")
    assert all("staff-room" not in str(t.rows) for t in all_tables(data))
    # with k=4 it is shown: the test above would notice if the name were never rendered at all
    assert "staff-room" in render(collect(WithTinyZone(db_k=1), SINCE, UNTIL, "zone", 4, UTC), "test")


def test_dwell_bins_below_k_are_hidden_not_zero():
    class FewLongStays(FixtureSource):
        def dwell_bins(self, since, until, edges):
            return [DwellBin(0, 60, 50), DwellBin(60, 600, 4), DwellBin(600, None, 0)]

    data = collect(FewLongStays(), SINCE, UNTIL, "zone", 5, UTC)
    assert [b.visitors for b in data.dwell] == [50, None, None]
    assert tables(data)["dwell"].rows[1][3] is None


def test_summary_figures_match_sums_of_the_daily_rows(fixture_data):
    now = FixtureSource().rows(SINCE, UNTIL, "day")
    before = FixtureSource().rows(SINCE - timedelta(days=14), SINCE, "day")
    summary = {row[0]: row for row in tables(fixture_data)["summary"].rows}
    visitors_now = sum(r.visitors for r in now if r.visitors >= 5)
    visitors_before = sum(r.visitors for r in before if r.visitors >= 5)
    assert summary["visitors"][1:3] == [visitors_now, visitors_before]
    assert summary["visitors"][3] == pytest.approx(100 * (visitors_now - visitors_before) / visitors_before, abs=0.05)
    faces = sum(r.faces for r in now if r.visitors >= 5)
    smiles = sum(r.smiles for r in now if r.visitors >= 5)
    assert summary["smile_rate"][1] == pytest.approx(smiles / faces, abs=1e-4)
    happy = sum(r.count("happy") for r in now if r.visitors >= 5)
    assert summary["share_happy"][1] == pytest.approx(happy / faces, abs=1e-4)


def test_emotion_mix_and_heat_map_figures(fixture_data):
    t = tables(fixture_data)
    mix = t["emotion_mix"]
    assert len(mix.rows) == 14  # a two-week report plots days
    for row in mix.rows:
        shares = row[2 + len(EMOTIONS) :]
        assert sum(shares) == pytest.approx(1.0, abs=1e-3)
        assert sum(row[2 : 2 + len(EMOTIONS)]) == row[1]
    # smile rate per (zone, weekday, hour), pooled over both weeks, from the hourly rows
    pooled: dict = defaultdict(lambda: [0, 0])
    for r in fixture_data.hourly:
        cell = pooled[(r.group, r.period_start.weekday(), r.period_start.hour)]
        cell[0] += r.faces
        cell[1] += r.smiles
    heat = {(g, d, h): rate for g, d, h, _, _, _, rate in t["smile_heatmap"].rows}
    assert heat.keys() == pooled.keys()
    for key, (faces, smiles) in pooled.items():
        assert heat[key] == pytest.approx(smiles / faces, abs=1e-4)
    busiest = t["busiest_hours"]
    per_hour = defaultdict(int)
    for r in fixture_data.hourly:
        per_hour[r.period_start.hour] += r.visitors
    assert [row[1] for row in busiest.rows] == [per_hour[h] for h in range(24)]


def test_hours_of_day_follow_the_time_zone():
    utc = collect(FixtureSource(), SINCE, UNTIL, "zone", 5, UTC)
    berlin = collect(FixtureSource(), SINCE, UNTIL, "zone", 5, ZoneInfo("Europe/Berlin"))  # UTC+1 in March
    a = [row[1] for row in tables(utc)["busiest_hours"].rows]
    b = [row[1] for row in tables(berlin)["busiest_hours"].rows]
    assert b == a[-1:] + a[:-1]


def test_short_reports_plot_hours_with_gaps_for_hours_without_data():
    data = collect(FixtureSource(), SINCE, SINCE + timedelta(days=2), "zone", 5, UTC)
    assert data.hourly_series
    html = render(data, "test")
    (mix,) = re.findall(r'<svg[^>]*data-plot="emotion-mix".*?</svg>', html, re.S)
    # 48 hour slots on the axis; the night hours (no visitors in the fixture) have no bar
    bars_by_slot = {m for m in re.findall(r"<title>(\w{3} \d\d:00) \w+: ", mix)}
    assert 0 < len(bars_by_slot) < 48
    assert "Mon 03:00" not in bars_by_slot and "Mon 12:00" in bars_by_slot


def test_html_is_one_file_that_needs_no_network(fixture_data):
    html = render(fixture_data, "SQLite database x.db")
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    assert not re.search(r"<script|<link|<iframe|<img|@import|@font-face", html, re.I)
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+", html))
    assert urls <= {"http://www.w3.org"}, urls  # the SVG namespace names, it is never fetched
    assert not re.search(r"url\((?!#)", html)  # only same-document references (the heat maps' hatch)
    plots = re.findall(r'data-plot="([\w-]+)"', html)
    assert {"change", "emotion-mix", "visitors", "dwell", "busiest-hours", "smile-heatmap"} <= set(plots)
    assert plots.count("smile-heatmap") == 4  # one per zone
    for name in ("summary", "change_by_group", "emotion_mix", "visitors", "dwell", "busiest_hours", "smile_heatmap"):
        assert f'data-table="{name}"' in html


def test_csv_zip_holds_the_tables_behind_the_plots(fixture_data, tmp_path):
    path = tmp_path / "report.zip"
    names = write_csv_zip(fixture_data, path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(names)
        for table in all_tables(fixture_data):
            rows = list(csv.reader(io.StringIO(zf.read(f"{table.name}.csv").decode())))
            assert rows[0] == table.columns
            assert len(rows) == len(table.rows) + 1
            for got, want in zip(rows[1:], table.rows, strict=True):
                assert got == ["" if v is None else str(v) for v in want]


def test_refuses_an_empty_or_reversed_period_and_unknown_grouping():
    with pytest.raises(ConfigError, match="after"):
        collect(FixtureSource(), UNTIL, SINCE, "zone", 5, UTC)
    with pytest.raises(ConfigError, match="--by"):
        collect(FixtureSource(), SINCE, UNTIL, "floor", 5, UTC)


def test_no_data_renders_every_section_with_a_reason():
    class Empty(FixtureSource):
        def rows(self, since, until, every):
            return []

        def dwell_bins(self, since, until, edges):
            return None

    html = render(collect(Empty(), SINCE, UNTIL, "zone", 5, UTC), "test")
    assert html.count("enough distinct visitors") >= 4
    assert "holds no visitor timelines" in html
