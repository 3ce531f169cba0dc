"""The three stages of the flow, each a small loop over the bus. Services run one stage per
process; the embedded shape (``emolens run``) runs all three in one process on the memory bus.

ingest    : source frames -> sample -> JPEG -> ``emolens.frames`` (key = camera id)
detector  : frames -> Analyzer (one tracker per camera) -> ``emolens.observations``
aggregator: observations -> one SQL transaction per batch -> live counters -> commit offsets
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, Bus
from emolens.inference import Classifier
from emolens.live import LiveState
from emolens.media import is_stream, iter_source, source_kind
from emolens.observations import FrameObservations
from emolens.pipeline import Analyzer
from emolens.settings import Settings
from emolens.store import Camera, Store
from emolens.v1 import frames_pb2, observations_pb2
from emolens.vision.detect import FaceDetector
from emolens.wire import from_timestamp, observations_from_pb, observations_to_pb, to_timestamp

log = logging.getLogger(__name__)

JPEG_QUALITY = 90


def default_seq_start() -> int:
    """Microseconds since the epoch: a restarted ingest keeps numbering above its last run."""
    return int(time.time() * 1_000_000)


class Ingest:
    def __init__(self, bus: Bus, camera: Camera, settings: Settings, seq_start: int | None = None) -> None:
        self.bus, self.camera, self.settings = bus, camera, settings
        self.seq = default_seq_start() if seq_start is None else seq_start

    def run(self, source: str, start: datetime | None = None) -> int:
        """Publish every sampled frame of ``source``; returns how many. Files get times
        ``start`` + offset; live sources get the wall clock."""
        live = is_stream(source) or source_kind(source) == "webcam"
        start = (start or datetime.now(UTC)).astimezone(UTC)
        n = 0
        for frame in iter_source(source, self.settings.fps, self.settings.max_pixels):
            ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                log.warning("event=jpeg_failed camera=%s index=%d", self.camera.camera_id, frame.index)
                continue
            stamp = datetime.now(UTC) if live else start + timedelta(seconds=frame.timestamp)
            msg = frames_pb2.Frame(
                camera_id=self.camera.camera_id,
                frame_seq=self.seq,
                captured_at=to_timestamp(stamp),
                jpeg=jpeg.tobytes(),
                width=frame.image.shape[1],
                height=frame.image.shape[0],
                zone=self.camera.zone,
                site=self.camera.site,
            )
            self.bus.publish(FRAMES_TOPIC, self.camera.camera_id, msg.SerializeToString())
            self.seq += 1
            n += 1
        self.bus.flush()
        return n


class Detector:
    GROUP = "emolens-detector"

    def __init__(self, bus: Bus, settings: Settings, classifier: Classifier, detector: FaceDetector | None = None):
        self.bus, self.settings, self.classifier, self.detector = bus, settings, classifier, detector
        self.consumer = bus.consumer([FRAMES_TOPIC], self.GROUP)
        self._analyzers: dict[str, Analyzer] = {}

    def _analyzer(self, camera_id: str) -> Analyzer:
        a = self._analyzers.get(camera_id)
        if a is None:
            # Track ids unique across restarts and rebalances: distinct visitors rest on them.
            a = Analyzer(
                self.settings, classifier=self.classifier, detector=self.detector, track=True, unique_track_ids=True
            )
            self.detector = a.detector  # share one detector across cameras
            self._analyzers[camera_id] = a
        return a

    def step(self, timeout_s: float = 0.5, max_frames: int = 32) -> int:
        """Analyze one batch of frames; returns how many frames were handled."""
        messages = self.consumer.poll(timeout_s, max_frames)
        if not messages:
            return 0
        by_camera: dict[str, list[frames_pb2.Frame]] = defaultdict(list)
        for m in messages:
            frame = frames_pb2.Frame()
            frame.ParseFromString(m.value)
            by_camera[frame.camera_id].append(frame)
        for camera_id, frames in by_camera.items():
            images, kept = [], []
            for f in frames:
                image = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    log.warning("event=bad_frame camera=%s seq=%d", camera_id, f.frame_seq)
                    continue
                images.append(image)
                kept.append(f)
            results = self._analyzer(camera_id).analyze_batch(images) if images else []
            for f, faces in zip(kept, results, strict=True):
                obs = FrameObservations(camera_id, f.frame_seq, from_timestamp(f.captured_at), faces)
                payload = observations_to_pb(obs, f.zone, f.site).SerializeToString()
                self.bus.publish(OBSERVATIONS_TOPIC, camera_id, payload)
        self.bus.flush()
        self.consumer.commit()  # only after the observations are stored by the bus
        return len(messages)


class Aggregator:
    GROUP = "emolens-aggregator"

    def __init__(self, bus: Bus, store: Store, live: LiveState | None) -> None:
        self.bus, self.store, self.live = bus, store, live
        self.consumer = bus.consumer([OBSERVATIONS_TOPIC], self.GROUP)
        self._cameras: set[str] = set()

    def step(self, timeout_s: float = 0.5, max_records: int = 512) -> int:
        messages = self.consumer.poll(timeout_s, max_records)
        if not messages:
            return 0
        frames = []
        for m in messages:
            msg = observations_pb2.FrameObservations()
            msg.ParseFromString(m.value)
            if msg.camera_id not in self._cameras:
                self.store.ensure_camera(Camera(msg.camera_id, msg.zone, msg.site))
                self._cameras.add(msg.camera_id)
            frames.append(observations_from_pb(msg))
        new_frames = self.store.apply(frames)  # one transaction; redelivered frames are skipped inside
        if self.live is not None and new_frames:
            self.live.add(new_frames)
        self.consumer.commit()  # only after the database commit
        return len(messages)


def drain(stage: Detector | Aggregator, idle_s: float = 1.0, timeout_s: float = 0.2) -> int:
    """Step until nothing arrives for ``idle_s``; returns how many messages were handled."""
    total, idle_since = 0, time.monotonic()
    while time.monotonic() - idle_since < idle_s:
        n = stage.step(timeout_s)
        if n:
            total += n
            idle_since = time.monotonic()
    return total
