import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emolens.dev import free_port
from emolens.services.loop import health_server


def test_health_follows_readiness_then_stops():
    import gc

    port = free_port()
    health = health_server(port, "emolens.detector")
    assert health is not None
    gc.collect()  # the server must survive a collection: only the Health object is kept

    def statuses(stub):
        return [
            stub.Check(health_pb2.HealthCheckRequest(service=n), timeout=5).status for n in ("", "emolens.detector")
        ]

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert statuses(stub) == [health_pb2.HealthCheckResponse.SERVING] * 2
        health.set(False)  # waiting for a dependency: not ready, still answering
        assert statuses(stub) == [health_pb2.HealthCheckResponse.NOT_SERVING] * 2
        health.set(True)
        assert statuses(stub) == [health_pb2.HealthCheckResponse.SERVING] * 2
        health.close()
        with pytest.raises(grpc.RpcError):
            stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    assert health_server(0, "x") is None


def _listening(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp{,6})."""
    import ipaddress
    from pathlib import Path

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(addr)
                # the kernel writes each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                ip = ipaddress.ip_address(raw)
                mapped = getattr(ip, "ipv4_mapped", None)  # gRPC listens on ::ffff:127.0.0.1 for 127.0.0.1
                found.add("0.0.0.0" if str(ip) == "::" else str(mapped or ip))  # "::" takes IPv4 too
    return found


@pytest.mark.skipif(not __import__("os").path.exists("/proc/net/tcp"), reason="reads /proc/net/tcp")
@pytest.mark.pixel
def test_metrics_and_health_listen_where_the_gateway_does(tmp_path):
    """A gateway on loopback keeps /metrics and its plaintext health port on loopback too
    (before: both on 0.0.0.0, reachable from the network); EMOLENS_OPS_HOST moves them."""
    from emolens.services.gateway import AnalyticsService, build_server
    from emolens.settings import Settings
    from emolens.store import SqlStore
    from tests.conftest import MODEL_REPO

    store = SqlStore(f"sqlite:///{tmp_path / 'g.db'}")
    for ops, want in (("", {"127.0.0.1"}), ("0.0.0.0", {"0.0.0.0"})):
        metrics_port, health_port = free_port(), free_port()
        settings = Settings.from_env(
            {"EMOLENS_OPS_HOST": ops},
            inference=f"onnx://{MODEL_REPO}",
            metrics_port=metrics_port,
            health_port=health_port,
        )
        server, _ = build_server(AnalyticsService(settings, store, None), "127.0.0.1:0")
        server.start()
        try:
            assert _listening(metrics_port) == want
            assert _listening(health_port) == want
        finally:
            server.stop(0)
    store.close()
