"""The three stages of the flow, each a small loop over the bus. Services run one stage per
process; the embedded shape (``emolens run``) runs all three in one process on the memory bus.

ingest    : source frames -> sample -> JPEG -> ``emolens.frames`` (key = camera id)
detector  : frames -> Analyzer (one tracker per camera) -> ``emolens.observations``
aggregator: observations -> one SQL transaction per batch -> live counters -> commit offsets
"""

# Long module: the three stages share BusStage (the loop, retries, dead letters, offset commits)
# and the limits above it; tests patch those limits in this one namespace (test_bus_stages,
# test_stage_faults). Each stage is one class of 130-180 lines with its own named steps.
from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from google.protobuf.message import DecodeError

from emolens import failpoints, logs, metrics
from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, Bus, Message, dead_letter_topic
from emolens.errors import DeadlineExceeded, EmolensError, InputError, Unavailable
from emolens.inference import Classifier
from emolens.live import LiveState
from emolens.media import DROP_RATE, DROP_UNREADABLE, decode_image, is_live, iter_source
from emolens.observations import MAX_ID_LENGTH, FrameObservations, check_id
from emolens.pipeline import Analyzer, analyze_together, to_bgr
from emolens.retry import Backoff
from emolens.settings import Settings, check_time
from emolens.store import Camera, Store
from emolens.store.seen import POSITION_BITS  # frame_seq = source id << 40 | position in the source
from emolens.v1 import frames_pb2, observations_pb2
from emolens.vision.detect import FaceDetector
from emolens.wire import from_timestamp, observations_from_pb, observations_to_pb, to_timestamp

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
T = TypeVar("T")
R = TypeVar("R")
# Dead letters carry why, from which stage and from where, in headers beside the message as it came
DLQ_REASON, DLQ_STAGE, DLQ_ORIGIN = "emolens-dlq-reason", "emolens-dlq-stage", "emolens-dlq-origin"
DLQ_PIXELS = "emolens-dlq-pixels"  # a dead-lettered frame lost its pixels: the size the message had
MAX_REASON = 300


MAX_FRAME_BYTES = 900_000  # under Kafka's default 1 MB message limit, with room for the envelope
FLUSH_EVERY = 32  # ingest waits for the bus to store its frames every this many frames
MAX_BACKLOG = 256  # frames the detectors may be behind before ingest waits (recordings) or sheds (live)
MAX_KEEP_EVERY = 64  # a live source sheds at most 63 frames in 64
BACKLOG_CHECK_S = 0.5
PROGRESS_EVERY_S = 60.0  # a live ingest logs what it read, published and dropped this often
DROP_BACKLOG = "backlog"  # shed by a live ingest while the detectors are behind
UNDECLARED = Camera("")  # what the registry holds for a camera nobody declared
REGISTRY_REFRESH_S = 5.0  # the aggregator reads a camera's registration again before refusing a message
PRUNE_EVERY_S = 600.0  # the aggregator forgets frames older than the replay window this often
DETECTOR_GROUP = "emolens-detector"
# A detector answers a frame it has analysed (a recording ingested again, a batch redelivered) with
# the observations it gave, from the last REPLAY_FRAMES of each camera (3.4 min at 5 fps, some
# 0.5 MB), instead of running the camera's tracker backwards. A camera new to the process reads
# back WARM_MESSAGES of its observations partition: its previous detector's answers, and the
# last WARM_S seconds of them replayed into the tracker (docs/reliability.md, "Restarts").
REPLAY_FRAMES = 1024
WARM_MESSAGES = 2048
WARM_S = 10.0


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


def without_pixels(value: bytes) -> bytes:
    """A frames-topic message as its dead-letter topic keeps it: the Frame's metadata (camera,
    frame_seq, time, size, zone, site) without its JPEG, and nothing else (fields this version
    does not know, or bytes that are no Frame at all, may hold pixels too). The frames topic
    keeps a face image 10 minutes; a dead-letter topic keeps its messages for days.

    >>> frames_pb2.Frame.FromString(without_pixels(frames_pb2.Frame(frame_seq=7, jpeg=b"face").SerializeToString()))
    frame_seq: 7
    <BLANKLINE>
    >>> without_pixels(b"\\xff not a frame")
    b''
    """
    frame = frames_pb2.Frame()
    try:
        frame.ParseFromString(value)
    except DecodeError:
        return b""
    frame.DiscardUnknownFields()
    frame.ClearField("jpeg")
    return frame.SerializeToString()


class Stopping(Exception):
    """The process was asked to stop while it waited for a dependency."""


def refusal(exc: BaseException) -> str:
    """A one-line reason for a dead letter: the error's type and first line (a database
    error's driver message, without the SQL and parameters SQLAlchemy appends)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:MAX_REASON]


RETRYABLE = (Unavailable, DeadlineExceeded)


class BusStage:
    """What the detector and the aggregator share: retrying a dependency with backoff until it
    answers (never dropping the batch in hand), readiness that says so meanwhile, and a
    dead-letter topic for a message that can never be processed, so it blocks nothing."""

    name = "stage"

    def __init__(self, bus: Bus, stop: threading.Event | None = None) -> None:
        self.bus = bus
        self.stop = stop or threading.Event()
        self.on_ready: Callable[[bool], None] | None = None  # the health server's setter
        # the health server's liveness: called whenever the stage shows it is not hung, also
        # on every retry while it waits out a dependency (waiting is not hanging)
        self.on_beat: Callable[[], None] | None = None
        self.ready = True
        self.new_backoff: Callable[[], Backoff] = Backoff  # tests shorten the waits
        metrics.READY.labels(self.name).set(1)

    def _beat(self) -> None:
        if self.on_beat is not None:
            self.on_beat()

    def _set_ready(self, ok: bool) -> None:
        if ok != self.ready:
            self.ready = ok
            metrics.READY.labels(self.name).set(int(ok))
            logs.event(log.info, "ready", stage=self.name, ready=ok)
            if self.on_ready is not None:
                self.on_ready(ok)

    def retry(self, call: Callable[[], T], dependency: str) -> T:
        """``call()`` until it does not raise an outage; raises :class:`Stopping` on stop."""
        backoff = self.new_backoff()
        while True:
            self._beat()
            try:
                result = call()
            except RETRYABLE as exc:
                metrics.RETRIES.labels(self.name, dependency).inc()
                self._set_ready(False)
                logs.event(log.warning, "retry", stage=self.name, dependency=dependency, reason=str(exc))
                if not backoff.wait(self.stop):
                    raise Stopping from exc
                continue
            self._set_ready(True)
            return result

    def dead_letter(self, message: Message, reason: str) -> None:
        """Send ``message`` as it came to its topic's dead-letter topic, the reason (cut to
        MAX_REASON characters: it may quote the message) and where it came from in headers; a
        frame goes without its pixels (:func:`without_pixels`, their size in ``DLQ_PIXELS``)."""
        topic = dead_letter_topic(message.topic)
        reason = reason[:MAX_REASON]
        metrics.DEAD_LETTERS.labels(topic).inc()
        logs.event(log.error, "dead_letter", stage=self.name, topic=topic, offset=message.offset, reason=reason)
        headers = [
            (DLQ_REASON, reason.encode()),
            (DLQ_STAGE, self.name.encode()),
            (DLQ_ORIGIN, f"{message.topic}/{message.partition}/{message.offset}".encode()),
        ]
        value = message.value
        if message.topic == FRAMES_TOPIC:  # face pixels live no longer than the frames topic keeps them
            value = without_pixels(value)
            headers.append((DLQ_PIXELS, str(len(message.value)).encode()))
        self.retry(lambda: self.bus.publish(topic, message.key, value, headers), "bus")

    def isolating(
        self, items: Sequence[tuple[Message, T]], process: Callable[[list[T]], list[R]], dependency: str, what: str
    ) -> list[R]:
        """``process(items)`` as one call, retried through outages; when it raises anything
        else the items are split in halves and each half processed alone, down to the single
        message that raises, which goes to the dead-letter topic with the reason. So one bad
        message costs about 2 log2(n) extra calls and the rest of its batch is processed: no
        message stops a stage (docs/reliability.md). ``process`` must have no effect when it
        raises (one transaction, or nothing published)."""
        if not items:
            return []
        try:
            return self.retry(partial(process, [x for _, x in items]), dependency)
        except Stopping:
            raise
        except Exception as exc:
            if len(items) == 1:
                metrics.ERRORS.labels(self.name, "refused").inc()
                self.dead_letter(items[0][0], f"{what} ({refusal(exc)})")
                return []
            logs.event(
                log.warning, "batch_split", stage=self.name, messages=len(items), reason=refusal(exc)[:MAX_REASON]
            )
            half = len(items) // 2
            return self.isolating(items[:half], process, dependency, what) + self.isolating(
                items[half:], process, dependency, what
            )


class Ingest(BusStage):
    """Publishes a source's sampled frames. Recorded sources (files, folders) number frames by
    (source, position), live ones by the wall clock; ``seq_start`` overrides both. A bus
    outage is waited out with backoff; a live source that drops is reopened.

    Backpressure, when the detectors are ``max_backlog`` frames behind: a recording waits
    (nothing is lost, it is only read later); a live source sheds, keeping one frame in
    ``keep_every`` (doubled while the backlog stays high, halved once it is below half), so
    the newest frames keep flowing at a lower rate; shed frames are counted
    (``emolens_frames_shed_total``, ``self.shed``).

    Every frame read from the source and not published is counted by reason in
    ``self.dropped`` and ``emolens_frames_shed_total{stage="ingest"}``: ``rate`` (sampled out,
    above the target fps), ``backlog`` (shed, above), ``unreadable`` (an image of a folder);
    the counts are logged every ``PROGRESS_EVERY_S`` and when the ingest ends.
    """

    name = "ingest"

    def __init__(
        self,
        bus: Bus,
        camera: Camera,
        settings: Settings,
        seq_start: int | None = None,
        stop: threading.Event | None = None,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        super().__init__(bus, stop)
        for value, what in ((camera.camera_id, "camera id"), (camera.zone, "zone"), (camera.site, "site")):
            check_id(value, what)  # one clear error here, not a dead letter per frame downstream
        self.camera, self.settings = camera, settings
        self.seq_start = seq_start
        self.reconnects = 0
        self.max_backlog = max_backlog
        self.shed = 0
        self.read = 0  # frames read from the source, published or not
        self.dropped: dict[str, int] = {}  # frames read and not published, by reason
        self._logged_at = time.monotonic()
        self.keep_every = 1
        self._checked_at = 0.0
        self._near_mark = False  # a recording close to the mark checks on every frame
        self._unchecked = 0

    def declare(self, store: Store) -> None:
        """Declare this ingest's camera in the registry (``store``), as configured: its zone and
        site, moving it there if it was declared elsewhere. The aggregators store only the
        frames of declared cameras; waits out a database outage."""
        self.retry(partial(store.ensure_camera, self.camera), "store")
        logs.event(
            log.info, "camera_declared", camera=self.camera.camera_id, zone=self.camera.zone, site=self.camera.site
        )

    def _backlog(self) -> int | None:
        try:
            return self.bus.backlog(FRAMES_TOPIC, DETECTOR_GROUP)
        except RETRYABLE:
            return None  # unknown: the publish that follows waits for the bus anyway

    def _keep(self, index: int) -> bool:
        """Live sources: whether frame ``index`` goes out, after adapting ``keep_every``."""
        now = time.monotonic()
        if now - self._checked_at >= BACKLOG_CHECK_S:
            self._checked_at = now
            backlog = self._backlog()
            if backlog is not None and backlog >= self.max_backlog:
                self.keep_every = min(self.keep_every * 2, MAX_KEEP_EVERY)
            elif backlog is not None and backlog < self.max_backlog // 2:
                self.keep_every = max(self.keep_every // 2, 1)
        if index % self.keep_every == 0:
            return True
        self.shed += 1
        self._on_drop(DROP_BACKLOG)
        return False

    def _on_drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        metrics.SHED.labels(self.name, reason).inc()
        if reason != DROP_BACKLOG:  # a shed frame was counted as read when it came
            self.read += 1
            metrics.FRAMES.labels(self.name, "in").inc()

    def _log_counts(self, event: str, published: int) -> None:
        self._logged_at = time.monotonic()
        logs.event(
            log.info,
            event,
            camera=self.camera.camera_id,
            read=self.read,
            published=published,
            dropped=sum(self.dropped.values()),
            dropped_rate=self.dropped.get(DROP_RATE, 0),
            dropped_backlog=self.dropped.get(DROP_BACKLOG, 0),
            dropped_unreadable=self.dropped.get(DROP_UNREADABLE, 0),
            reconnects=self.reconnects,
        )

    def _wait_for_detectors(self) -> None:
        """Recordings: hold back while the detectors are ``max_backlog`` frames behind (the
        backlog is read every quarter of the mark in frames, every BACKLOG_CHECK_S, and on
        every frame once it is above half the mark)."""
        self._unchecked += 1
        recent = time.monotonic() - self._checked_at < BACKLOG_CHECK_S
        if recent and not self._near_mark and self._unchecked < max(1, self.max_backlog // 4):
            return
        self._unchecked = 0
        while not self.stop.is_set():
            self._checked_at = time.monotonic()
            backlog = self._backlog()
            self._near_mark = backlog is not None and backlog >= self.max_backlog // 2
            if backlog is None or backlog < self.max_backlog:
                return
            self._beat()  # waiting for the detectors is not hanging
            self.stop.wait(BACKLOG_CHECK_S / 5)

    def _on_reconnect(self, attempt: int, reason: str) -> None:
        self._beat()
        self.reconnects += 1
        metrics.RECONNECTS.labels(self.name).inc()
        # before the source ever opened this is a try among those EMOLENS_SOURCE_OPEN_TIMEOUT_S
        # allows, which end in one error if it never opens; after, a camera that went away
        level = logging.WARNING if self.read else logging.INFO
        logs.event(
            partial(log.log, level), "source_reconnect", camera=self.camera.camera_id, attempt=attempt, reason=reason
        )

    def run(self, source: str, start: datetime | None = None) -> int:
        """Publish every sampled frame of ``source`` until it ends (a live source only ends
        when ``stop`` is set: drops are reconnected); returns how many. Files get times
        ``start`` + offset; live sources get the wall clock."""
        live = is_live(source)
        start = (start or datetime.now(UTC)).astimezone(UTC)
        live_seq = default_seq_start() if self.seq_start is None else self.seq_start
        n = 0
        frames = iter_source(
            source,
            self.settings.fps,
            self.settings.max_pixels,
            stop=self.stop,
            on_reconnect=self._on_reconnect,
            on_drop=self._on_drop,
            open_timeout_s=self.settings.source_open_timeout_s,
        )
        for frame in frames:
            self._beat()
            self.read += 1
            metrics.FRAMES.labels(self.name, "in").inc()
            if time.monotonic() - self._logged_at >= PROGRESS_EVERY_S:
                self._log_counts("ingest_progress", n)
            if live and not self._keep(frame.index):
                continue
            if not live:
                self._wait_for_detectors()
                if self.stop.is_set():
                    break
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
            try:
                self.retry(
                    partial(self.bus.publish, FRAMES_TOPIC, self.camera.camera_id, msg.SerializeToString()), "bus"
                )
            except Stopping:
                break
            metrics.FRAMES.labels(self.name, "out").inc()
            n += 1
            if n % FLUSH_EVERY == 0:  # bounds what waits in the producer, and what a crash could lose
                try:
                    self.retry(self.bus.flush, "bus")
                except Stopping:
                    break
                failpoints.hit("ingest.after_flush")  # a test's ingest killed mid-file, its frames stored
        with contextlib.suppress(Stopping):
            self.retry(self.bus.flush, "bus")
        self._log_counts("ingest_counts", n)
        return n


class Detector(BusStage):
    GROUP = DETECTOR_GROUP
    name = "detector"

    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        classifier: Classifier,
        detector: FaceDetector | None = None,
        stop: threading.Event | None = None,
    ):
        super().__init__(bus, stop)
        self.settings, self.classifier, self.detector = settings, classifier, detector
        self.consumer = bus.consumer([FRAMES_TOPIC], self.GROUP)
        self._analyzers: dict[str, Analyzer] = {}
        # per camera: frame_seq -> the observations message this process (or, read back, its
        # predecessor) gave for it, the last REPLAY_FRAMES
        self._answered: dict[str, OrderedDict[int, bytes]] = {}

    def _analyzer(self, camera_id: str, first: datetime) -> Analyzer:
        """The camera's analyzer; a camera new to this process starts where its previous
        detector stopped (:meth:`_warm`), ``first`` being the time of its first frame here."""
        a = self._analyzers.get(camera_id)
        if a is None:
            # Track ids unique across restarts and rebalances: distinct visitors rest on them.
            a = Analyzer(
                self.settings, classifier=self.classifier, detector=self.detector, track=True, unique_track_ids=True
            )
            self.detector = a.detector  # share one detector across cameras
            self._warm(camera_id, a, first)  # raises on a bus outage: kept only once warmed
            self._analyzers[camera_id] = a
        return a

    def _warm(self, camera_id: str, analyzer: Analyzer, first: datetime) -> None:
        """What the camera's previous detector (killed, or the owner before a rebalance) emitted
        last, read back from the observations topic: each frame's answer is remembered, so
        frames it analysed and did not commit are answered alike (the store keeps the first
        copy anyway), and the last WARM_S seconds of them go into the tracker, so the faces in
        view keep their track ids: a visitor is not counted twice because a detector restarted."""
        first_copy: dict[int, tuple[FrameObservations, bytes]] = {}
        try:
            messages = self.bus.recent(OBSERVATIONS_TOPIC, camera_id, WARM_MESSAGES)
        except RETRYABLE:
            raise  # waited out with the batch in hand, like the models
        except Exception as exc:  # best effort: never a reason to dead-letter the camera's frames
            logs.event(log.warning, "camera_warm_failed", stage=self.name, camera=camera_id, reason=refusal(exc))
            messages = []
        for m in messages:
            if m.key != camera_id:
                continue
            try:
                obs = observations_from_pb(observations_pb2.FrameObservations.FromString(m.value))
            except (DecodeError, EmolensError, ValueError, KeyError):
                continue  # the aggregator dead-letters it; nothing to learn here
            if obs.camera_id == camera_id:
                first_copy.setdefault(obs.frame_seq, (obs, m.value))  # the copy the store kept
        previous = sorted(first_copy.values(), key=lambda x: x[0].timestamp)[-REPLAY_FRAMES:]
        answered = self._answered.setdefault(camera_id, OrderedDict())
        for obs, value in previous:
            answered[obs.frame_seq] = value
        replayed: list[FrameObservations] = []
        if previous and previous[-1][0].timestamp >= first - timedelta(seconds=WARM_S):  # still in view
            latest = previous[-1][0].timestamp
            replayed = [o for o, _ in previous if o.timestamp >= latest - timedelta(seconds=WARM_S)]
            analyzer.warm([o.faces for o in replayed])
        logs.event(
            log.info,
            "camera_warmed",
            stage=self.name,
            camera=camera_id,
            answers=len(previous),
            replayed=len(replayed),
            tracks=len({f.track_id for o in replayed for f in o.faces}),
        )

    def _decode(self, message: Message) -> tuple[frames_pb2.Frame, np.ndarray] | None:
        frame = frames_pb2.Frame()
        try:
            frame.ParseFromString(message.value)
            # refused here, not after the batch's inference, nor by the store
            check_time(from_timestamp(frame.captured_at), "captured_at")
            # the same rule as the gateway's: no decoder allocates for a size nobody checked
            image = to_bgr(decode_image(frame.jpeg, self.settings.max_pixels, "frame", untrusted=True))
        except (DecodeError, InputError) as exc:
            self.dead_letter(message, f"not a usable Frame message ({type(exc).__name__}: {exc})"[:200])
            return None
        if not frame.camera_id or len(frame.camera_id) > MAX_ID_LENGTH:
            self.dead_letter(message, "no valid camera id")
            return None
        try:  # refused here, before inference, not by the aggregator's store after it
            for value, what in ((frame.camera_id, "camera_id"), (frame.zone, "zone"), (frame.site, "site")):
                check_id(value, what)
        except InputError as exc:
            self.dead_letter(message, f"bad id: {exc}")
            return None
        return frame, image

    def _analyze(self, items: list[tuple[frames_pb2.Frame, np.ndarray]]) -> list[tuple[str, bytes]]:
        """The observations message of each frame (camera id, payload), publishing nothing:
        each camera's frames in order through its own analyzer (tracker, follower), the faces
        of all cameras in one classifier call per model."""
        by_camera: dict[str, list[tuple[frames_pb2.Frame, np.ndarray]]] = defaultdict(list)
        for f, image in items:
            by_camera[f.camera_id].append((f, image))
        jobs, todo = [], []
        for camera_id, frames in by_camera.items():
            analyzer = self._analyzer(camera_id, from_timestamp(frames[0][0].captured_at))
            answered = self._answered.setdefault(camera_id, OrderedDict())
            # a frame answered before (a replay) is answered alike and leaves the tracks alone
            new, seen = [], set()
            for f, im in frames:
                if f.frame_seq not in answered and f.frame_seq not in seen:
                    seen.add(f.frame_seq)
                    new.append((f, im))
            if new:
                stamps = [from_timestamp(f.captured_at).timestamp() for f, _ in new]  # the detection interval's clock
                jobs.append((analyzer, [im for _, im in new], stamps))
                todo.append((camera_id, new))
        fresh: dict[tuple[str, int], bytes] = {}
        faces_found = 0
        for (camera_id, new), camera_results in zip(todo, analyze_together(jobs), strict=True):
            for (f, _), faces in zip(new, camera_results, strict=True):
                obs = FrameObservations(camera_id, f.frame_seq, from_timestamp(f.captured_at), faces)
                fresh[(camera_id, f.frame_seq)] = observations_to_pb(obs, f.zone, f.site).SerializeToString()
                faces_found += len(faces)
        # nothing above changed this detector if it raised (analyze_together restores the analyzers)
        out = []
        for camera_id, frames in by_camera.items():
            answered = self._answered[camera_id]
            for f, _ in frames:
                payload = fresh.get((camera_id, f.frame_seq)) or answered[f.frame_seq]
                out.append((camera_id, payload))
            for (cam, seq), payload in fresh.items():
                if cam == camera_id:
                    answered[seq] = payload
            while len(answered) > REPLAY_FRAMES:
                answered.popitem(last=False)
        metrics.FACES.labels(self.name).inc(faces_found)
        return out

    def step(self, timeout_s: float = 0.5, max_frames: int = 32) -> int:
        """Analyze one batch of frames; returns how many frames were handled. An outage of the
        models or the bus is waited out with backoff, keeping the batch; offsets are committed
        only after the observations are stored by the bus."""
        try:
            messages = self.retry(lambda: self.consumer.poll(timeout_s, max_frames), "bus")
            metrics.report_lag(self.name, self.consumer.lag)
            if not messages:
                return 0
            t0 = time.perf_counter()
            metrics.FRAMES.labels(self.name, "in").inc(len(messages))
            decoded = [(m, d) for m in messages if (d := self._decode(m)) is not None]
            # a frame that makes the analysis raise is isolated and dead-lettered; the rest go on
            out = self.isolating(decoded, self._analyze, "inference", "refused by the detector")
            for camera_id, payload in out:
                self.retry(partial(self.bus.publish, OBSERVATIONS_TOPIC, camera_id, payload), "bus")
            metrics.FRAMES.labels(self.name, "out").inc(len(out))
            self.retry(self.bus.flush, "bus")
            self.retry(self.consumer.commit, "bus")
            metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - t0)
            return len(messages)
        except Stopping:
            return 0  # nothing committed: the batch comes back to whoever owns the partition next


class Aggregator(BusStage):
    """Observations -> one SQL transaction per batch (redelivered frames skipped inside) ->
    live counters (only the frames the store accepted as new) -> offsets committed.

    A database outage is waited out with the batch in hand; a live-state outage only makes the
    counters stale: they are rebuilt from the store's totals once it answers again, and so are
    counters a restarted Redis lost. A message no store can hold goes to the dead-letter topic.
    At its first step and every ``PRUNE_EVERY_S`` after, the store forgets frames accepted
    more than ``replay_window`` ago, which bounds its redelivery bookkeeping.
    """

    GROUP = "emolens-aggregator"
    name = "aggregator"

    def __init__(
        self,
        bus: Bus,
        store: Store,
        live: LiveState | None,
        stop: threading.Event | None = None,
        replay_window: timedelta = timedelta(seconds=Settings.replay_window_s),
    ) -> None:
        super().__init__(bus, stop)
        self.store, self.live = store, live
        self.replay_window = replay_window
        self._pruned_at: float | None = None  # time.monotonic() of the last prune
        self.consumer = bus.consumer([OBSERVATIONS_TOPIC], self.GROUP)
        self._cameras: dict[str, tuple[Camera, float]] = {}  # registered camera, when it was read
        self.live_stale = live is not None  # rebuilt at the first batch if the live state lost them

    def _parse(self, message: Message) -> tuple[FrameObservations, Camera] | None:
        msg = observations_pb2.FrameObservations()
        try:
            msg.ParseFromString(message.value)
            frame = observations_from_pb(msg).validate()
            if "\x00" in msg.zone or "\x00" in msg.site:  # PostgreSQL's text cannot hold it
                raise InputError("zone or site holds a NUL character")
            camera = Camera(msg.camera_id, msg.zone[:MAX_ID_LENGTH], msg.site[:MAX_ID_LENGTH])
        except (DecodeError, EmolensError, ValueError, KeyError) as exc:
            self.dead_letter(message, f"{type(exc).__name__}: {exc}")
            return None
        return frame, camera

    def _contradicts_registry(self, message: Message, camera: Camera) -> bool:
        """Whether the message's camera is undeclared, or the message names another zone or
        site than the one declared for it; if so it went to the dead-letter topic with the
        reason. Cameras are declared, not discovered: configuration declares them (the
        ingest's ``--camera-id`` with its database, ``emolens run``'s cameras, ``emolens
        cameras --set``, the chart's camera list), never a message, which can neither register
        a camera nor move it (and its history) into another scope. The registry is read again,
        at most every ``REGISTRY_REFRESH_S``, before a message is refused, so a camera declared
        or moved meanwhile is followed."""
        now = time.monotonic()
        known = self._cameras.get(camera.camera_id)
        if known is None or (known[0] != camera and now - known[1] >= REGISTRY_REFRESH_S):
            # a lookup the store refuses (not an outage) is isolated like any other message
            found = self.isolating(
                [(message, camera)],
                lambda cams: [self.store.camera(c.camera_id) or UNDECLARED for c in cams],
                "store",
                "camera refused by the store",
            )
            if not found:
                return True  # dead-lettered with the reason
            known = (found[0], now)
            self._cameras[camera.camera_id] = known
        registered = known[0]
        if registered == camera:
            return False
        if registered is UNDECLARED:
            reason = (
                f"camera {camera.camera_id[:MAX_ID_LENGTH]!r} is not declared (declare it: the ingest's --camera-id "
                "with its --db, `emolens cameras --set`, or the chart's cameras)"
            )
        else:
            reason = (
                f"camera {camera.camera_id!r} is registered in zone {registered.zone!r} of site {registered.site!r}, "
                f"the message names zone {camera.zone!r} of site {camera.site!r}"
            )
        self.dead_letter(message, reason[:MAX_REASON])
        return True

    def _update_live(self, new_frames: list[FrameObservations]) -> None:
        live = self.live
        if live is None:
            return
        try:
            if self.live_stale or live.lost():
                live.reset(self.retry(self.store.totals, "store"))  # the totals hold new_frames already
                logs.event(log.info, "live_rebuilt", stage=self.name)
                self.live_stale = False
            elif new_frames:
                live.add(new_frames)
        except RETRYABLE as exc:
            # SQL is the truth and is up to date; the counters catch up when the live state returns
            self.live_stale = True
            metrics.ERRORS.labels(self.name, "live_unavailable").inc()
            logs.event(log.warning, "live_degraded", stage=self.name, reason=str(exc))

    def _prune(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return
        removed = self.retry(partial(self.store.prune_seen, self.replay_window), "store")
        self._pruned_at = now
        logs.event(log.info, "seen_pruned", stage=self.name, rows=removed)

    def step(self, timeout_s: float = 0.5, max_records: int = 512) -> int:
        try:
            self._prune()
            messages = self.retry(lambda: self.consumer.poll(timeout_s, max_records), "bus")
            metrics.report_lag(self.name, self.consumer.lag)
            if not messages:
                if self.live_stale:
                    self._update_live([])
                return 0
            t0 = time.perf_counter()
            metrics.FRAMES.labels(self.name, "in").inc(len(messages))
            items = []
            for m in messages:
                parsed = self._parse(m)
                if parsed is None:
                    continue
                frame, camera = parsed
                if self._contradicts_registry(m, camera):
                    continue
                items.append((m, frame))
            new_frames = self.isolating(items, self.store.apply, "store", "refused by the store")
            metrics.FRAMES.labels(self.name, "out").inc(len(new_frames))
            metrics.FACES.labels(self.name).inc(sum(len(f.faces) for f in new_frames))
            failpoints.hit("aggregator.after_db_commit")
            self._update_live(new_frames)
            self.retry(self.consumer.commit, "bus")  # only after the database commit
            metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - t0)
            return len(messages)
        except Stopping:
            return 0


def drain(stage: Detector | Aggregator, idle_s: float = 1.0, timeout_s: float = 0.2) -> int:
    """Step until nothing arrives for ``idle_s``; returns how many messages were handled."""
    total, idle_since = 0, time.monotonic()
    while time.monotonic() - idle_since < idle_s:
        n = stage.step(timeout_s)
        if n:
            total += n
            idle_since = time.monotonic()
    return total
