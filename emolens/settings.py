"""One settings object for every command and service, built from ``EMOLENS_*`` environment
variables and CLI flags (flags win). The names match the Helm chart's values."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from emolens.errors import ConfigError, InputError

DETECTORS = ("auto", "blazeface", "blazeface-full", "blazeface-short", "haar")  # see vision.detect
PREPROCESS_MODES = ("none", "auto", "clahe")  # see vision.preprocess
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")  # text: key=value after a ts/level/logger prefix; json: one object a line
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS
# The smallest k any report or QueryStats may use. k = 1 shows every bucket that holds a face
# (the demo and single-camera tests need it); below 1 the rule would hide nothing at all, so a
# negative or zero k is refused instead of silently turning suppression off. The Helm schema
# has the same minimum.
MIN_K_ANONYMITY = 1


def _host_port(text: str) -> bool:
    """``HOST:PORT`` with the port in 1..65535."""
    host, sep, port = text.rpartition(":")
    return bool(sep and host and "," not in host and port.isdigit() and 0 < int(port) < 65536)


def _host_ports(text: str) -> bool:
    """``HOST:PORT[,HOST:PORT...]`` (a Kafka bootstrap list)."""
    return all(_host_port(part) for part in text.split(","))


def redact_url(url: str) -> str:
    """``url`` with its password (``scheme://user:PASSWORD@host``) masked, for messages."""
    return re.sub(r"(//[^/@:]*:)[^/]*@", r"\1***@", url)


def _refuse(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{name} (EMOLENS_{name.upper()}) is {value!r}: {allowed}")


@dataclass(frozen=True)
class Settings:
    inference: str = "onnx://"  # onnx://PATH | triton://HOST:PORT; onnx:// alone = the models in the package
    detector: str = "auto"  # one of DETECTORS
    min_detection_score: float = 0.5
    # The smallest face width (pixels of the frame) the detector looks for. Where the whole frame
    # shrunk to BlazeFace's 192 px input would leave such a face too small (any frame wider than
    # about 9x this), BlazeFace full range also runs over overlapping tiles (vision.detect,
    # small_face_tiles): the cost grows with the frame's area over this width squared
    # (docs/benchmarks.md, "Small faces"). 0 = the whole frame only (faces of about a tenth of
    # the frame width and up).
    min_face_px: int = 32
    # Video: the small-face tiles are all scanned every this many seconds; between, a full
    # detection scans only the tiles where something moved or a small face is followed. 0 = all
    # tiles at every full detection. Still images always get all tiles.
    tile_interval: float = 3.0
    quality_threshold: float = 0.35
    # Video: the full face detector runs every this many seconds (and at once when a face is lost
    # or the scene cuts); between, each face is followed in a region around it (vision.follow).
    # Seconds, not frames: the time is what bounds the faces missed, at 5 fps as at 15 (measured
    # in docs/architecture.md, Detection). 0 = full detection on every frame. Still images
    # always get full detection.
    detect_interval: float = 0.33
    # Video: a followed face (not a fresh detection) is classified again only when this many
    # seconds passed since its last classification or its box moved or scaled a lot; between,
    # it keeps that classification (like DeepStream's secondary-inference interval). Fresh
    # detections and still images are always classified. 0 = classify every face on every frame.
    # 0.33 (with detect_interval 0.33: faces classified at each full detection and when they
    # move) classifies 23% of the demo clip's faces at 15 fps and 57% at 5 fps, and moved its
    # per-minute statistics by under 0.1 point more than following alone (tests/unit/test_follow.py).
    classify_interval: float = 0.33
    smoothing: float = 0.6  # weight of the past in per-track smoothing
    preprocess: str = "none"  # one of PREPROCESS_MODES (see docs/model-card.md)
    # ONNX Runtime intra-op threads and BlazeFace (LiteRT) threads; 0 = one per core (BlazeFace: at most 4)
    threads: int = 0
    db: str = "sqlite:///emolens.db"
    bus: str = "memory://"
    live: str = "memory://"
    fps: float = 5.0  # frames per second sampled from a source
    # A live source (camera URL, webcam) that has never opened gives up after this many seconds
    # with one error; once it has opened, drops are retried forever. 0 = retry forever from the start.
    source_open_timeout_s: float = 30.0
    k_anonymity: int = 5  # buckets with fewer distinct faces are suppressed; >= MIN_K_ANONYMITY
    max_pixels: int = 40_000_000  # larger images are refused
    health_port: int = 0  # gRPC health server of the bus services (0 = none)
    metrics_port: int = 0  # Prometheus /metrics of the services (0 = none)
    # Where /metrics and the health port listen. "" = the gateway's own --host (a gateway on
    # loopback exposes neither off the machine); the bus services, which bind nothing else,
    # then listen on 0.0.0.0, where Kubernetes' probes and Prometheus reach a pod.
    ops_host: str = ""
    # "" = the command's own default: INFO for the services (ingest, detect, aggregate,
    # gateway), WARNING for the tools (analyze, run, stats, ...); one of LOG_LEVELS
    log_level: str = ""
    log_format: str = "text"  # one of LOG_FORMATS
    # Kafka topics, applied when a service creates them (KafkaBus.ensure_topics). Frames hold
    # face pixels: their retention is how long a face image exists anywhere (docs/deploy.md).
    frames_retention_ms: int = 10 * MINUTE_MS
    observations_retention_ms: int = 7 * DAY_MS
    dead_letter_retention_ms: int = 14 * DAY_MS  # emolens.frames.dlq, emolens.observations.dlq
    kafka_partitions: int = 4  # the most detector (and aggregator) replicas that share the work
    kafka_replication: int = 1  # the chart's production values set 3
    # How long the SQL store remembers a frame it accepted: a redelivery or replay within it counts
    # once, after it again. Bounds the store's redelivery bookkeeping (docs/reliability.md).
    replay_window_s: int = 7 * DAY_MS // 1000  # 7 days, the observations topic's retention
    # Retention of the statistics (`emolens retention apply`, docs/analytics.md), in days; 0 keeps
    # forever. Minutes (and their tracks) go first, timelines (anonymous tracks) are the shortest.
    retention_minutes_days: int = 90
    retention_hourly_days: int = 400
    retention_daily_days: int = 0
    retention_timelines_days: int = 30
    # Statistics queries (`emolens stats`, QueryStats): groups x periods one query may span, and
    # the largest page; bigger queries are refused (INVALID_ARGUMENT) instead of answered slowly.
    stats_max_rows: int = 200_000
    stats_max_page_size: int = 10_000
    # The partner gateway (docs/api.md). Certificates and tokens come from files only, so no
    # secret ever sits in a command line, an environment listing or a log.
    tls_cert: str = ""  # PEM certificate chain of the gateway; with tls_key, the gateway speaks TLS only
    tls_key: str = ""  # PEM private key
    tls_client_ca: str = ""  # PEM CA bundle: clients must present a certificate it signed (mTLS)
    tokens_file: str = ""  # YAML/JSON bearer tokens and their scopes; "" = no auth (loopback only)
    max_request_bytes: int = 32 << 20  # larger requests are refused unread (RESOURCE_EXHAUSTED)
    max_streams: int = 16  # concurrent AnalyzeStream + WatchLive calls, all clients together
    max_streams_per_client: int = 4  # ... and per client
    rate_limit: float = 20.0  # calls per second per token, sustained (0 = no limit)
    rate_burst: int = 40  # calls a client may make at once before rate_limit applies
    gateway_workers: int = 8  # threads for unary calls and health, on top of one per stream slot
    # Decoded pixels the gateway holds at once (AnalyzeImage, AnalyzeStream), all clients together
    # and per client, read from each image's header before decoding: an image waits briefly for
    # room, then is refused (RESOURCE_EXHAUSTED). A decoded pixel costs about 3 bytes, more while
    # it is analysed: 80 M (two images at max_pixels) kept 24 concurrent 6,300x6,300 PNGs under
    # 1.5 GB of gateway memory (docs/reliability.md). Both must be at least max_pixels.
    max_pixels_in_flight: int = 80_000_000
    max_pixels_in_flight_per_client: int = 40_000_000
    health_interval: float = 5.0  # seconds between the gateway's checks of its store and live state
    # A bus stage with a backlog that committed nothing for this long is stuck: the gateway's
    # health says NOT_SERVING for emolens.pipeline (docs/reliability.md, "The stack heals itself").
    # Longer than a stage waits out a short outage; shorter than partners tolerate a stale number.
    pipeline_stall_s: float = 30.0
    # A service whose main loop has not turned for this long is not alive (health service
    # "liveness"; Kubernetes restarts it). Waiting out a dependency turns the loop (retries).
    liveness_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        """Refuse a setting outside its allowed values when it is loaded, naming both, rather
        than when a service first uses it (or never, as a negative k would)."""
        for check in (
            self._check_frames,
            self._check_urls,
            self._check_analysis,
            self._check_gateway,
            self._check_storage_and_topics,
        ):
            check()

    def _check_frames(self) -> None:
        """The source's sampling and what the pipeline does with each frame."""
        if not (self.fps > 0 and math.isfinite(self.fps)):  # NaN compares False with everything
            raise _refuse("fps", self.fps, "must be positive")
        if not (self.source_open_timeout_s >= 0 and math.isfinite(self.source_open_timeout_s)):
            raise _refuse("source_open_timeout_s", self.source_open_timeout_s, "must be 0 (retry forever) or seconds")
        if not 0.0 <= self.smoothing < 1.0:
            raise _refuse("smoothing", self.smoothing, "must be in [0, 1)")
        if self.detector not in DETECTORS:
            raise _refuse("detector", self.detector, f"choose one of {', '.join(DETECTORS)}")
        if self.preprocess not in PREPROCESS_MODES:
            raise _refuse("preprocess", self.preprocess, f"choose one of {', '.join(PREPROCESS_MODES)}")

    def _check_urls(self) -> None:
        """The four backends' URLs."""
        if not (
            self.inference.startswith("onnx://")
            or (
                self.inference.startswith("triton://")
                and _host_port(self.inference[len("triton://") :].partition("?")[0])
            )
        ):
            raise _refuse(
                "inference", self.inference, "use onnx://[PATH] or triton://HOST:PORT[?timeout=SECONDS&probe=SECONDS]"
            )
        if not (
            self.bus == "memory://" or (self.bus.startswith("kafka://") and _host_ports(self.bus[len("kafka://") :]))
        ):
            raise _refuse("bus", self.bus, "use memory:// or kafka://HOST:PORT[,HOST:PORT...]")
        if not (self.live == "memory://" or self.live.startswith("redis://")):
            raise _refuse("live", self.live, "use memory:// or redis://HOST:PORT/DB")
        if not self.db.startswith(("sqlite://", "postgresql://", "postgresql+")):
            raise _refuse("db", redact_url(self.db), "use sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB")

    def _check_analysis(self) -> None:
        """k-anonymity, detection, tiles and threads."""
        if self.k_anonymity < MIN_K_ANONYMITY:
            raise _refuse("k_anonymity", self.k_anonymity, f"must be at least {MIN_K_ANONYMITY}")
        if not (self.detect_interval >= 0 and math.isfinite(self.detect_interval)):
            raise _refuse("detect_interval", self.detect_interval, "must be 0 (detect on every frame) or more seconds")
        if not (self.classify_interval >= 0 and math.isfinite(self.classify_interval)):
            raise _refuse("classify_interval", self.classify_interval, "must be 0 (every frame) or more seconds")
        if self.min_face_px < 0:
            raise _refuse("min_face_px", self.min_face_px, "must be 0 (the whole frame only) or a width in pixels")
        if not (self.tile_interval >= 0 and math.isfinite(self.tile_interval)):
            raise _refuse("tile_interval", self.tile_interval, "must be 0 (every full detection) or more seconds")
        if self.threads < 0:
            raise _refuse("threads", self.threads, "must be 0 (one per core) or more")

    def _check_gateway(self) -> None:
        """The gateway's limits, TLS and health."""
        if self.max_pixels <= 0:
            raise _refuse("max_pixels", self.max_pixels, "must be positive")
        for name in ("max_pixels_in_flight", "max_pixels_in_flight_per_client"):
            if getattr(self, name) < self.max_pixels:
                raise _refuse(name, getattr(self, name), f"must be at least max_pixels ({self.max_pixels})")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise _refuse("tls_key" if self.tls_cert else "tls_cert", "", "give both tls_cert and tls_key, or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise _refuse("tls_client_ca", self.tls_client_ca, "client certificates need TLS: give tls_cert, tls_key")
        for name in ("max_request_bytes", "max_streams", "max_streams_per_client", "rate_burst", "gateway_workers"):
            if getattr(self, name) < 1:
                raise _refuse(name, getattr(self, name), "must be at least 1")
        if self.rate_limit < 0:
            raise _refuse("rate_limit", self.rate_limit, "must be 0 (no limit) or more")
        for name in ("pipeline_stall_s", "liveness_timeout_s"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise _refuse(name, getattr(self, name), "must be positive")
        if self.health_interval <= 0:
            raise _refuse("health_interval", self.health_interval, "must be positive")

    def _check_storage_and_topics(self) -> None:
        """Retention, statistics limits, replay window, logs and Kafka topics."""
        for name in (
            "retention_minutes_days",
            "retention_hourly_days",
            "retention_daily_days",
            "retention_timelines_days",
        ):
            if getattr(self, name) < 0:
                raise _refuse(name, getattr(self, name), "must be 0 (keep forever) or a number of days")
        for name in ("stats_max_rows", "stats_max_page_size"):
            if getattr(self, name) < 1:
                raise _refuse(name, getattr(self, name), "must be at least 1")
        if self.replay_window_s <= 0:
            raise _refuse("replay_window_s", self.replay_window_s, "must be positive (seconds)")
        if self.log_level and self.log_level.upper() not in LOG_LEVELS:
            raise _refuse("log_level", self.log_level, f"choose one of {', '.join(LOG_LEVELS)} (or leave it unset)")
        if self.log_format not in LOG_FORMATS:
            raise _refuse("log_format", self.log_format, f"choose one of {', '.join(LOG_FORMATS)}")
        for name in (
            "frames_retention_ms",
            "observations_retention_ms",
            "dead_letter_retention_ms",
            "kafka_partitions",
            "kafka_replication",
        ):
            if getattr(self, name) < 1:
                raise _refuse(name, getattr(self, name), "must be at least 1")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """``EMOLENS_<FIELD>`` variables, then non-None ``overrides`` on top."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"EMOLENS_{f.name.upper()}")
            if raw is None:
                continue
            kind: Callable[[str], Any] = type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise ConfigError(
                    f"EMOLENS_{f.name.upper()}={raw!r} is not a valid {type(f.default).__name__}"
                ) from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @staticmethod
    def env_names() -> list[str]:
        return [f"EMOLENS_{f.name.upper()}" for f in fields(Settings)]


# The times a frame may carry (docs/reliability.md, "A bad timestamp"): a camera whose clock
# reset reads 1970 or year 1, a typo reads 9999; neither is a time anything was seen. A day
# ahead leaves room for clock skew and time zones given wrong, not for a clock that is years off.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME_AHEAD = timedelta(days=1)


def check_time(t: datetime, what: str = "time", now: datetime | None = None) -> datetime:
    """``t`` (naive is UTC) when it lies from 2000-01-01 to a day after ``now`` (default: the
    wall clock), else ``InputError``: the rule every edge applies to a frame's time.

    >>> check_time(datetime(2026, 3, 1), now=datetime(2026, 3, 1, tzinfo=UTC)).year
    2026
    >>> check_time(datetime(1, 1, 1), "captured_at")
    Traceback (most recent call last):
    ...
    emolens.errors.InputError: captured_at 0001-01-01T00:00:00+00:00 is before 2000-01-01
    """
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    if t < EARLIEST_TIME:
        raise InputError(f"{what} {t.isoformat()} is before {EARLIEST_TIME:%Y-%m-%d}")
    latest = (now or datetime.now(UTC)) + MAX_TIME_AHEAD
    if t > latest:
        raise InputError(f"{what} {t.isoformat()} is more than {MAX_TIME_AHEAD.days} day ahead of the clock")
    return t


def parse_time(flag: str, text: str, tz: tzinfo = UTC) -> datetime:
    """A time given on the command line (``--start``, ``--since``, ``--until``): an ISO date or
    time, in ``tz`` unless it names its own zone. Returned aware, in UTC; anything else is a
    ``ConfigError`` naming the flag.

    >>> parse_time("--since", "2026-03-01T08:00+01:00").isoformat()
    '2026-03-01T07:00:00+00:00'
    >>> parse_time("--since", "March")
    Traceback (most recent call last):
    ...
    emolens.errors.ConfigError: --since 'March' is not an ISO date or time such as 2026-03-01 or 2026-03-01T08:00
    """
    try:
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{flag} {text!r} is not an ISO date or time such as 2026-03-01 or 2026-03-01T08:00") from exc
    return (t if t.tzinfo else t.replace(tzinfo=tz)).astimezone(UTC)


def parse_start(text: str | None) -> datetime | None:
    """``--start``: an ISO time (without a zone it is UTC) that :func:`check_time` accepts."""
    if not text:
        return None
    start = parse_time("--start", text)
    try:
        return check_time(start, "--start")
    except InputError as exc:  # the operator's to fix, in the one line every ConfigError gets
        raise ConfigError(str(exc)) from exc
