"""Rollups, distinct visitors, timelines, the k rule on every path, pagination and retention
on SQLite (tests/analytics_checks.py; the same checks run on PostgreSQL in the integration
tests), plus the generator's fast path against its per-frame path."""

from datetime import datetime

import pytest
from sqlalchemy import text

from emolens.analytics import query_stats
from emolens.cli import main as cli
from emolens.errors import InputError
from emolens.store import SqlStore
from emolens_tools.synthetic import generate
from tests import analytics_checks as checks


@pytest.fixture
def filled(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = SqlStore(url)
    obs = checks.fill(store)
    yield store, url, obs
    store.close()


def test_rollups_count_distinct_visitors_per_hour_and_day(filled):
    store, _, obs = filled
    checks.check_rollups(store, obs)


def test_redelivered_frames_leave_the_rollups_unchanged(filled):
    store, _, obs = filled
    assert store.apply(obs[:2000]) == []
    checks.check_rollups(store, obs)


def test_visitor_timelines(filled):
    store, _, obs = filled
    checks.check_timelines(store, obs)


def test_k_rule_on_views_queries_cli_and_query_stats(filled, capsys):
    store, url, obs = filled
    checks.check_k_everywhere(store, url, obs, capsys)


def test_the_store_answers_statistics_and_dwell_reads(filled):
    store, _, obs = filled
    checks.check_read_seam(store, obs)


def test_retention_deletes_exactly_the_older_rows(filled):
    store, _, obs = filled
    checks.check_retention(store, obs)


def test_minutes_mode_writes_what_the_frames_would(tmp_path):
    """The generator's fast path (camera-minutes through apply_folded) leaves every table as
    the per-frame path through apply does."""
    a, b = SqlStore(f"sqlite:///{tmp_path / 'f.db'}"), SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    generate(a, 3, 2, datetime(2026, 3, 6), fps=1 / 30, mode="frames", rate=8)
    generate(b, 3, 2, datetime(2026, 3, 6), fps=1 / 30, mode="minutes", rate=8)
    for table in ("minute_buckets", "bucket_tracks", "rollup_hourly", "rollup_daily", "visitor_timelines"):
        q = text(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        with a.engine.connect() as ca, b.engine.connect() as cb:
            ra, rb = ca.execute(q).all(), cb.execute(q).all()
        assert ra and [tuple(map(_round, r)) for r in ra] == [tuple(map(_round, r)) for r in rb], table


def _round(v):
    return round(v, 6) if isinstance(v, float) else v


def test_bad_queries_are_refused(filled):
    store, _, _ = filled
    since, until = datetime(2026, 3, 6), datetime(2026, 3, 8)
    with pytest.raises(InputError, match="before"):
        query_stats(store, until, since)
    with pytest.raises(InputError, match="page_size"):
        query_stats(store, since, until, page_size=0)
    page = query_stats(store, since, until, k=1, page_size=5)
    with pytest.raises(InputError, match="another query"):
        query_stats(store, since, until, k=2, page_size=5, page_token=page.next_page_token)
    with pytest.raises(InputError, match="issued"):
        query_stats(store, since, until, page_token="not-a-token")


def test_cameras_and_retention_commands(filled, capsys):
    _, url, _ = filled
    assert cli(["cameras", "--db", url, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["camera_id,zone,site", "cam-0000,entrance,site-00"]
    assert cli(["stats", "--db", url, "--since", "2020-01-01", "--every", "minute"]) == 2
    assert "narrow the time range" in capsys.readouterr().err
    assert cli(["retention", "apply", "--db", url]) == 0  # 90 days of minutes: March 2026 is "now"-relative
    out = capsys.readouterr().out
    assert "minute_buckets: removed" in out and "rollup_daily: kept (no age set)" in out


@pytest.mark.parametrize("by", ["camera", "zone", "site"])
def test_pages_of_any_size_add_up_to_the_whole_answer(filled, by):
    """Pages read the periods window by window: whatever the page size, the pages hold every
    row of the one-page answer once, in order, and only the last page is short."""
    store, _, _ = filled
    since, until = datetime(2026, 3, 6, 5), datetime(2026, 3, 8)
    for every in ("hour", "day"):
        whole = query_stats(store, since, until, by=by, every=every, k=2, page_size=10_000)
        assert whole.rows and not whole.next_page_token
        for size in (1, 3, 17):
            pages, token = [], ""
            while True:
                page = query_stats(store, since, until, by=by, every=every, k=2, page_size=size, page_token=token)
                pages.append(page.rows)
                assert len(pages) <= len(whole.rows), "pages never end"
                token = page.next_page_token
                if not token:
                    break
            assert [r for p in pages for r in p] == whole.rows, (by, every, size)
            assert all(len(p) == size for p in pages[:-1]) and 0 < len(pages[-1]) <= size


def test_all_pages_read_each_period_about_once(filled, monkeypatch):
    """Paging through an answer reads each period about once: a page reads a window just wide
    enough for a page and its one extra row (wider over empty stretches), and the next page
    starts at that extra row's period (the token carries it). Reading a second window per page
    for the extra row, and restarting at the last row shown, read up to twice the periods and
    made the biggest queries grow faster than the data (docs/benchmarks.md)."""
    from emolens import analytics

    store, _, _ = filled
    since, until = datetime(2026, 3, 6), datetime(2026, 3, 8)
    whole = query_stats(store, since, until, by="zone", every="hour", k=2, page_size=10_000).rows
    groups = len({r.zone for r in whole})
    read: list[int] = []
    rows_of = store.stats_rows

    def counting(by, every, start, end, *args, **kwargs):
        read.append(int((end - start) / analytics.STEP[every]))
        return rows_of(by, every, start, end, *args, **kwargs)

    monkeypatch.setattr(store, "stats_rows", counting)
    rows, pages, token = [], 0, ""
    while True:
        page = query_stats(store, since, until, by="zone", every="hour", k=2, page_size=3 * groups, page_token=token)
        rows += page.rows
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert rows == whole and pages > 3
    periods = int((until - since) / analytics.STEP["hour"])
    windows = sum(read)
    assert windows <= periods + 2 * pages, (windows, periods, pages)
