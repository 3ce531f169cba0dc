"""Shared main-loop plumbing for the services: stop on SIGTERM/SIGINT, log throughput."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from emolens import logs
from emolens.errors import ConfigError
from emolens.metrics import serve_metrics
from emolens.settings import Settings

log = logging.getLogger(__name__)


LIVENESS, READINESS = "liveness", "readiness"


class Health:
    """A gRPC health server on ``port`` for Kubernetes' grpc probes, with the names they ask:

    - ``readiness`` (also ``""`` and ``service``): SERVING while the stage's dependencies
      answer, NOT_SERVING while it waits for one (no traffic, no restart);
    - ``liveness``: SERVING while the main loop turns (:meth:`beat`: the stage calls it on every
      step and on every retry of a dependency, so waiting is not hanging); NOT_SERVING once it
      has not turned for
      ``liveness_timeout_s``: a hung process, which Kubernetes restarts;
    - any other name set with :meth:`set_name` (the gateway's ``emolens.pipeline``).

    Stopped by :meth:`close`."""

    def __init__(self, port: int, service: str, liveness_timeout_s: float = 120.0, host: str = "0.0.0.0") -> None:
        from concurrent import futures

        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        self._pb = health_pb2
        self.service = service
        self.liveness_timeout_s = liveness_timeout_s
        self._beat = time.monotonic()
        self._closed = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)])
        self.servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        try:
            self.server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:  # grpc's "Failed to bind": a port taken is a setting to change
            raise ConfigError(f"health port {host}:{port}: cannot bind it, in use? (EMOLENS_HEALTH_PORT)") from exc
        self.server.start()
        self.set(True)
        self.set_name(LIVENESS, True)
        self._watchdog = threading.Thread(target=self._watch, name=f"{service}-liveness", daemon=True)
        self._watchdog.start()

    def _status(self, ok: bool) -> int:
        return int(self._pb.HealthCheckResponse.SERVING if ok else self._pb.HealthCheckResponse.NOT_SERVING)

    def beat(self) -> None:
        """The main loop turned."""
        self._beat = time.monotonic()

    def _watch(self) -> None:
        alive: bool | None = None
        while not self._closed.wait(min(1.0, self.liveness_timeout_s / 4)):
            now_alive = time.monotonic() - self._beat < self.liveness_timeout_s
            if now_alive != alive:
                if not now_alive:
                    logs.event(
                        log.error, "not_alive", service=self.service, stalled_s=round(time.monotonic() - self._beat, 0)
                    )
                self.servicer.set(LIVENESS, self._status(now_alive))
                alive = now_alive

    def set(self, ok: bool) -> None:
        self.beat()
        for name in ("", READINESS, self.service):
            self.set_name(name, ok)

    def set_name(self, name: str, ok: bool) -> None:
        self.servicer.set(name, self._status(ok))

    def close(self) -> None:
        self._closed.set()
        self.set(False)
        self.set_name(LIVENESS, False)
        self.server.stop(grace=1)


def health_server(port: int, service: str, liveness_timeout_s: float = 120.0, host: str = "0.0.0.0") -> Health | None:
    """A :class:`Health` server on ``host``:``port``, or None for port 0."""
    return Health(port, service, liveness_timeout_s, host) if port else None


def ops_host(settings: Settings, service_host: str = "0.0.0.0") -> str:
    """Where a service's /metrics and health port listen: ``settings.ops_host`` when given,
    else where the service itself listens (the gateway's host; 0.0.0.0 for the bus services).

    >>> ops_host(Settings(), "127.0.0.1"), ops_host(Settings(ops_host="10.0.0.5"), "127.0.0.1")
    ('127.0.0.1', '10.0.0.5')
    """
    return settings.ops_host or service_host


def stop_event(event: threading.Event | None = None) -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a loop can finish its batch and exit cleanly."""
    event = event or threading.Event()
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
            logs.event(log.info, "progress", service=name, handled=total)
            last_report = now
    logs.event(log.info, "stopped", service=name, handled=total)
    return total


def run_stage(name: str, stage: Any, idle_exit_s: float | None, settings: Settings, *closing: Any) -> int:
    """The main loop every bus service shares: metrics and health up (health follows the
    stage's readiness), ``stage.step`` until stopped, then health down and everything closed
    (the stage's consumer, ``closing``, the bus)."""
    serve_metrics(settings.metrics_port, ops_host(settings))
    health = health_server(settings.health_port, f"emolens.{name}", settings.liveness_timeout_s, ops_host(settings))
    step = stage.step
    if health is not None:
        stage.on_ready, stage.on_beat = health.set, health.beat

        def step() -> int:
            n = int(stage.step())
            health.beat()
            return n

    stop = stop_event(stage.stop)
    try:
        serve(name, step, stop, idle_exit_s)
    finally:
        if health is not None:
            health.close()
        stage.consumer.close()
        for thing in closing:
            thing.close()
        stage.bus.close()
    return 0
