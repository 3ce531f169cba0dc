"""Rollups, k rule, pagination and retention checked on any store (SQLite in the unit tests,
PostgreSQL in the integration tests) against figures computed here, in plain Python, from the
very frames the generator handed to ``SqlStore.apply``: nothing below uses the store's folding."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text

from emolens.analytics import query_all, query_stats
from emolens.cli import main as cli
from emolens.errors import QueryTooLarge
from emolens.observations import FrameObservations
from emolens.results import EMOTIONS
from emolens.services.gateway import AnalyticsService, build_server
from emolens.settings import Settings
from emolens.store import Policy, SqlStore, StatsFilter, Store
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens_tools.synthetic import cameras, frames, visitors

DAY0 = datetime(2026, 3, 6)  # a Friday: the two days cover a weekday and a weekend day
FPS = 1 / 30
N_CAMERAS, N_DAYS = 4, 2


@dataclass
class Expected:
    frames: int = 0
    faces: int = 0
    low_quality: int = 0
    smiles: int = 0
    tracks: dict[int, list[datetime]] = field(default_factory=dict)  # track -> [first, last]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EMOTIONS, 0))

    @property
    def visitors(self) -> int:
        return len(self.tracks)

    @property
    def dwell(self) -> float:
        return sum((last - first).total_seconds() for first, last in self.tracks.values())


def all_frames() -> list[FrameObservations]:
    out = []
    for i, cam in enumerate(cameras(N_CAMERAS)):
        for d in range(N_DAYS):
            day = DAY0 + timedelta(days=d)
            out += frames(cam, day, FPS, visitors(cam, i, day, FPS, seed=1, rate=6), seq0=d * 1_000_000)
    return out


def fill(store: SqlStore) -> list[FrameObservations]:
    for cam in cameras(N_CAMERAS):
        store.ensure_camera(cam)
    obs = all_frames()
    # 20-minute batches: many visits (and hours, never days) span two
    for i in range(0, len(obs), 40):
        store.apply(obs[i : i + 40])
    return obs


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def expected(obs: list[FrameObservations], period: str) -> dict[tuple[str, datetime], Expected]:
    out: dict[tuple[str, datetime], Expected] = defaultdict(Expected)
    for fr in obs:
        ts = _naive(fr.timestamp)
        start = ts.replace(minute=0, second=0, microsecond=0)
        if period == "day":
            start = start.replace(hour=0)
        e = out[(fr.camera_id, start)]
        e.frames += 1
        for f in fr.faces:
            if f.low_quality:
                e.low_quality += 1
                continue
            e.faces += 1
            e.smiles += f.smile >= 0.5
            e.counts[max(f.emotions, key=f.emotions.__getitem__)] += 1
            span = e.tracks.setdefault(f.track_id, [ts, ts])
            span[0], span[1] = min(span[0], ts), max(span[1], ts)
    return out


def _dt(v: object) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(str(v))


def check_rollups(store: SqlStore, obs: list[FrameObservations]) -> None:
    for period, table in (("hour", "rollup_hourly"), ("day", "rollup_daily")):
        want = expected(obs, period)
        with store.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT * FROM {table}")).mappings().all()
        got = {(r["camera_id"], _dt(r["period_start"])): r for r in rows}
        assert set(got) == set(want), period
        for key, e in want.items():
            r = got[key]
            assert (r["frames"], r["faces"], r["low_quality"], r["smiles"]) == (
                e.frames,
                e.faces,
                e.low_quality,
                e.smiles,
            ), key
            assert r["visitors"] == e.visitors, key
            assert r["dwell_s_sum"] == pytest.approx(e.dwell), key
            assert {x: r[f"n_{x}"] for x in EMOTIONS} == e.counts, key
    # a visitor seen in several minutes of an hour counts once in it: summing minutes overcounts
    hourly = expected(obs, "hour")
    assert sum(b.tracks for b in store.buckets()) > sum(e.visitors for e in hourly.values())


def check_timelines(store: SqlStore, obs: list[FrameObservations]) -> None:
    want: dict[tuple[str, int], list] = {}
    for fr in obs:
        ts = _naive(fr.timestamp)
        for f in fr.faces:
            if f.low_quality:
                continue
            w = want.setdefault((fr.camera_id, f.track_id), [ts, ts, 0, 0])
            w[0], w[1] = min(w[0], ts), max(w[1], ts)
            w[2] += 1
            w[3] += f.smile >= 0.5
    q = "SELECT camera_id, track_id, first_seen, last_seen, faces, smiles FROM visitor_timelines"
    with store.engine.connect() as conn:
        rows = conn.execute(text(q)).all()
    assert {(r[0], r[1]): [_dt(r[2]), _dt(r[3]), r[4], r[5]] for r in rows} == want


def set_k(store: SqlStore, k: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE privacy_settings SET k = :k WHERE id = 1"), {"k": k})


def _stats_request(granularity: int, group_by: int, since: datetime, until: datetime, **kw: object):
    req = analytics_pb2.QueryStatsRequest(granularity=granularity, group_by=group_by, **kw)
    req.since.FromDatetime(since)
    req.until.FromDatetime(until)
    return req


def check_k_everywhere(store: SqlStore, url: str, obs: list[FrameObservations], capsys) -> None:
    """One k, four paths (view, query_stats, `emolens stats`, QueryStats): each shows exactly
    the camera-hours with at least k distinct visitors, and the site-days likewise."""
    hourly = expected(obs, "hour")
    k = sorted(e.visitors for e in hourly.values())[len(hourly) // 2]  # about half are below
    visible = {key for key, e in hourly.items() if e.visitors >= k}
    assert 0 < len(visible) < len(hourly)
    set_k(store, k)
    with store.engine.connect() as conn:
        view = {(r[0], _dt(r[1])) for r in conn.execute(text("SELECT camera_id, period_start FROM analytics_hourly"))}
        assert conn.execute(text("SELECT min(visitors) FROM analytics_hourly")).scalar() >= k
    assert view == visible
    since, until = DAY0, DAY0 + timedelta(days=N_DAYS)
    rows = query_all(store, since, until, by="camera", every="hour", k=k, page_size=7)
    assert {(r.camera_id, r.period_start) for r in rows} == visible
    assert all(r.visitors == hourly[(r.camera_id, r.period_start)].visitors for r in rows)
    first = query_stats(store, since, until, by="camera", every="hour", k=k)
    assert first.suppressed == sum(1 for e in hourly.values() if e.visitors < k)
    # the CLI
    args = ["stats", "--db", url, "--since", "2026-03-06", "--until", "2026-03-08", "--every", "hour", "--k", str(k)]
    assert cli([*args, "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {(r["camera_id"], datetime.fromisoformat(r["period_start"])) for r in printed["rows"]} == visible
    assert printed["suppressed"] == first.suppressed
    # QueryStats over gRPC, paginated
    settings = Settings(db=url, k_anonymity=k)
    server, port = build_server(AnalyticsService(settings, store, None), "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analytics_pb2_grpc.AnalyticsStub(channel)
            got, token, pages = set(), "", 0
            while True:
                req = _stats_request(
                    analytics_pb2.GRANULARITY_HOUR, analytics_pb2.GROUPING_CAMERA, since, until, page_size=10
                )
                req.page_token = token
                resp = stub.QueryStats(req, timeout=30)
                pages += 1
                assert len(resp.rows) <= 10 and resp.k_anonymity == k
                got |= {(r.camera_id, r.period_start.ToDatetime()) for r in resp.rows}
                token = resp.next_page_token
                if not token:
                    break
            assert got == visible and pages == -(-len(visible) // 10)
            # site by day: visitors summed over the site's cameras
            daily = expected(obs, "day")
            per_site: dict[tuple[str, datetime], int] = defaultdict(int)
            site_of = {c.camera_id: c.site for c in cameras(N_CAMERAS)}
            for (cam, day), e in daily.items():
                per_site[(site_of[cam], day)] += e.visitors
            req = _stats_request(analytics_pb2.GRANULARITY_DAY, analytics_pb2.GROUPING_SITE, since, until)
            resp = stub.QueryStats(req, timeout=30)
            assert {(r.site, r.period_start.ToDatetime()): r.visitors for r in resp.rows} == {
                key: v for key, v in per_site.items() if v >= k
            }
            # too big: refused, INVALID_ARGUMENT, before any work
            req = _stats_request(analytics_pb2.GRANULARITY_MINUTE, 0, datetime(2020, 1, 1), datetime(2026, 1, 1))
            with pytest.raises(grpc.RpcError) as err:
                stub.QueryStats(req, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "narrow" in err.value.details()
    finally:
        server.stop(None)
    with pytest.raises(QueryTooLarge):
        query_stats(store, datetime(2020, 1, 1), datetime(2026, 1, 1), every="minute", k=k)
    set_k(store, 5)


def check_retention(store: SqlStore, obs: list[FrameObservations]) -> None:
    """Ages chosen so that the cutoffs fall inside the data: exactly the older rows go."""
    now = DAY0 + timedelta(days=N_DAYS)
    policy = Policy(minutes_days=1, hourly_days=1, daily_days=2, timelines_days=1, replay_window_s=10**9)
    cut = now - timedelta(days=1)  # 2026-03-07 00:00: the first day's minutes go, the second's stay
    minutes_before = [b for b in store.buckets() if b.minute < cut]
    hourly = expected(obs, "hour")
    timelines_left = {
        (fr.camera_id, f.track_id) for fr in obs for f in fr.faces if not f.low_quality and _naive(fr.timestamp) >= cut
    }
    removed = {r.table: r for r in store.apply_retention(policy, now=now)}
    assert removed["minute_buckets"].rows == len(minutes_before) == N_CAMERAS * 1440
    assert removed["rollup_hourly"].rows == sum(1 for _, h in hourly if h < cut)
    assert removed["rollup_daily"].rows == 0  # two days back is the first day's start: kept
    assert all(b.minute >= cut for b in store.buckets())
    with store.engine.connect() as conn:
        left = {(r[0], r[1]) for r in conn.execute(text("SELECT camera_id, track_id FROM visitor_timelines"))}
        for q in (
            "SELECT count(*) FROM rollup_hourly_tracks WHERE period_start < :c",
            "SELECT count(*) FROM bucket_tracks WHERE minute < :c",
            "SELECT count(*) FROM rollup_hourly WHERE period_start < :c",
        ):
            assert conn.execute(text(q), {"c": cut}).scalar() == 0, q
        assert conn.execute(text("SELECT count(*) FROM rollup_daily")).scalar() == N_CAMERAS * N_DAYS
    assert left == timelines_left
    again = {r.table: r for r in store.apply_retention(policy, now=now)}
    assert all(r.rows == 0 for name, r in again.items() if name != "frames_seen_blocks")  # nothing left to remove


def check_read_seam(store: Store, obs: list[FrameObservations]) -> None:
    """The store's read methods (the seam ``query_stats`` and the report stand on) against
    figures computed here from the frames: per camera-hour sums, the k rule, the rows after a
    key, the group count and the dwell-time bins of the whole visits."""
    want = expected(obs, "hour")
    since, until = DAY0, DAY0 + timedelta(days=N_DAYS)
    everything = StatsFilter()
    k = 3
    rows = store.stats_rows("camera", "hour", since, until, everything, k=k)
    shown = {key: e for key, e in want.items() if e.visitors >= k}
    where = {c.camera_id: (c.site, c.zone) for c in store.cameras()}
    order = sorted(shown, key=lambda key: (key[1], *where[key[0]], key[0]))  # period, site, zone, camera
    assert [(r.camera_id, r.period_start) for r in rows] == order
    for r in rows:
        e = shown[(r.camera_id, r.period_start)]
        assert (r.frames, r.faces, r.visitors, r.smiles, r.emotions) == (
            e.frames,
            e.faces,
            e.visitors,
            e.smiles,
            e.counts,
        )
        assert r.mean_dwell_s == pytest.approx(e.dwell / e.visitors)
    assert store.count_suppressed("camera", "hour", since, until, everything, k) == len(want) - len(shown)
    # ``after`` and ``limit`` resume where a page ended
    later = store.stats_rows("camera", "hour", since, until, everything, k=k, after=rows[9].key, limit=5)
    assert later == rows[10:15]
    # filters narrow the cameras; an empty scope sees none
    one = rows[0].camera_id
    assert store.count_groups("camera", everything) == N_CAMERAS
    assert store.count_groups("camera", StatsFilter(camera_ids=())) == 0
    mine = store.stats_rows("camera", "hour", since, until, StatsFilter(camera_id=one), k=k)
    assert mine == [r for r in rows if r.camera_id == one]
    # dwell bins of whole visits, first seen in the range
    visits: dict[tuple[str, int], list[datetime]] = {}
    for fr in obs:
        ts = _naive(fr.timestamp)
        for f in fr.faces:
            if not f.low_quality:
                v = visits.setdefault((fr.camera_id, f.track_id), [ts, ts])
                v[0], v[1] = min(v[0], ts), max(v[1], ts)
    edges = [0.0, 60.0, 300.0, 900.0]
    first_day = [(last - first).total_seconds() for first, last in visits.values() if first < DAY0 + timedelta(days=1)]
    bins = [sum(lo <= s < hi for s in first_day) for lo, hi in zip(edges, [*edges[1:], math.inf], strict=True)]
    assert store.dwell_histogram(DAY0, DAY0 + timedelta(days=1), edges) == bins
    assert sum(bins) == len(first_day) > 0 and sum(1 for b in bins if b) > 1
