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
