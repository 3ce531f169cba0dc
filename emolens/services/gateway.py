"""The partner gRPC API (protos/emolens/v1/analytics.proto), with gRPC health checking and
server reflection.

    emolens gateway --port 50051 --db postgresql+psycopg://... --live redis://...
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import NoReturn

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from emolens.errors import EmolensError
from emolens.inference import Classifier, make_classifier
from emolens.live import LiveState
from emolens.pipeline import Analyzer
from emolens.results import EMOTIONS
from emolens.settings import Settings
from emolens.store import Store
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens.vision.detect import Detection, FaceDetector, make_detector
from emolens.wire import bucket_to_pb, face_to_pb, from_timestamp, to_timestamp

log = logging.getLogger(__name__)
SERVICE_NAME = "emolens.v1.Analytics"


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


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

    def _decode(self, data: bytes, context: grpc.ServicerContext) -> np.ndarray:
        if not data:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "empty image")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None or image.size == 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "image bytes are not a decodable image")
        if image.shape[0] * image.shape[1] > self.settings.max_pixels:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{image.shape[1]}x{image.shape[0]} image exceeds {self.settings.max_pixels} pixels",
            )
        return image

    def AnalyzeImage(self, request, context):
        image = self._decode(request.image, context)
        try:
            faces = self._analyzer(track=False).analyze(image)
        except EmolensError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return analytics_pb2.AnalyzeImageResponse(faces=[face_to_pb(f) for f in faces])

    def AnalyzeStream(self, request_iterator, context):
        analyzer = self._analyzer(track=True)
        for frame in request_iterator:
            image = self._decode(frame.image, context)
            faces = analyzer.analyze(image)
            yield analytics_pb2.StreamResult(frame_seq=frame.frame_seq, faces=[face_to_pb(f) for f in faces])

    def _known(self, camera_id: str) -> bool:
        known = {c.camera_id for c in self.store.cameras()}
        if self.live is not None:
            known |= set(self.live.cameras())
        return camera_id in known

    def QueryStats(self, request, context):
        if request.camera_id and not self._known(request.camera_id):
            _abort(context, grpc.StatusCode.NOT_FOUND, f"unknown camera {request.camera_id!r}")
        since = from_timestamp(request.since).replace(tzinfo=None) if request.HasField("since") else None
        until = from_timestamp(request.until).replace(tzinfo=None) if request.HasField("until") else None
        if since and until and since >= until:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "since must be before until")
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
            _abort(context, grpc.StatusCode.UNAVAILABLE, "this gateway has no live state (start it with --live)")
        if not request.camera_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "camera_id is required")
        if not self._known(request.camera_id):
            _abort(context, grpc.StatusCode.NOT_FOUND, f"unknown camera {request.camera_id!r}")
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
    """A started-ready server (call ``start()``) with health and reflection; returns the bound port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
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
