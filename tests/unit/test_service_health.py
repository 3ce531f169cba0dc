import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emolens.services.loop import health_server
from emolens_tools.dev import free_port


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


def test_liveness_follows_the_main_loop_not_the_dependencies():
    """Kubernetes restarts a container whose liveness fails: a stage waiting out a database
    outage (retrying, not ready) must stay alive; one whose loop stopped turning must not."""
    import threading
    import time

    from emolens.bus import MemoryBus
    from emolens.errors import Unavailable
    from emolens.retry import Backoff
    from emolens.stages import BusStage

    port = free_port()
    health = health_server(port, "emolens.detector", liveness_timeout_s=1.0)
    assert health is not None
    stage = BusStage(MemoryBus())
    stage.on_ready, stage.on_beat = health.set, health.beat  # as run_stage and ingest wire it
    stage.new_backoff = lambda: Backoff(initial_s=0.2, factor=1.0, jitter=0)
    back_at = time.monotonic() + 2.5

    def database() -> str:
        if time.monotonic() < back_at:
            raise Unavailable("postgresql is unavailable")
        return "stored"

    def status(stub, name):
        return stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    result: list[str] = []
    waiting = threading.Thread(target=lambda: result.append(stage.retry(database, "store")))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            waiting.start()
            seen = set()
            while waiting.is_alive():  # 2.5 s of outage, 2.5x the liveness timeout
                seen.add((status(stub, "readiness"), status(stub, "liveness")))
                time.sleep(0.1)
            assert result == ["stored"]
            assert (not_serving, serving) in seen and all(live == serving for _, live in seen)
            assert status(stub, "readiness") == serving
            time.sleep(2.0)  # the loop stopped turning: hung
            assert status(stub, "liveness") == not_serving
            health.beat()
            time.sleep(0.6)
            assert status(stub, "liveness") == serving
    finally:
        health.close()


def test_pipeline_watch_tells_a_moving_stage_from_a_stuck_one():
    from emolens.bus import FRAMES_TOPIC, MemoryBus
    from emolens.services.pipeline_health import PipelineWatch
    from emolens.stages import Detector

    bus, now = MemoryBus(), [0.0]
    watch = PipelineWatch(lambda: bus, stall_s=30, clock=lambda: now[0])
    consumer = bus.consumer([FRAMES_TOPIC], Detector.GROUP)
    for t in range(0, 100, 10):  # a backlog all along, but the stage commits: it moves
        now[0] = float(t)
        for _ in range(5):
            bus.publish(FRAMES_TOPIC, "cam", b"f")
        consumer.poll(0.01, max_records=3)
        consumer.commit()
        detector = watch.check()[0]
        assert detector.stage == "detector" and detector.backlog and detector.ok
    for t in range(100, 130, 10):  # frames keep coming, nothing committed since t=90
        now[0] = float(t)
        bus.publish(FRAMES_TOPIC, "cam", b"f")
        detector = watch.check()[0]
        assert detector.ok == (t < 120), t  # stuck once 30 s passed
    assert detector.reason == f"backlog {detector.backlog}, nothing committed for 30 s"
    consumer.poll(0.01, max_records=1000)
    consumer.commit()
    now[0] = 141.0
    assert watch.check()[0].ok  # caught up
    assert watch.check()[1].ok  # the aggregator had nothing to do all along


def test_pipeline_watch_reports_an_unreachable_bus_as_not_moving():
    from emolens.errors import Unavailable
    from emolens.services.pipeline_health import PipelineWatch

    def down():
        raise Unavailable("kafka is unavailable")

    statuses = PipelineWatch(down, stall_s=30).check()
    assert [s.ok for s in statuses] == [False, False] and statuses[0].reason == "bus: Unavailable"


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
