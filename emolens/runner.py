"""The embedded shape: source -> in-process queue -> analyze + track -> per-minute SQL buckets,
all in one process. ``emolens run`` is this function."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from emolens.errors import InputError
from emolens.media import Frame, folder_images, iter_video, read_image, source_kind
from emolens.observations import FrameObservations
from emolens.pipeline import Analyzer
from emolens.settings import Settings
from emolens.store import Camera, Store

log = logging.getLogger(__name__)

_END = object()


def iter_source(source: str, fps: float, max_pixels: int) -> Iterator[Frame]:
    """Frames of any source kind; a folder or image becomes a sequence at ``fps``."""
    kind = source_kind(source)
    if kind in ("video", "stream", "webcam"):
        yield from iter_video(source, fps)
        return
    paths = [Path(source)] if kind == "image" else folder_images(Path(source))
    if not paths:
        raise InputError(f"{source}: folder holds no images")
    for i, path in enumerate(paths):
        try:
            image = read_image(path, max_pixels)
        except InputError as exc:
            log.warning("event=skip_input reason=%r", str(exc))
            continue
        yield Frame(index=i, timestamp=i / fps, image=image)


@dataclass
class RunSummary:
    frames: int
    faces: int
    frames_stored: int
    seconds: float


def run_embedded(
    source: str,
    camera: Camera,
    store: Store,
    settings: Settings,
    *,
    start: datetime | None = None,
    analyzer: Analyzer | None = None,
    commit_every: int = 32,
    on_frame: Callable[[Frame, FrameObservations], None] | None = None,
) -> RunSummary:
    """Analyze ``source`` and aggregate it into ``store`` for ``camera``.

    Frame times are ``start`` plus the frame's offset in the source; for live sources
    (streams, webcams) ``start`` defaults to now, so buckets follow the wall clock.
    """
    kind = source_kind(source)
    start = (start or datetime.now(UTC)).astimezone(UTC)
    analyzer = analyzer or Analyzer(settings, track=True)
    store.ensure_camera(camera)
    frames_q: queue.Queue[object] = queue.Queue(maxsize=16)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for frame in iter_source(source, settings.fps, settings.max_pixels):
                frames_q.put(frame)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            failure.append(exc)
        finally:
            frames_q.put(_END)

    reader = threading.Thread(target=produce, name="emolens-ingest", daemon=True)
    reader.start()
    t0 = time.perf_counter()
    pending: list[FrameObservations] = []
    n_frames = n_faces = stored = 0
    while True:
        item = frames_q.get()
        if item is _END:
            break
        assert isinstance(item, Frame)
        faces = analyzer.analyze(item.image)
        stamp = datetime.now(UTC) if kind in ("stream", "webcam") else start + timedelta(seconds=item.timestamp)
        obs = FrameObservations(camera.camera_id, n_frames, stamp, faces)
        if on_frame:
            on_frame(item, obs)
        pending.append(obs)
        n_frames += 1
        n_faces += len(faces)
        if len(pending) >= commit_every:
            stored += store.apply(pending)
            pending.clear()
    reader.join()
    stored += store.apply(pending)
    if failure:
        raise failure[0]
    return RunSummary(n_frames, n_faces, stored, time.perf_counter() - t0)
