import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emolens.dev import free_port
from emolens.services.loop import health_server


def test_health_server_reports_serving_then_not_serving():
    import gc

    port = free_port()
    set_serving = health_server(port, "emolens.detector")
    assert set_serving is not None
    gc.collect()  # the server must survive a collection: only the setter is kept
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "emolens.detector"):
            status = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        set_serving(False)  # NOT_SERVING, then the server stops
    assert health_server(0, "x") is None
