"""The partner gRPC API (protos/emolens/v1/analytics.proto), with gRPC health checking and,
on request, server reflection.

    emolens gateway --host 0.0.0.0 --port 50051 --tls-cert gw.crt --tls-key gw.key \\
        --tokens-file tokens.yaml --db postgresql+psycopg://... --live redis://...

Every call passes two interceptors: ``access.AccessInterceptor`` admits it (bearer token, rate
limit, stream slot) and ``grpc_errors.ErrorInterceptor`` turns what the servicer raises (typed
``emolens.errors``) into status codes, so no method authenticates or maps errors itself. The
servicer checks each camera, site and zone a call names against the caller's scope.

What :func:`build_server` refuses to start (docs/api.md, "Serving rules"):

- plaintext on an address other than loopback, unless ``insecure`` says a proxy or mesh in
  front encrypts;
- no tokens file on an address other than loopback: authentication is off only on loopback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection as grpc_reflection

from emolens import logs
from emolens.analytics import DEFAULT_PAGE_SIZE, By, Every, query_stats
from emolens.bus import make_bus
from emolens.errors import ConfigError, DeadlineExceeded, InputError, NotFound, QueryTooLarge, Unavailable
from emolens.inference import Classifier, make_classifier
from emolens.live import LiveState
from emolens.media import decode_image, header_size
from emolens.metrics import serve_metrics
from emolens.observations import check_id, shown
from emolens.pipeline import Analyzer
from emolens.results import EMOTIONS
from emolens.services.access import Access, AccessInterceptor, Scope, is_loopback
from emolens.services.grpc_errors import ErrorInterceptor
from emolens.services.loop import LIVENESS, READINESS, Health, ops_host
from emolens.services.pipeline_health import PipelineStatus, PipelineWatch
from emolens.settings import Settings
from emolens.store import Camera, Store
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens.vision.detect import Detection, FaceDetector, make_detector
from emolens.wire import bucket_to_pb, face_to_pb, from_timestamp, stats_row_to_pb, to_timestamp

log = logging.getLogger(__name__)
SERVICE_NAME = "emolens.v1.Analytics"
# WatchLive polls the live state: one camera 5 times a second; without a camera it also looks
# for cameras that appeared (or entered the caller's scope) every few seconds.
WATCH_PERIOD_S = 0.2
WATCH_CAMERAS_PERIOD_S = 2.0
_GRANULARITY: dict[int, Every] = {
    analytics_pb2.GRANULARITY_MINUTE: "minute",
    analytics_pb2.GRANULARITY_HOUR: "hour",
    analytics_pb2.GRANULARITY_DAY: "day",
}
_GROUPING: dict[int, By] = {
    analytics_pb2.GROUPING_CAMERA: "camera",
    analytics_pb2.GROUPING_ZONE: "zone",
    analytics_pb2.GROUPING_SITE: "site",
}


# The gateway reads the live state with this timeout (a frozen Redis must not hold a call),
# and after a failed read leaves it out of QueryStats for LIVE_RETRY_AFTER_S.
LIVE_TIMEOUT_S = 0.5
LIVE_RETRY_AFTER_S = 5.0


def _enum_names(enum: Any) -> str:
    return ", ".join(f"{name} ({number})" for name, number in enum.items() if number)


class _LockedDetector:
    """The TFLite interpreter is not thread-safe: one detection at a time."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner, self.name, self._lock = inner, inner.name, threading.Lock()

    def detect(self, image: np.ndarray) -> list[Detection]:
        with self._lock:
            return self.inner.detect(image)


class AnalyticsService(analytics_pb2_grpc.AnalyticsServicer):
    """The four methods. ``access`` (default: from ``settings``) says who calls and what they
    may see; the interceptor built from the same object has admitted every call already."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        live: LiveState | None,
        classifier: Classifier | None = None,
        access: Access | None = None,
    ):
        self.settings = settings
        self.store = store
        self.live = live
        self._live_down_until = 0.0  # time.monotonic() before which QueryStats does not ask it
        self.access = access or Access.from_settings(settings)
        self.classifier = classifier or make_classifier(settings.inference, threads=settings.threads)
        self.detector = _LockedDetector(
            make_detector(settings.detector, settings.min_detection_score, settings.threads, settings.min_face_px)
        )

    def _analyzer(self, track: bool) -> Analyzer:
        return Analyzer(self.settings, classifier=self.classifier, detector=self.detector, track=track)

    def _pixels(self, data: bytes) -> int:
        """The pixels ``data`` declares in its header, the part of the pixel budget its decoding
        holds; 0 for bytes that :func:`decode_image` refuses before decoding anyway (no size in
        the header, or more than max_pixels)."""
        size = header_size(data)
        pixels = size[0] * size[1] if size else 0
        return pixels if pixels <= self.settings.max_pixels else 0

    def AnalyzeImage(self, request, context):
        client = self.access.client(context)
        with self.access.limits.pixels(client.name, self._pixels(request.image)):
            image = decode_image(request.image, self.settings.max_pixels, untrusted=True)
            faces = self._analyzer(track=False).analyze(image)
            del image
        return analytics_pb2.AnalyzeImageResponse(faces=[face_to_pb(f) for f in faces])

    def AnalyzeStream(self, request_iterator, context):
        client = self.access.client(context)
        analyzer = self._analyzer(track=True)
        for frame in request_iterator:
            with self.access.limits.pixels(client.name, self._pixels(frame.image)):
                image = decode_image(frame.image, self.settings.max_pixels, f"frame {frame.frame_seq}", untrusted=True)
                faces = analyzer.analyze(image)
                del image
            yield analytics_pb2.StreamResult(frame_seq=frame.frame_seq, faces=[face_to_pb(f) for f in faces])

    def _cameras(self, live_optional: bool = False) -> dict[str, Camera]:
        """Every camera the store or the live state knows (the store's zone and site win).
        ``live_optional``: a live state that is down or slow (the gateway reads it with a
        short timeout) leaves out the cameras only it knows instead of failing the call, and
        is not asked again for LIVE_RETRY_AFTER_S: history does not wait for Redis."""
        known = {c.camera_id: c for c in self.store.cameras()}
        if self.live is None or (live_optional and time.monotonic() < self._live_down_until):
            return known
        try:
            live_cameras = self.live.cameras()
        except (Unavailable, DeadlineExceeded) as exc:
            if not live_optional:
                raise
            self._live_down_until = time.monotonic() + LIVE_RETRY_AFTER_S
            logs.event(log.warning, "live_degraded", method="QueryStats", reason=str(exc))
            return known
        for camera_id in live_cameras:
            known.setdefault(camera_id, Camera(camera_id))
        return known

    @staticmethod
    def _check_camera(scope: Scope, camera_id: str, known: dict[str, Camera]) -> None:
        """PermissionDenied outside the caller's scope (known or not), else NotFound if unknown."""
        scope.check_camera(camera_id, known)
        if camera_id not in known:
            raise NotFound(f"unknown camera {shown(camera_id)!r}")

    def QueryStats(self, request, context):
        scope = self.access.client(context).scope
        for what in ("camera_id", "site", "zone"):
            check_id(getattr(request, what), what)
        if request.granularity not in _GRANULARITY and request.granularity != analytics_pb2.GRANULARITY_UNSPECIFIED:
            raise InputError(f"granularity {request.granularity} is none of {_enum_names(analytics_pb2.Granularity)}")
        if request.group_by not in _GROUPING and request.group_by != analytics_pb2.GROUPING_UNSPECIFIED:
            raise InputError(f"group_by {request.group_by} is none of {_enum_names(analytics_pb2.Grouping)}")
        known = self._cameras(live_optional=True)  # history answers without the live state
        if request.camera_id:
            self._check_camera(scope, request.camera_id, known)
        scope.check_filters(known, site=request.site, zone=request.zone)
        since = from_timestamp(request.since).replace(tzinfo=None) if request.HasField("since") else None
        until = from_timestamp(request.until).replace(tzinfo=None) if request.HasField("until") else None
        if since and until and since >= until:
            raise InputError("since must be before until")
        k = self.settings.k_anonymity
        if request.granularity != analytics_pb2.GRANULARITY_UNSPECIFIED:
            return self._aggregated(request, since, until, scope.visible(known))
        buckets = self.store.buckets(
            camera_id=request.camera_id or None,
            zone=request.zone or None,
            site=request.site or None,
            since=since,
            until=until,
            camera_ids=scope.visible(known),
        )
        if len(buckets) > self.settings.stats_max_rows:
            raise QueryTooLarge(
                f"{len(buckets):,} minute buckets match, more than {self.settings.stats_max_rows:,}: narrow the "
                "time range, or set granularity for hourly or daily rows"
            )
        return analytics_pb2.QueryStatsResponse(buckets=[bucket_to_pb(b, k) for b in buckets], k_anonymity=k)

    def _aggregated(
        self, request: analytics_pb2.QueryStatsRequest, since: datetime | None, until: datetime | None, visible: Any
    ) -> analytics_pb2.QueryStatsResponse:
        """QueryStats with granularity: server-side aggregation, pagination and limits."""
        if since is None or until is None:
            raise InputError("since and until are required with granularity")
        settings = self.settings
        page = query_stats(
            self.store,
            since,
            until,
            by=_GROUPING.get(request.group_by, "camera"),
            every=_GRANULARITY[request.granularity],
            k=settings.k_anonymity,
            page_size=request.page_size or min(DEFAULT_PAGE_SIZE, settings.stats_max_page_size),
            page_token=request.page_token,
            camera_id=request.camera_id or None,
            zone=request.zone or None,
            site=request.site or None,
            camera_ids=visible,
            max_rows=settings.stats_max_rows,
            max_page_size=settings.stats_max_page_size,
        )
        response = analytics_pb2.QueryStatsResponse(
            rows=[stats_row_to_pb(r) for r in page.rows],
            k_anonymity=page.k,
            next_page_token=page.next_page_token,
        )
        if page.suppressed is not None:
            response.suppressed = page.suppressed
        return response

    def WatchLive(self, request, context) -> Iterator[analytics_pb2.LiveCounters]:
        """One camera's counters, or (no ``camera_id``) those of every camera the caller may
        see, each pushed when it changes."""
        live = self.live
        if live is None:
            message = "this gateway has no live state (start it with --live)"
            raise Unavailable(message, public=message)
        scope = self.access.client(context).scope
        check_id(request.camera_id, "camera_id")
        watched: list[str] = []
        if request.camera_id:
            self._check_camera(scope, request.camera_id, self._cameras())
            watched = [request.camera_id]
        last: dict[str, tuple[int, int, int]] = {}
        looked = -WATCH_CAMERAS_PERIOD_S
        while context.is_active():
            if not request.camera_id and time.monotonic() - looked >= WATCH_CAMERAS_PERIOD_S:
                looked = time.monotonic()
                visible = scope.visible(self._cameras())
                watched = [c for c in live.cameras() if visible is None or c in visible]
            for camera_id in watched:
                c = live.get(camera_id)
                state = (c.frames, c.faces, c.smiles)
                if state == last.get(camera_id):
                    continue
                last[camera_id] = state
                msg = analytics_pb2.LiveCounters(
                    camera_id=c.camera_id,
                    frames=c.frames,
                    faces=c.faces,
                    smiles=c.smiles,
                    emotion_counts=[c.emotions[e] for e in EMOTIONS],
                )
                if c.updated_at:
                    msg.updated_at.CopyFrom(to_timestamp(c.updated_at))
                yield msg
            time.sleep(WATCH_PERIOD_S)


class DependencyCheck:
    """Asks the store (and the live state, when the gateway has one) a cheap question every
    ``interval`` seconds on a thread of its own, and reports ``ok`` to ``report``: the health
    service says NOT_SERVING while either is unreachable, or slower to answer than ``interval``."""

    def __init__(self, service: AnalyticsService, interval: float, report: Callable[[bool], None]) -> None:
        self.service, self.interval, self.report = service, interval, report
        self.ok: bool | None = None
        self._stop = threading.Event()
        self._probe = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-health")
        self._pending: futures.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name="gateway-health-check", daemon=True)

    def _ask(self) -> None:
        self.service.store.cameras()
        if self.service.live is not None:
            self.service.live.cameras()

    def check(self) -> bool:
        """One check; a probe still hanging from the last one counts as a failure."""
        reason = ""
        if self._pending is None or self._pending.done():
            self._pending = self._probe.submit(self._ask)
        try:
            self._pending.result(timeout=self.interval)
        except futures.TimeoutError:
            reason = f"no answer within {self.interval:g}s"
        except Exception as exc:  # any failure means the gateway cannot answer from its data
            reason = f"{type(exc).__name__}: {exc}"
        ok = not reason
        if ok != self.ok:
            if ok:
                logs.event(log.info, "gateway_health", status="SERVING")
            else:
                logs.event(log.warning, "gateway_health", status="NOT_SERVING", reason=reason)
        self.ok = ok
        self.report(ok)
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def start(self) -> None:
        self.check()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._probe.shutdown(wait=False, cancel_futures=True)


class GatewayServer:
    """The API server, its health service (on the API port, and on ``health_port`` of its own
    when set, which Kubernetes probes in plaintext), Prometheus /metrics on ``metrics_port``
    when set, and the dependency check, run together."""

    def __init__(
        self, server: grpc.Server, servicer: health.HealthServicer, service: AnalyticsService, host: str = "0.0.0.0"
    ) -> None:
        self.server, self._servicer = server, servicer
        settings = service.settings
        self._metrics_port = settings.metrics_port
        # /metrics and the plaintext health port listen where the API does, unless told otherwise
        self._ops_host = ops_host(settings, host)
        self._metrics: WSGIServer | None = None
        self._health_port = (
            Health(settings.health_port, SERVICE_NAME, settings.liveness_timeout_s, self._ops_host)
            if settings.health_port
            else None
        )
        self.check = DependencyCheck(service, settings.health_interval, self._report)
        # Whether the pipeline moves, when there is one to watch: the bus services' stages on Kafka
        # (an embedded gateway's in-process bus carries nothing).
        self.pipeline: PipelineStatus | None = None
        if settings.bus.startswith("kafka://"):
            watch = PipelineWatch(lambda: make_bus(settings.bus, settings), settings.pipeline_stall_s)
            self.pipeline = PipelineStatus(watch, settings.health_interval, self._report_name)
        self._report(False)  # until the first check has passed
        self._report_name(LIVENESS, True)

    def _report(self, ok: bool) -> None:
        for name in ("", READINESS, SERVICE_NAME):
            self._report_name(name, ok)
        if self._health_port is not None:
            self._health_port.set(ok)  # also its liveness beat: the check thread turns

    def _report_name(self, name: str, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        self._servicer.set(name, status)
        if self._health_port is not None and name not in ("", READINESS, SERVICE_NAME):
            self._health_port.set_name(name, ok)

    def start(self) -> None:
        self._metrics = serve_metrics(self._metrics_port, self._ops_host)
        self.server.start()
        self.check.start()
        if self.pipeline is not None:
            self.pipeline.start()

    def stop(self, grace: float | None) -> threading.Event:
        self.check.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        self._report(False)
        if self._health_port is not None:
            self._health_port.close()
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
        return self.server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from exc
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{what} {path}: not a PEM file")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from ``tls_cert``/``tls_key`` (PEM files), requiring client certificates signed by
    ``tls_client_ca`` when it is given; None without a certificate."""
    if not settings.tls_cert:
        return None
    chain = _read(settings.tls_cert, "TLS certificate (EMOLENS_TLS_CERT)")
    key = _read(settings.tls_key, "TLS key (EMOLENS_TLS_KEY)")
    ca = _read(settings.tls_client_ca, "client CA (EMOLENS_TLS_CLIENT_CA)") if settings.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)


def check_address(address: str, *, tls: bool, auth: bool, insecure: bool) -> None:
    """The serving rules: off loopback, plaintext needs ``insecure`` and no authentication is
    refused; a ConfigError says what to give instead.

    >>> check_address("127.0.0.1:50051", tls=False, auth=False, insecure=False)  # a laptop: fine
    >>> check_address("0.0.0.0:50051", tls=True, auth=False, insecure=False)
    Traceback (most recent call last):
    ...
    emolens.errors.ConfigError: refusing to serve without authentication on 0.0.0.0:50051: give --tokens-file ...
    """
    if is_loopback(address.rpartition(":")[0]):
        return
    if not tls and not insecure:
        raise ConfigError(
            f"refusing to serve plaintext on {address}: give --tls-cert and --tls-key (EMOLENS_TLS_CERT, "
            "EMOLENS_TLS_KEY), listen on 127.0.0.1, or pass --insecure if a proxy or mesh in front encrypts"
        )
    if not auth:
        raise ConfigError(
            f"refusing to serve without authentication on {address}: give --tokens-file "
            "(EMOLENS_TOKENS_FILE); authentication is off only on loopback (127.0.0.1)"
        )


def build_server(
    service: AnalyticsService, address: str, *, insecure: bool = False, reflection: bool = False
) -> tuple[GatewayServer, int]:
    """A server ready to ``start()`` on ``address`` (``HOST:PORT``), TLS when the settings give
    a certificate; returns it and the bound port. Refuses (ConfigError) to serve plaintext off
    loopback without ``insecure``, or without tokens off loopback (module docstring).

    Streams hold a worker thread each for as long as they last, so the pool has one thread per
    stream slot (``max_streams``) plus ``gateway_workers`` that only unary calls and health
    can use; calls beyond what the pool can queue are refused (RESOURCE_EXHAUSTED)."""
    settings = service.settings
    credentials = server_credentials(settings)
    check_address(address, tls=credentials is not None, auth=service.access.tokens is not None, insecure=insecure)
    workers = settings.max_streams + settings.gateway_workers
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gateway"),
        interceptors=[ErrorInterceptor(), AccessInterceptor(service.access)],
        # so_reuseport off: a second gateway on a taken port must fail, not share it silently
        options=[("grpc.max_receive_message_length", settings.max_request_bytes), ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=workers + settings.gateway_workers,
    )
    analytics_pb2_grpc.add_AnalyticsServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection:
        names = (
            analytics_pb2.DESCRIPTOR.services_by_name["Analytics"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            grpc_reflection.SERVICE_NAME,
        )
        grpc_reflection.enable_server_reflection(names, server)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address} (in use, or not an address of this machine)") from exc
    auth = f"{len(service.access.tokens)} tokens" if service.access.tokens is not None else "off (loopback)"
    logs.event(
        log.info,
        "gateway_ready",
        address=address,
        port=port,
        tls=credentials is not None,
        client_certs=bool(settings.tls_client_ca),
        auth=auth,
        reflection=reflection,
    )
    return GatewayServer(server, health_servicer, service, address.rpartition(":")[0]), port
