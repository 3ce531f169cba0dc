"""Every query of the Grafana dashboards (helm/emolens/dashboards/*.json) runs on a real PostgreSQL
as a login role that is a member of emolens_analyst, the role the chart's data source uses: it may
read the k-safe views and nothing else, so a panel that touched a table would fail here. Grafana's
macros are expanded as Grafana does for PostgreSQL; each variable's options come from its own query."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta

import psycopg
import pytest
from sqlalchemy.engine import make_url

from emolens.observations import FrameObservations
from emolens.store import Camera, SqlStore
from emolens.store.schema import ANALYST_ROLE
from tests.unit.test_grafana import DASHBOARDS, GRAINS, load
from tests.unit.test_report_store import _face

START, END = datetime(2026, 3, 2), datetime(2026, 3, 4)
CAMERAS = [
    Camera("cam-1", "entrance", "mall-a"),
    Camera("cam-2", "food-court", "mall-a"),
    Camera("cam-3", "lobby", "hq"),
]
LOGIN = "emolens_grafana_it"


@pytest.fixture(scope="module")
def analyst_conninfo(postgres_url):
    """A database with two days of visits; the conninfo of an analyst login on it."""
    admin = make_url(postgres_url)
    with psycopg.connect(
        f"host={admin.host} port={admin.port} user={admin.username} dbname=emolens", autocommit=True
    ) as c:
        c.execute("DROP DATABASE IF EXISTS grafana_sql")
        c.execute("CREATE DATABASE grafana_sql")
    url = admin.set(database="grafana_sql").render_as_string(hide_password=False)
    store = SqlStore(url)  # migrates: views, and the analyst role (the admin may create roles)
    rng = random.Random(5)
    try:
        for cam in CAMERAS:
            store.ensure_camera(cam)
            seq = track = 0
            hour = START
            while hour < END:
                frames = []
                for _ in range(6 if 9 <= hour.hour <= 18 else 0):
                    track += 1
                    for s in range(0, 30, 10):
                        seq += 1
                        when = hour + timedelta(minutes=rng.randint(0, 50), seconds=s)
                        frames.append(FrameObservations(cam.camera_id, seq, when, [_face(rng, track)]))
                if frames:
                    store.apply(sorted(frames, key=lambda f: f.frame_seq))
                hour += timedelta(hours=1)
    finally:
        store.close()
    with psycopg.connect(
        f"host={admin.host} port={admin.port} user={admin.username} dbname=grafana_sql", autocommit=True
    ) as c:
        exists = c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN,)).fetchone()
        if not exists:
            c.execute(f"CREATE ROLE {LOGIN} LOGIN IN ROLE {ANALYST_ROLE}")
    return f"host={admin.host} port={admin.port} user={LOGIN} dbname=grafana_sql"


def _quoted(values: list[str]) -> str:
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def expand(sql: str, variables: dict[str, list[str]], grain: str) -> str:
    """Grafana's PostgreSQL macros and multi-value variables (quoted, comma-separated)."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: f"{m.group(1)} BETWEEN '{START:%Y-%m-%dT%H:%M:%S}' AND '{END:%Y-%m-%dT%H:%M:%S}'",
        sql,
    )
    sql = sql.replace("${grain}", grain)
    for name, values in variables.items():
        sql = sql.replace(f"${name}", _quoted(values))
    assert "$" not in sql, sql
    return sql


def test_the_analyst_role_reads_views_only(analyst_conninfo):
    """The control that gives the test below its meaning."""
    with psycopg.connect(analyst_conninfo) as c:
        assert c.execute("SELECT count(*) FROM analytics_hourly").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT count(*) FROM rollup_hourly")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_query_runs_as_the_analyst(analyst_conninfo, path):
    dashboard = load(path)
    with psycopg.connect(analyst_conninfo, autocommit=True) as c:
        variables: dict[str, list[str]] = {}
        for var in dashboard["templating"]["list"]:  # in order: each may use the ones before it
            if var["type"] != "query":
                continue
            rows = c.execute(expand(var["query"], variables, "hourly")).fetchall()
            variables[var["name"]] = [r[0] for r in rows]
            assert variables[var["name"]], var["name"]
        assert variables["site"] == ["hq", "mall-a"]
        for panel in dashboard["panels"]:
            for grain in GRAINS:
                (target,) = panel["targets"]
                rows = c.execute(expand(target["rawSql"], variables, grain)).fetchall()
                assert rows, (panel["title"], grain)
