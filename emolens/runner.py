"""The embedded shape: ingest -> memory bus -> detector -> memory bus -> aggregator, all in one
process, the same stages the services run over Kafka. ``emolens run`` is ``run_cameras``: one
or several sources, each its own camera, in one process."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from emolens import logs
from emolens.bus import MemoryBus
from emolens.errors import ConfigError
from emolens.inference import Classifier, make_classifier
from emolens.live import LiveState
from emolens.media import source_kind
from emolens.observations import MAX_ID_LENGTH
from emolens.settings import Settings
from emolens.stages import Aggregator, Detector, Ingest
from emolens.store import Camera, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraSource:
    """One source of an embedded run and the camera its frames count for."""

    source: str  # video file, rtsp/http URL, webcam index or image folder
    camera: Camera


@dataclass
class RunSummary:
    frames: int
    observations: int
    seconds: float
    shed: int = 0  # live frames ingest dropped because detection was behind
    frames_by_camera: dict[str, int] = field(default_factory=dict)  # frames published per camera
    # frames read and not published, per camera and reason (rate, backlog, unreadable: Ingest)
    dropped_by_camera: dict[str, dict[str, int]] = field(default_factory=dict)


def run_embedded(
    source: str,
    camera: Camera,
    store: Store,
    settings: Settings,
    *,
    start: datetime | None = None,
    live: LiveState | None = None,
    classifier: Classifier | None = None,
    seq_start: int | None = None,
    stop: threading.Event | None = None,
    max_backlog: int | None = None,
) -> RunSummary:
    """Analyze ``source`` for ``camera`` and aggregate it into ``store`` (``run_cameras`` with
    one camera; ``seq_start`` numbers its frames from there)."""
    return run_cameras(
        [CameraSource(source, camera)],
        store,
        settings,
        start=start,
        live=live,
        classifier=classifier,
        seq_start=seq_start,
        stop=stop,
        max_backlog=max_backlog,
    )


def run_cameras(
    cameras: Sequence[CameraSource],
    store: Store,
    settings: Settings,
    *,
    start: datetime | None = None,
    live: LiveState | None = None,
    classifier: Classifier | None = None,
    seq_start: int | None = None,
    stop: threading.Event | None = None,
    max_backlog: int | None = None,
) -> RunSummary:
    """Analyze every source for its camera and aggregate them into ``store``.

    Each source's ingest runs in its own thread (decoding in parallel: OpenCV releases the
    GIL), all into one bus; the detector and the aggregator step in this thread until every
    ingest has finished and both have drained the bus. Each detector step takes the frames
    of every camera that arrived, runs each camera's frames through its own tracker and
    follower, and classifies the faces of all cameras in one call per model. Errors of a
    source (missing, corrupt) raise, after the other sources stopped. A live source runs
    until ``stop`` is set. The bus between the stages is bounded: ingest waits (recordings)
    or sheds frames (live) while detection is ``max_backlog`` frames behind (all cameras).
    """
    if not cameras:
        raise ConfigError("no source to run")
    ids = [c.camera.camera_id for c in cameras]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"each source needs its own camera id; given {', '.join(ids)}")
    for c in cameras:
        source_kind(c.source)  # fail fast on a missing path or unknown type
    if seq_start is not None and len(cameras) > 1:
        raise ConfigError("seq_start numbers the frames of one source; give it for a single camera only")
    bus = MemoryBus()
    stop = stop or threading.Event()
    for c in cameras:
        store.ensure_camera(c.camera)
    backlog = {} if max_backlog is None else {"max_backlog": max_backlog}
    ingests = [Ingest(bus, c.camera, settings, seq_start, stop=stop, **backlog) for c in cameras]
    detector = Detector(bus, settings, classifier or make_classifier(settings.inference, settings.threads))
    aggregator = Aggregator(bus, store, live, replay_window=timedelta(seconds=settings.replay_window_s))
    failure: list[BaseException] = []
    published: dict[str, int] = {}

    def produce(ingest: Ingest, source: str) -> None:
        try:
            published[ingest.camera.camera_id] = ingest.run(source, start)
        except BaseException as exc:  # re-raised below, in the caller's thread
            failure.append(exc)
            stop.set()  # the other sources stop too: the run fails as a whole

    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=produce, args=(ingest, c.source), name=f"emolens-ingest-{i}", daemon=True)
        for i, (ingest, c) in enumerate(zip(ingests, cameras, strict=True))
    ]
    for thread in threads:
        thread.start()
    logs.event(log.info, "run_start", cameras=len(cameras), sources=",".join(ids))
    frames = observations = 0
    while True:
        ingest_done = not any(t.is_alive() for t in threads)  # read before polling: nothing can arrive after
        n_det = detector.step(timeout_s=0.05)
        n_agg = aggregator.step(timeout_s=0.0)
        frames += n_det
        observations += n_agg
        if ingest_done and n_det == 0 and n_agg == 0:
            break
    for thread in threads:
        thread.join()
    if failure:
        raise failure[0]
    return RunSummary(
        frames,
        observations,
        time.perf_counter() - t0,
        sum(i.shed for i in ingests),
        dict(published),
        {i.camera.camera_id: dict(i.dropped) for i in ingests},
    )


_SPEC_KEYS = ("id", "source", "zone", "site")
# a --cameras file may name the environment variable that holds a source instead of the source
# (an RTSP URL with a password, from a Secret: the chart's grouped ingest pods)
_FILE_KEYS = (*_SPEC_KEYS, "source_env")


def _camera_source(fields: dict[str, object], where: str, keys: tuple[str, ...] = _SPEC_KEYS) -> CameraSource:
    unknown = sorted(set(fields) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(keys)}")
    values = {k: "" if v is None else str(v) for k, v in fields.items()}
    camera_id, source = values.get("id", ""), values.get("source", "")
    if values.get("source_env"):
        if source:
            raise ConfigError(f"{where}: give source or source_env, not both")
        source = os.environ.get(values["source_env"], "")
        if not source:
            raise ConfigError(f"{where}: source_env {values['source_env']} is not set or empty")
    if not source:
        raise ConfigError(f"{where}: no source")
    if not 1 <= len(camera_id) <= MAX_ID_LENGTH:
        raise ConfigError(f"{where}: the camera id must be 1-{MAX_ID_LENGTH} characters")
    for key in ("zone", "site"):
        if len(values.get(key, "")) > MAX_ID_LENGTH:
            raise ConfigError(f"{where}: {key} must be at most {MAX_ID_LENGTH} characters")
    return CameraSource(source, Camera(camera_id, values.get("zone", ""), values.get("site", "")))


def parse_camera(spec: str) -> CameraSource:
    """``--camera id=ID,source=SOURCE[,zone=ZONE][,site=SITE]`` (keys in any order; a comma
    inside a value is kept unless a key and ``=`` follow it).

    >>> parse_camera("id=door-1,source=rtsp://10.0.0.5/stream,zone=entrance,site=mall")
    CameraSource(source='rtsp://10.0.0.5/stream', camera=Camera(camera_id='door-1', zone='entrance', site='mall'))
    """
    parts = re.split(",(?=(?:" + "|".join(_SPEC_KEYS) + ")=)", spec)
    fields: dict[str, object] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"--camera {spec!r}: expected id=ID,source=SOURCE[,zone=ZONE][,site=SITE]")
        if key.strip() in fields:
            raise ConfigError(f"--camera {spec!r}: {key.strip()} given twice")
        fields[key.strip()] = value
        bare = re.search(r",\s*(" + "|".join(_SPEC_KEYS) + r")\s*$", value)
        if bare:
            raise ConfigError(f"--camera {spec!r}: {bare.group(1)} without a value (write {bare.group(1)}=VALUE)")
        # a mistyped key (zoen=, src=) would otherwise end up inside the value before it
        typo = re.search(r",\s*([A-Za-z_]{1,12})=", value)
        if typo:
            raise ConfigError(
                f"--camera {spec!r}: unknown key {typo.group(1)!r}; use {', '.join(_SPEC_KEYS)} "
                "(a source with ',name=' in it goes in a --cameras YAML file)"
            )
    return _camera_source(fields, f"--camera {spec!r}")


def load_cameras(path: Path) -> list[CameraSource]:
    """Cameras from a YAML file: a list of mappings with ``id``, ``source`` (or ``source_env``,
    the environment variable that holds it), and optionally ``zone`` and ``site`` (or that list
    under a ``cameras`` key)::

        cameras:
          - {id: door-1, source: "rtsp://10.0.0.5/stream", zone: entrance, site: mall}
          - {id: till-2, source: "0", zone: tills, site: mall}   # webcam 0
    """
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--cameras {path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--cameras {path}: not valid YAML ({exc})") from exc
    entries = loaded.get("cameras") if isinstance(loaded, dict) else loaded
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"--cameras {path}: expected a list of cameras (id, source, zone, site)")
    cameras = [_camera_source(e, f"--cameras {path}, camera {i + 1}", _FILE_KEYS) for i, e in enumerate(entries)]
    ids = [c.camera.camera_id for c in cameras]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--cameras {path}: each camera needs its own id; given {', '.join(ids)}")
    return cameras
