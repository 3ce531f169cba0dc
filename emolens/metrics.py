"""Prometheus metrics of every emolens process, defined once; each service serves them on
``EMOLENS_METRICS_PORT`` (the chart's ServiceMonitor scrapes that port).

Labels stay few and bounded: the stage (ingest, detector, aggregator, gateway), a dependency
or reason from a short fixed list, never a camera id from user input or a URL.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

FRAMES = Counter("emolens_frames_total", "Frames handled, by stage and direction (in, out)", ["stage", "direction"])
FACES = Counter("emolens_faces_total", "Faces found or counted", ["stage"])
SHED = Counter("emolens_frames_shed_total", "Frames dropped on purpose (backpressure, staleness)", ["stage", "reason"])
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


def serve_metrics(port: int) -> None:
    """Serve /metrics on ``port`` (0: not at all)."""
    if port:
        start_http_server(port, addr="0.0.0.0")
