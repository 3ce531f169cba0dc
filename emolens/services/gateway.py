"""The partner gRPC API (protos/emolens/v1/analytics.proto), with gRPC health checking and
server reflection.

    emolens gateway --port 50051 --db postgresql+psycopg://... --live redis://...

The servicer raises typed errors (``emolens.errors``); ``grpc_errors.ErrorInterceptor`` turns
them into status codes for every method, so no method maps errors itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from emolens.errors import InputError, NotFound, Unavailable
from emolens.inference import Classifier, make_classifier
from emolens.live import LiveState
from emolens.media import decode_image
from emolens.pipeline import Analyzer
from emolens.results import EMOTIONS
from emolens.services.grpc_errors import ErrorInterceptor
from emolens.settings import Settings
from emolens.store import Store
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens.vision.detect import Detection, FaceDetector, make_detector
from emolens.wire import bucket_to_pb, face_to_pb, from_timestamp, to_timestamp

log = logging.getLogger(__name__)
SERVICE_NAME = "emolens.v1.Analytics"


def max_request_bytes(max_pixels: int) -> int:
    """The largest request the gateway reads. An encoded image needs at most about 4 bytes per
    pixel (raw BGRA), so every image within ``max_pixels`` fits and reaches the pixel check
    (INVALID_ARGUMENT); a request larger than this is refused by gRPC as RESOURCE_EXHAUSTED.
    gRPC's own default, 4 MiB, would refuse a 40 MP photo's JPEG before it was looked at."""
    return 4 * max_pixels + (1 << 20)


class _LockedDetector:
    """The TFLite interpreter is not thread-safe: one detection at a time."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner, self.name, self._lock = inner, inner.name, threading.Lock()

    def detect(self, image: np.ndarray) -> list[Detection]:
        with self._lock:
            return self.inner.detect(image)


class AnalyticsService(analytics_pb2_grpc.AnalyticsServicer):
    def __init__(self, settings: Settings, store: Store, live: LiveState | None, classifier: Classifier | None = None):
        self.settings = settings
        self.store = store
        self.live = live
        self.classifier = classifier or make_classifier(settings.inference, threads=settings.threads)
        self.detector = _LockedDetector(make_detector(settings.detector, settings.min_detection_score))

    def _analyzer(self, track: bool) -> Analyzer:
        return Analyzer(self.settings, classifier=self.classifier, detector=self.detector, track=track)

    def AnalyzeImage(self, request, context):
        image = decode_image(request.image, self.settings.max_pixels)
        faces = self._analyzer(track=False).analyze(image)
        return analytics_pb2.AnalyzeImageResponse(faces=[face_to_pb(f) for f in faces])

    def AnalyzeStream(self, request_iterator, context):
        analyzer = self._analyzer(track=True)
        for frame in request_iterator:
            image = decode_image(frame.image, self.settings.max_pixels, f"frame {frame.frame_seq}")
            faces = analyzer.analyze(image)
            yield analytics_pb2.StreamResult(frame_seq=frame.frame_seq, faces=[face_to_pb(f) for f in faces])

    def _known(self, camera_id: str) -> bool:
        known = {c.camera_id for c in self.store.cameras()}
        if self.live is not None:
            known |= set(self.live.cameras())
        return camera_id in known

    def QueryStats(self, request, context):
        if request.camera_id and not self._known(request.camera_id):
            raise NotFound(f"unknown camera {request.camera_id!r}")
        since = from_timestamp(request.since).replace(tzinfo=None) if request.HasField("since") else None
        until = from_timestamp(request.until).replace(tzinfo=None) if request.HasField("until") else None
        if since and until and since >= until:
            raise InputError("since must be before until")
        buckets = self.store.buckets(
            camera_id=request.camera_id or None,
            zone=request.zone or None,
            site=request.site or None,
            since=since,
            until=until,
        )
        k = self.settings.k_anonymity
        return analytics_pb2.QueryStatsResponse(buckets=[bucket_to_pb(b, k) for b in buckets], k_anonymity=k)

    def WatchLive(self, request, context) -> Iterator[analytics_pb2.LiveCounters]:
        live = self.live
        if live is None:
            message = "this gateway has no live state (start it with --live)"
            raise Unavailable(message, public=message)
        if not request.camera_id:
            raise InputError("camera_id is required")
        if not self._known(request.camera_id):
            raise NotFound(f"unknown camera {request.camera_id!r}")
        last = None
        while context.is_active():
            c = live.get(request.camera_id)
            state = (c.frames, c.faces, c.smiles)
            if state != last:
                last = state
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
            time.sleep(0.2)


def build_server(service: AnalyticsService, address: str, workers: int = 8) -> tuple[grpc.Server, int]:
    """A started-ready server (call ``start()``) with health and reflection; returns the bound port.
    Every method's errors go through ``ErrorInterceptor``."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        interceptors=[ErrorInterceptor()],
        options=[("grpc.max_receive_message_length", max_request_bytes(service.settings.max_pixels))],
    )
    analytics_pb2_grpc.add_AnalyticsServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    names = (
        analytics_pb2.DESCRIPTOR.services_by_name["Analytics"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(address)
    return server, port
