"""Shared main-loop plumbing for the services: stop on SIGTERM/SIGINT, log throughput."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def health_server(port: int, service: str) -> Callable[[bool], None] | None:
    """A gRPC health server on ``port`` (0 = none) for Kubernetes' grpc probes; returns a
    setter for SERVING / NOT_SERVING."""
    if not port:
        return None
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()

    def set_serving(ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", service):
            servicer.set(name, status)
        if not ok:
            server.stop(grace=1)

    # The closure must hold the server: a grpc.Server that nothing references is collected,
    # and its port closes with it.
    set_serving.server = server  # type: ignore[attr-defined]

    set_serving(True)
    return set_serving


def stop_event() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a loop can finish its batch and exit cleanly."""
    event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: event.set())
    return event


def serve(name: str, step: Callable[[], int], stop: threading.Event, idle_exit_s: float | None = None) -> int:
    """Call ``step`` until ``stop`` is set (or nothing arrived for ``idle_exit_s``); returns the total."""
    total, last_report, idle_since = 0, time.monotonic(), time.monotonic()
    while not stop.is_set():
        n = step()
        total += n
        now = time.monotonic()
        if n:
            idle_since = now
        elif idle_exit_s is not None and now - idle_since > idle_exit_s:
            break
        if now - last_report > 10:
            log.info("event=progress service=%s handled=%d", name, total)
            last_report = now
    log.info("event=stopped service=%s handled=%d", name, total)
    return total


def run_stage(name: str, stage: Any, bus: Any, idle_exit_s: float | None, health_port: int, *closing: Any) -> int:
    """The main loop every bus service shares: health server up, ``stage.step`` until stopped,
    then health down and everything closed (the stage's consumer, ``closing``, the bus)."""
    set_health = health_server(health_port, f"emolens.{name}")
    try:
        serve(name, stage.step, stop_event(), idle_exit_s)
    finally:
        if set_health:
            set_health(False)
        stage.consumer.close()
        for thing in closing:
            thing.close()
        bus.close()
    return 0
