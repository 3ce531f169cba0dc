"""Rollups, timelines, the k rule on every path, retention by partition and the read-only
analyst role on a real PostgreSQL (the same checks as tests/unit/test_analytics.py on SQLite)."""

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from emolens.store import SqlStore
from emolens.store.partitions import list_partitions
from tests import analytics_checks as checks


@pytest.fixture
def pg(postgres_url):
    """A database of its own, filled with the generated frames, dropped afterwards."""
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    url = make_url(postgres_url).set(database="emolens_analytics")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS emolens_analytics WITH (FORCE)")
        conn.exec_driver_sql("CREATE DATABASE emolens_analytics")
    full = url.render_as_string(hide_password=False)
    store = SqlStore(full)
    obs = checks.fill(store)
    yield store, full, obs
    store.close()
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE emolens_analytics WITH (FORCE)")
    admin.dispose()


def test_postgres_rollups_timelines_and_partitions(pg):
    store, _, obs = pg
    checks.check_rollups(store, obs)
    checks.check_timelines(store, obs)
    with store.engine.connect() as conn:
        held = {p.name for p in list_partitions(conn)}
        where = conn.exec_driver_sql("SELECT DISTINCT tableoid::regclass::text FROM minute_buckets").scalars().all()
    # one partition a day (and the next day's made ahead), each minute in its own day's
    assert {"minute_buckets_p20260306", "minute_buckets_p20260307", "bucket_tracks_p20260306"} <= held
    assert sorted(where) == ["minute_buckets_p20260306", "minute_buckets_p20260307"]


def test_postgres_k_rule_everywhere(pg, capsys):
    store, url, obs = pg
    checks.check_k_everywhere(store, url, obs, capsys)


def test_postgres_store_answers_statistics_and_dwell_reads(pg):
    store, _, obs = pg
    checks.check_read_seam(store, obs)


def test_postgres_retention_drops_partitions(pg):
    store, _, obs = pg
    checks.check_retention(store, obs)
    with store.engine.connect() as conn:
        held = {p.name for p in list_partitions(conn)}
    assert "minute_buckets_p20260306" not in held and "bucket_tracks_p20260306" not in held
    assert "minute_buckets_p20260307" in held


def test_analyst_role_reads_only_the_k_safe_views(pg):
    store, url, _ = pg
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS alice")
        conn.exec_driver_sql("CREATE ROLE alice LOGIN IN ROLE emolens_analyst")
    analyst = create_engine(make_url(url).set(username="alice"))
    try:
        with analyst.connect() as conn:
            rows = conn.execute(text("SELECT visitors FROM analytics_hourly")).scalars().all()
            assert rows and min(rows) >= 5
            assert conn.execute(text("SELECT count(*) FROM analytics_daily_site")).scalar() > 0
        for table in ("minute_buckets", "rollup_hourly", "visitor_timelines", "cameras", "privacy_settings"):
            with analyst.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text(f"SELECT * FROM {table} LIMIT 1"))
        with analyst.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("UPDATE privacy_settings SET k = 1"))
    finally:
        analyst.dispose()
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP ROLE alice")
