"""``emolens ingest``: camera sources -> sampled JPEG frames on ``emolens.frames``: one camera,
or several in one process (``--cameras``, a thread each, one producer), as the chart's grouped
ingest pods run them."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from datetime import datetime
from pathlib import Path

from emolens import logs
from emolens.bus import make_bus
from emolens.errors import ConfigError, EmolensError
from emolens.media import is_live
from emolens.metrics import serve_metrics
from emolens.retry import Backoff
from emolens.runner import CameraSource, load_cameras
from emolens.services.loop import health_server, ops_host, stop_event
from emolens.settings import Settings, parse_start
from emolens.stages import Ingest
from emolens.store import Camera, make_store

log = logging.getLogger(__name__)


def main(args: argparse.Namespace, settings: Settings) -> int:
    cameras = _cameras(args)
    if args.seq_start is not None and len(cameras) > 1:
        raise ConfigError("--seq-start numbers the frames of one camera; give it with --source only")
    serve_metrics(settings.metrics_port, ops_host(settings))
    bus = make_bus(settings.bus, settings)
    start = parse_start(args.start)
    health = health_server(settings.health_port, "emolens.ingest", settings.liveness_timeout_s, ops_host(settings))
    stop = stop_event()
    ingests = [Ingest(bus, c.camera, settings, args.seq_start, stop=stop) for c in cameras]
    if health is not None:
        ready: set[str] = set()

        def on_ready(camera_id: str, ok: bool) -> None:
            # ready once every camera's ingest is: one that waits for the bus makes the pod wait
            (ready.add if ok else ready.discard)(camera_id)
            assert health is not None
            health.set(len(ready) == len(ingests))

        for ingest in ingests:
            ingest.on_ready = lambda ok, cid=ingest.camera.camera_id: on_ready(cid, ok)
            ingest.on_beat = health.beat
    _declare(ingests, settings)
    failed: list[str] = []
    try:
        if len(ingests) == 1:
            _run_one(ingests[0], cameras[0], start, failed, retry_live=False)
        else:
            threads = [
                threading.Thread(
                    target=_run_one, args=(i, c, start, failed, True), name=f"ingest-{c.camera.camera_id}", daemon=True
                )
                for i, c in zip(ingests, cameras, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        if health is not None:
            health.close()
        bus.close()
    if len(ingests) > 1 and failed:
        print(f"ingest: {len(failed)} of {len(ingests)} cameras failed: {', '.join(sorted(failed))}", file=sys.stderr)
    return 1 if failed else 0


def _declare(ingests: list[Ingest], settings: Settings) -> None:
    """Declare every camera in the registry when a database is named (``--db``, ``EMOLENS_DB``):
    the aggregators store only the frames of declared cameras."""
    if settings.db == Settings.db:  # the aggregators dead-letter these cameras' frames (their log says why)
        logs.event(
            log.info,
            "camera_not_declared",
            cameras=",".join(i.camera.camera_id for i in ingests),
            hint="give --db (EMOLENS_DB) to declare them, or declare them with `emolens cameras --set`",
        )
        return
    store = make_store(settings.db)  # as the aggregator's: the schema is made when missing
    try:
        for ingest in ingests:
            ingest.declare(store)
    finally:
        store.close()


def _cameras(args: argparse.Namespace) -> list[CameraSource]:
    """One camera (``--source`` and ``--camera-id``) or those of a ``--cameras`` file, not both."""
    if args.cameras:
        if args.source or args.camera_id:
            raise ConfigError("give --cameras FILE, or --source with --camera-id, not both")
        return load_cameras(Path(args.cameras))
    if not (args.source and args.camera_id):
        raise ConfigError("give --source and --camera-id (one camera), or --cameras FILE (several)")
    return [CameraSource(args.source, Camera(args.camera_id, args.zone, args.site))]


def _run_one(ingest: Ingest, camera: CameraSource, start: datetime | None, failed: list[str], retry_live: bool) -> None:
    """One camera's ingest to its end. Among several cameras (``retry_live``), a live source that
    does not open is tried again with backoff instead of ending the process: the other cameras
    of the pod go on. A recording that fails is reported and counted in ``failed``."""
    cid = camera.camera.camera_id
    # the source is not logged: a camera URL may carry a password
    live = is_live(camera.source)
    logs.event(log.info, "ingest_started", camera=cid, live=live, fps=ingest.settings.fps)
    backoff = Backoff(initial_s=5.0, maximum_s=120.0)
    while True:
        try:
            n = ingest.run(camera.source, start)
        except EmolensError as exc:
            if not (retry_live and live) or ingest.stop.is_set():
                if not retry_live:
                    raise
                logs.event(log.error, "camera_failed", camera=cid, reason=str(exc))
                failed.append(cid)
                return
            logs.event(log.warning, "camera_retry", camera=cid, reason=str(exc))
            if not backoff.wait(ingest.stop):
                return
            continue
        break
    logs.event(log.info, "ingest_finished", camera=cid, published=n)
    print(f"ingest {cid}: published {n} frames to {ingest.settings.bus}", file=sys.stderr)
