"""Prometheus metrics of every emolens process, defined once; each service serves them on
``EMOLENS_METRICS_PORT`` (the chart's ServiceMonitor scrapes that port).

Labels stay few and bounded: the stage (ingest, detector, aggregator, gateway), a dependency
or reason from a short fixed list, never a camera id from user input or a URL.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from emolens.errors import ConfigError

FRAMES = Counter("emolens_frames_total", "Frames handled, by stage and direction (in, out)", ["stage", "direction"])
FACES = Counter("emolens_faces_total", "Faces found or counted", ["stage"])
SHED = Counter(
    "emolens_frames_shed_total",
    "Frames read and not passed on, by reason (ingest: rate = sampled out above the target fps, backlog = "
    "shed while detection is behind, unreadable = an image of a folder that cannot be decoded)",
    ["stage", "reason"],
)
INFERENCE_SECONDS = Histogram(
    "emolens_inference_seconds",
    "Time of one classification call (all faces of a batch, one model or both)",
    ["backend"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SECONDS = Histogram("emolens_batch_seconds", "Time to handle one polled batch", ["stage"])
CONSUMER_LAG = Gauge("emolens_consumer_lag", "Messages not yet consumed by the group", ["stage"])
RETRIES = Counter("emolens_retries_total", "Calls retried after a dependency outage", ["stage", "dependency"])
ERRORS = Counter("emolens_errors_total", "Errors by stage and kind", ["stage", "kind"])
DEAD_LETTERS = Counter("emolens_dead_letters_total", "Messages moved to a dead-letter topic", ["topic"])
RECONNECTS = Counter("emolens_source_reconnects_total", "Live sources reopened after a drop", ["stage"])
READY = Gauge("emolens_ready", "1 while the stage's dependencies answer, else 0", ["stage"])
# The gateway: ``method`` is the full gRPC method of a registered handler (a bounded set: an
# unknown method never reaches a handler), ``code`` the status name it ended with.
GRPC_REQUESTS = Counter("emolens_grpc_requests_total", "gRPC calls handled by the gateway", ["method", "code"])
GRPC_SECONDS = Histogram(
    "emolens_grpc_request_seconds",
    "Time of one gRPC call, from the handler's start to its status (a stream: its whole life)",
    ["method", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

LAG_EVERY_S = 1.0  # how often a stage asks for its lag: on Kafka each ask is a broker round trip
_lag_asked: dict[str, float] = {}
_lag_lock = threading.Lock()


def report_lag(stage: str, lag: Callable[[], int | None]) -> None:
    """Set ``CONSUMER_LAG`` of ``stage`` from ``lag()`` (a consumer's ``lag``), at most once
    every ``LAG_EVERY_S`` per stage; a lag that is not known now (None) leaves the last value.

    >>> report_lag("example", lambda: 7)
    >>> CONSUMER_LAG.labels("example")._value.get()
    7.0
    """
    now = time.monotonic()
    with _lag_lock:
        if now - _lag_asked.get(stage, -math.inf) < LAG_EVERY_S:
            return
        _lag_asked[stage] = now
    value = lag()
    if value is not None:
        CONSUMER_LAG.labels(stage).set(value)


def serve_metrics(port: int, host: str = "0.0.0.0") -> WSGIServer | None:
    """Serve /metrics on ``host``:``port`` from a daemon thread (0: not at all);
    ``shutdown()`` on the server returned stops it."""
    if not port:
        return None
    try:
        server, _ = start_http_server(port, addr=host.removeprefix("[").removesuffix("]"))
    except OSError as exc:  # a port taken is a setting to change, named as such
        raise ConfigError(f"metrics port {host}:{port}: {exc.strerror or exc} (EMOLENS_METRICS_PORT)") from exc
    return server
