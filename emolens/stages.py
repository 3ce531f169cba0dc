"""The three stages of the flow, each a small loop over the bus. Services run one stage per
process; the embedded shape (``emolens run``) runs all three in one process on the memory bus.

ingest    : source frames -> sample -> JPEG -> ``emolens.frames`` (key = camera id)
detector  : frames -> Analyzer (one tracker per camera) -> ``emolens.observations``
aggregator: observations -> one SQL transaction per batch -> live counters -> commit offsets
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, Bus
from emolens.errors import InputError
from emolens.inference import Classifier
from emolens.live import LiveState
from emolens.media import is_live, iter_source
from emolens.observations import FrameObservations
from emolens.pipeline import Analyzer
from emolens.settings import Settings
from emolens.store import Camera, Store
from emolens.v1 import frames_pb2, observations_pb2
from emolens.vision.detect import FaceDetector
from emolens.wire import from_timestamp, observations_from_pb, observations_to_pb, to_timestamp

log = logging.getLogger(__name__)

JPEG_QUALITY = 90


MAX_FRAME_BYTES = 900_000  # under Kafka's default 1 MB message limit, with room for the envelope
POSITION_BITS = 40  # frame_seq = source id << 40 | position in the source


def default_seq_start() -> int:
    """Microseconds since the epoch: where a live source (no replayable position) numbers from."""
    return int(time.time() * 1_000_000)


def source_id(source: str) -> int:
    """A 23-bit id of a recorded source that is the same on every replay: its name, size and
    first 64 KiB (a copy of the recording elsewhere is the same source; a different
    recording of the same camera is not). Folders are identified by their path."""
    h = hashlib.blake2b(digest_size=4)
    path = Path(source)
    h.update(path.name.encode())
    if path.is_file():
        h.update(str(path.stat().st_size).encode())
        with path.open("rb") as f:
            h.update(f.read(65536))
    elif path.is_dir():
        h.update(str(path.resolve()).encode())
    else:  # a recording served over HTTP: its URL
        h.update(source.encode())
    return int.from_bytes(h.digest(), "big") >> 9


def frame_seq(source: str, position: int) -> int:
    """The identity of a recorded frame: (source, position), never the wall clock, so that a
    restarted or repeated ingest of one recording sends the same frame_seq and the store
    counts each frame once."""
    if not 0 <= position < 1 << POSITION_BITS:
        raise InputError(f"{source}: frame position {position} out of range")
    return source_id(source) << POSITION_BITS | position


def encode_frame(image: np.ndarray, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """JPEG of ``image`` within ``max_bytes``: lower quality first, then halve the size."""
    quality = JPEG_QUALITY
    while True:
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise InputError(f"frame of {image.shape[1]}x{image.shape[0]} could not be JPEG-encoded")
        if jpeg.size <= max_bytes:
            return jpeg.tobytes()
        if quality > 60:
            quality -= 15
        else:
            image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
            quality = JPEG_QUALITY


class Ingest:
    """Publishes a source's sampled frames. Recorded sources (files, folders) number frames by
    (source, position), live ones by the wall clock; ``seq_start`` overrides both."""

    def __init__(self, bus: Bus, camera: Camera, settings: Settings, seq_start: int | None = None) -> None:
        self.bus, self.camera, self.settings = bus, camera, settings
        self.seq_start = seq_start
        self.reconnects = 0

    def _on_reconnect(self, attempt: int, reason: str) -> None:
        self.reconnects += 1
        log.warning("event=source_reconnect camera=%s attempt=%d reason=%r", self.camera.camera_id, attempt, reason)

    def run(self, source: str, start: datetime | None = None, stop: threading.Event | None = None) -> int:
        """Publish every sampled frame of ``source`` until it ends (a live source only ends
        when ``stop`` is set: drops are reconnected); returns how many. Files get times
        ``start`` + offset; live sources get the wall clock."""
        live = is_live(source)
        start = (start or datetime.now(UTC)).astimezone(UTC)
        live_seq = default_seq_start() if self.seq_start is None else self.seq_start
        n = 0
        frames = iter_source(
            source, self.settings.fps, self.settings.max_pixels, stop=stop, on_reconnect=self._on_reconnect
        )
        for frame in frames:
            if self.seq_start is not None:
                seq = self.seq_start + frame.index
            else:
                seq = live_seq + frame.index if live else frame_seq(source, frame.index)
            stamp = datetime.now(UTC) if live else start + timedelta(seconds=frame.timestamp)
            msg = frames_pb2.Frame(
                camera_id=self.camera.camera_id,
                frame_seq=seq,
                captured_at=to_timestamp(stamp),
                jpeg=encode_frame(frame.image),
                width=frame.image.shape[1],
                height=frame.image.shape[0],
                zone=self.camera.zone,
                site=self.camera.site,
            )
            self.bus.publish(FRAMES_TOPIC, self.camera.camera_id, msg.SerializeToString())
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
