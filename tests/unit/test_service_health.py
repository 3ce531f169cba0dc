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


def test_liveness_follows_the_main_loop_not_the_dependencies():
    """Kubernetes restarts a container whose liveness fails: a stage waiting out a database
    outage (not ready) must stay alive; one whose loop stopped turning must not."""
    import time

    port = free_port()
    health = health_server(port, "emolens.detector", liveness_timeout_s=1.0)
    assert health is not None

    def status(stub, name):
        return stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(6):  # waiting for a dependency, retrying: not ready, alive
                health.set(False)
                time.sleep(0.3)
            assert status(stub, "readiness") == not_serving and status(stub, "liveness") == serving
            time.sleep(2.0)  # the loop stopped turning
            assert status(stub, "liveness") == not_serving
            health.beat()
            time.sleep(0.6)
            assert status(stub, "liveness") == serving
    finally:
        health.close()


def test_pipeline_watch_tells_a_moving_stage_from_a_stuck_one():
    from emolens.bus import FRAMES_TOPIC, MemoryBus
    from emolens.services.pipeline import PipelineWatch
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
    from emolens.services.pipeline import PipelineWatch

    def down():
        raise Unavailable("kafka is unavailable")

    statuses = PipelineWatch(down, stall_s=30).check()
    assert [s.ok for s in statuses] == [False, False] and statuses[0].reason == "bus: Unavailable"
