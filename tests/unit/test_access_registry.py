"""Access follows a registry, not the data (docs/reliability.md, "Access from a registry"): a
message never moves a camera into another site or zone (it is dead-lettered; configuration moves
cameras), tokens can expire, a token removed from the tokens file stops working within seconds
without a restart, and every refused attempt is logged with the caller's address."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml

from emolens import stages
from emolens.bus import OBSERVATIONS_TOPIC, MemoryBus, dead_letter_topic
from emolens.cli import main
from emolens.services import access as access_module
from emolens.services.gateway import AnalyticsService
from emolens.store import Camera, SqlStore
from emolens.v1 import analytics_pb2
from emolens.wire import observations_to_pb
from emolens_tools.dev import free_port
from tests.conftest import ROOT
from tests.redelivery import frame
from tests.unit.test_gateway_auth import _certificate, gateway, plaintext, settings

pytestmark = pytest.mark.auth

OPS = "ops-token-0123456789abcdef"
MALL_A = "mall-a-token-0123456789abcdef"
OLD = "old-token-0123456789abcdef"


def _publish(bus: MemoryBus, camera: Camera, seqs: range) -> None:
    for seq in seqs:
        message = observations_to_pb(frame(camera.camera_id, seq), camera.zone, camera.site)
        bus.publish(OBSERVATIONS_TOPIC, camera.camera_id, message.SerializeToString())


def _sites(store: SqlStore) -> dict[str, str]:
    return {c.camera_id: c.site for c in store.cameras()}


def test_a_message_never_moves_a_camera_it_is_dead_lettered(tmp_path, monkeypatch):
    db = tmp_path / "r.db"
    store = SqlStore(f"sqlite:///{db}")
    store.ensure_camera(Camera("cam-1", "entrance", "mall-a"))  # declared by configuration
    bus = MemoryBus()
    aggregator = stages.Aggregator(bus, store, None)
    _publish(bus, Camera("cam-1", "entrance", "mall-a"), range(0, 3))
    _publish(bus, Camera("cam-1", "entrance", "mall-b"), range(3, 5))  # names another site
    _publish(bus, Camera("cam-1", "lobby", "mall-a"), range(5, 6))  # names another zone
    _publish(bus, Camera("cam-2", "till", "mall-b"), range(0, 2))  # nobody declared it (before: it registered)
    stages.drain(aggregator, idle_s=0.2, timeout_s=0.05)
    assert _sites(store) == {"cam-1": "mall-a"}
    assert sum(b.frames for b in store.buckets(camera_id="cam-1")) == 3
    assert sum(b.frames for b in store.buckets(site="mall-a")) == 3  # its history stays where it was
    assert sum(b.frames for b in store.buckets(site="mall-b")) == 0
    dead = bus.consumer([dead_letter_topic(OBSERVATIONS_TOPIC)], "check").poll(0.1, 100)
    assert [m.key for m in dead] == ["cam-1"] * 3 + ["cam-2"] * 2
    reason = dict(dead[-1].headers)[stages.DLQ_REASON].decode()
    assert reason.startswith("camera 'cam-2' is not declared"), reason

    # configuration moves a camera (the admin command), and the aggregator follows it
    monkeypatch.setattr(stages, "REGISTRY_REFRESH_S", 0.0)
    assert main(["cameras", "--db", f"sqlite:///{db}", "--set", "cam-1", "--zone", "entrance", "--site", "mall-b"]) == 0
    _publish(bus, Camera("cam-1", "entrance", "mall-b"), range(10, 12))
    stages.drain(aggregator, idle_s=0.2, timeout_s=0.05)
    assert _sites(store)["cam-1"] == "mall-b"
    assert sum(b.frames for b in store.buckets(camera_id="cam-1")) == 5
    # and declares one: its frames are stored from then on
    assert main(["cameras", "--db", f"sqlite:///{db}", "--set", "cam-2", "--zone", "till", "--site", "mall-b"]) == 0
    _publish(bus, Camera("cam-2", "till", "mall-b"), range(2, 4))
    stages.drain(aggregator, idle_s=0.2, timeout_s=0.05)
    assert sum(b.frames for b in store.buckets(camera_id="cam-2")) == 2
    store.close()


def _write_tokens(path: Path, clients: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"clients": clients}))
    os.replace(tmp, path)  # how an operator (or a mounted Secret) swaps the file


def _ask(stub, token: str) -> grpc.StatusCode:
    try:
        stub.QueryStats(analytics_pb2.QueryStatsRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture
def store(tmp_path):
    s = SqlStore(f"sqlite:///{tmp_path / 'g.db'}")
    s.ensure_camera(Camera("cam-a1", "entrance", "mall-a"))
    yield s
    s.close()


def test_an_expired_token_is_refused_and_logged_with_the_callers_address(tmp_path, store, caplog):
    path = tmp_path / "tokens.yaml"
    _write_tokens(
        path,
        [
            {"name": "ops", "token": OPS, "all": True, "expires": "2999-01-01T00:00:00Z"},
            {"name": "old", "sha256": hashlib.sha256(OLD.encode()).hexdigest(), "all": True, "expires": "2020-01-01"},
        ],
    )
    service = AnalyticsService(settings(tokens_file=str(path), rate_limit=0), store, None)
    caplog.set_level(logging.INFO, logger="emolens")
    with gateway(service) as port, plaintext(port) as stub:
        assert _ask(stub, OPS) == grpc.StatusCode.OK
        assert _ask(stub, OLD) == grpc.StatusCode.UNAUTHENTICATED
        assert _ask(stub, "no-such-token-0123456789") == grpc.StatusCode.UNAUTHENTICATED
    refusals = [r.getMessage() for r in caplog.records if "event=access_refused" in r.getMessage()]
    assert len(refusals) == 2
    assert all("peer=127.0.0.1" in m for m in refusals)
    assert "client=old" in refusals[0] and "expired" in refusals[0]
    assert all(OLD not in r.getMessage() and "no-such-token" not in r.getMessage() for r in caplog.records)


def test_a_token_removed_from_the_file_stops_working_within_seconds_without_a_restart(tmp_path, store, caplog):
    path = tmp_path / "tokens.yaml"
    _write_tokens(
        path, [{"name": "ops", "token": OPS, "all": True}, {"name": "mall-a", "token": MALL_A, "sites": ["mall-a"]}]
    )
    service = AnalyticsService(settings(tokens_file=str(path), rate_limit=0), store, None)
    caplog.set_level(logging.INFO, logger="emolens")
    with gateway(service) as port, plaintext(port) as stub:
        assert _ask(stub, MALL_A) == grpc.StatusCode.OK
        _write_tokens(path, [{"name": "ops", "token": OPS, "all": True}])  # mall-a revoked
        revoked_at = time.monotonic()
        while _ask(stub, MALL_A) == grpc.StatusCode.OK:
            assert time.monotonic() - revoked_at < 5.0, "still accepted 5 s after its removal"
            time.sleep(0.1)
        assert _ask(stub, MALL_A) == grpc.StatusCode.UNAUTHENTICATED
        assert _ask(stub, OPS) == grpc.StatusCode.OK
        # a file that no longer reads keeps the tokens in use, and says so
        time.sleep(access_module.TOKENS_CHECK_S)
        path.write_text("clients: [")
        deadline = time.monotonic() + access_module.TOKENS_CHECK_S + 3
        while not any("event=tokens_reload_failed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            assert _ask(stub, OPS) == grpc.StatusCode.OK
            time.sleep(0.1)
        assert _ask(stub, OPS) == grpc.StatusCode.OK
    assert any("event=tokens_reloaded tokens=1" in r.getMessage() for r in caplog.records)


def test_an_expiry_that_is_not_a_time_is_a_clear_error(tmp_path):
    from emolens.errors import ConfigError

    with pytest.raises(ConfigError, match=r"client #1 \(ops\): expires 'soon' is not an ISO date or time"):
        access_module.Tokens.parse({"clients": [{"name": "ops", "token": OPS, "all": True, "expires": "soon"}]}, "t")


def test_tls_handshake_failures_leave_no_raw_grpc_lines_in_the_gateways_log(tmp_path):
    key, cert = _certificate("localhost", server=True)
    (tmp_path / "gw.key").write_bytes(key)
    (tmp_path / "gw.crt").write_bytes(cert)
    port = free_port()
    env = {**os.environ, "EMOLENS_DB": f"sqlite:///{tmp_path / 't.db'}", "EMOLENS_DETECTOR": "blazeface"}
    env.pop("GRPC_VERBOSITY", None)
    env.pop("EMOLENS_TOKENS_FILE", None)
    tls = ["--tls-cert", str(tmp_path / "gw.crt"), "--tls-key", str(tmp_path / "gw.key")]
    process = subprocess.Popen(
        [sys.executable, "-m", "emolens", "gateway", "--port", str(port), *tls],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # the port answers once the gateway serves
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.2)
        # plaintext to the TLS port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=2)
        with socket.create_connection(("127.0.0.1", port)) as raw, contextlib.suppress(OSError):  # a port scanner
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.settimeout(2)
            raw.recv(100)
        time.sleep(0.5)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert any("event=gateway_ready" in line for line in lines), stderr
    assert not any("ssl_transport_security" in line or "Handshake failed" in line for line in lines), stderr
    # one key=value event a line (and the one line the gateway says it listens on), nothing raw
    assert all("event=" in line or line.startswith("gateway listening on") for line in lines), stderr
