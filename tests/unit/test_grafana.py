"""The Grafana dashboards shipped in the chart (helm/emolens/dashboards/*.json) and the ConfigMaps
that provision them: valid dashboard JSON with site/zone/camera variables, SQL that reads the k-safe
views only, and ConfigMaps the Grafana sidecars pick up when (and only when) they are switched on.
tests/integration/test_grafana_sql.py runs every query as the analyst role on PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emolens.store.schema import K_SAFE_VIEWS
from tests.conftest import ROOT
from tests.unit.test_helm import CHART, HELM, docs, render

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
GRAINS = ("hourly", "daily")
# Every table of the store: a dashboard that named one would need more than the analyst role.
RAW_TABLES = (
    "cameras",
    "minute_buckets",
    "bucket_tracks",
    "frames_seen_blocks",
    "rollup_hourly",
    "rollup_daily",
    "rollup_hourly_tracks",
    "rollup_daily_tracks",
    "visitor_timelines",
    "privacy_settings",
    "alembic_version",
)
ON = ["--set", "grafana.dashboards.enabled=true,grafana.datasource.enabled=true"]


@pytest.fixture(scope="module")
def helm() -> Path:
    """The real helm binary, as tests/unit/test_helm.py gets it."""
    if not HELM.exists():
        subprocess.run([str(ROOT / "scripts" / "install-helm.sh")], check=True, capture_output=True)
    return HELM


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, SQL) of every panel target and every query variable."""
    out = []
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            out.append((f"panel {panel['title']!r}", t["rawSql"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"variable {var['name']}", var["query"]))
    return out


def relations(sql: str) -> set[str]:
    """The relations a query reads: names after FROM and JOIN (``EXTRACT(x FROM col)`` is not one)."""
    sql = re.sub(r"EXTRACT\s*\(\s*\w+\s+FROM\s+[\w.]+\s*\)", "", sql, flags=re.I)
    return set(re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.${}]*)", sql, flags=re.I))


def test_there_is_a_dashboard_per_site_zone_and_camera():
    assert [p.name for p in DASHBOARDS] == ["emolens-cameras.json", "emolens-sites.json", "emolens-zones.json"]
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == 3 and all(len(u) <= 40 for u in uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_json_is_a_valid_grafana_dashboard(path):
    d = load(path)
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["title"].startswith("emolens / ") and "emolens" in d["tags"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    level = path.stem.removeprefix("emolens-").removesuffix("s")
    wanted = {"site": ["site"], "zone": ["site", "zone"], "camera": ["site", "zone", "camera"]}[level]
    assert [n for n in variables if n in ("site", "zone", "camera")] == wanted
    for name in wanted:
        assert variables[name]["multi"] and variables[name]["includeAll"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "grafana-postgresql-datasource"
    assert {o["value"] for o in variables["grain"]["options"]} == set(GRAINS)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    kinds = {p["type"] for p in d["panels"]}
    assert {"stat", "timeseries", "barchart", "table"} <= kinds
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        (target,) = p["targets"]
        assert target["rawQuery"] and target["format"] in ("time_series", "table")
        assert "$__timeFilter(period_start)" in target["rawSql"], p["title"]  # the time picker applies
        for name in wanted:  # every panel follows the selected sites, zones, cameras
            column = "camera_id" if name == "camera" else name
            assert f"{column} IN (${name})" in target["rawSql"], (p["title"], name)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_reads_only_the_k_safe_views(path):
    for where, sql in queries(load(path)):
        for grain in GRAINS:
            expanded = sql.replace("${grain}", grain)
            read = relations(expanded)
            assert read, (where, sql)
            assert read <= set(K_SAFE_VIEWS), (where, read - set(K_SAFE_VIEWS))
            for table in RAW_TABLES:  # not even in a comment or a subquery the parser might miss
                assert not re.search(rf"\b{table}\b", expanded), (where, table)


def test_relations_finds_what_a_query_reads():
    """The check above is only as good as this parser: it sees joins and subqueries' tables."""
    sql = "SELECT EXTRACT(HOUR FROM period_start) FROM (SELECT * FROM rollup_hourly r JOIN cameras c ON 1=1) s"
    assert relations(sql) == {"rollup_hourly", "cameras"}
    assert relations("SELECT a FROM analytics_${grain}_zone WHERE x") == {"analytics_${grain}_zone"}


def test_nothing_for_grafana_unless_switched_on(helm):
    camera = "cameras[0].id=cam-1,cameras[0].source=rtsp://cam-1/stream"
    off = docs(helm, "--set", camera)
    assert not [d for d in off if "grafana" in d["metadata"]["name"] or "dashboard" in d["metadata"]["name"]]
    assert not [d for d in off if set(d["metadata"].get("labels", {})) & {"grafana_dashboard", "grafana_datasource"}]


def test_configmaps_carry_the_dashboards_and_the_sidecar_labels(helm):
    rendered = docs(helm, *ON)
    boards = [d for d in rendered if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert sorted(d["metadata"]["name"] for d in boards) == [
        "t-emolens-dashboard-cameras",
        "t-emolens-dashboard-sites",
        "t-emolens-dashboard-zones",
    ]
    for cm in boards:
        assert cm["kind"] == "ConfigMap" and cm["metadata"]["annotations"]["grafana_folder"] == "emolens"
        ((name, text),) = cm["data"].items()
        assert json.loads(text) == load(CHART / "dashboards" / name)  # the file, byte for byte in meaning
    (ds,) = [d for d in rendered if d["metadata"]["labels"].get("grafana_datasource") == "1"]
    provisioning = yaml.safe_load(ds["data"]["emolens-datasource.yaml"])
    (source,) = provisioning["datasources"]
    assert source["type"] == "grafana-postgresql-datasource" and source["uid"] == "emolens-postgres"
    assert source["jsonData"]["database"] == "emolens" and source["user"] == "emolens_grafana"
    # the password comes from Grafana's environment, never from the chart
    assert source["secureJsonData"] == {"password": "$__env{EMOLENS_GRAFANA_DB_PASSWORD}"}
    # the dashboards' data source variable defaults to this one
    for path in DASHBOARDS:
        (var,) = [v for v in load(path)["templating"]["list"] if v["name"] == "datasource"]
        assert var["current"]["value"] == source["uid"]


def test_values_move_the_configmaps_and_rename_labels(helm):
    rendered = docs(
        helm,
        *ON,
        "--set",
        "grafana.namespace=monitoring,grafana.dashboards.label=my_dash,grafana.datasource.host=pg.db:6432,"
        "grafana.datasource.sslmode=verify-full",
    )
    mine = [
        d for d in rendered if "dashboard-" in d["metadata"]["name"] or d["metadata"]["name"].endswith("-datasource")
    ]
    assert len(mine) == 4 and all(d["metadata"]["namespace"] == "monitoring" for d in mine)
    assert sum(d["metadata"]["labels"].get("my_dash") == "1" for d in mine) == 3
    (ds,) = [d for d in mine if d["metadata"]["name"].endswith("-datasource")]
    (source,) = yaml.safe_load(ds["data"]["emolens-datasource.yaml"])["datasources"]
    assert source["url"] == "pg.db:6432" and source["jsonData"]["sslmode"] == "verify-full"


@pytest.mark.parametrize(
    "setting",
    [
        "grafana.datasource.sslmode=maybe",
        "grafana.datasource.passwordEnv=not-a-name",
        "grafana.dashboards.enabeld=true",
    ],
)
def test_schema_rejects_bad_grafana_values(helm, setting):
    proc = render(helm, "--set", setting)
    assert proc.returncode != 0 and "grafana" in proc.stderr, proc.stderr


def test_rendered_grafana_configmaps_validate_against_kubernetes(helm, tmp_path):
    proc = render(helm, *ON)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "grafana.yaml"
    path.write_text(proc.stdout)
    check = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", "-k", "1.33.0", str(path)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    lint = subprocess.run([str(helm), "lint", "--strict", str(CHART), *ON], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
