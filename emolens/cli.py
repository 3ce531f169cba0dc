"""``emolens`` command line: analyze, run, stats, demo, the services, and the developer tools
(``bench``, ``evaluate``, ``dev``) whose own flags follow their verb.

Every user mistake ends in one line on stderr (``error: ...``) and a non-zero exit, never a
traceback. Each command imports what it needs when it runs, so ``emolens --help`` stays fast and
the runtime verbs never load the training stack.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from emolens import logs
from emolens.errors import ConfigError, EmolensError, InputError, NotFound
from emolens.logs import configure as configure_logging
from emolens.observations import MAX_ID_LENGTH
from emolens.settings import Settings, parse_start, parse_time, redact_url

log = logging.getLogger("emolens")
SERVICE_COMMANDS = ("ingest", "detect", "aggregate", "gateway")  # they log at INFO by default


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        inference=getattr(args, "inference", None),
        detector=getattr(args, "detector", None),
        detect_interval=getattr(args, "detect_interval", None),
        min_face_px=getattr(args, "min_face_px", None),
        classify_interval=getattr(args, "classify_interval", None),
        fps=getattr(args, "fps", None),
        db=getattr(args, "db", None),
        preprocess=getattr(args, "preprocess", None),
        threads=getattr(args, "threads", None),
        k_anonymity=getattr(args, "k", None),
        live=getattr(args, "live", None),
        bus=getattr(args, "bus", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        tls_client_ca=getattr(args, "tls_client_ca", None),
        tokens_file=getattr(args, "tokens_file", None),
        source_open_timeout_s=getattr(args, "open_timeout", None),
    )


# ---------------------------------------------------------------- analyze


def _expand(paths: list[str]) -> Iterator[tuple[str, str]]:
    """(source, kind) for each input; folders expand to the images and videos inside."""
    from emolens.media import IMAGE_EXTS, VIDEO_EXTS, source_kind

    for p in paths:
        kind = source_kind(p)  # raises InputError for a missing path or unknown type
        if kind != "folder":
            yield p, kind
            continue
        entries = sorted(q for q in Path(p).iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
        if not entries:
            raise InputError(f"{p}: folder holds no images or videos")
        for q in entries:
            yield str(q), "video" if q.suffix.lower() in VIDEO_EXTS else "image"


def _annotate_dir(value: str | None) -> Path | None:
    """``--annotate DIR``: made if missing; refused if it names a file. As for every output
    (``--out FILE``), what the flag names is made, never the folders above it: a typo in a
    parent is an error, not a new tree."""
    if not value:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise InputError(f"--annotate {path}: is a file, not a folder")
    if not path.parent.is_dir():
        raise InputError(f"--annotate {path}: folder {path.parent} does not exist")
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"--annotate {path}: cannot make the folder ({exc.strerror})") from exc
    return path


@contextmanager
def _output(value: str | None) -> Iterator[IO[str]]:
    """``--out FILE`` (its folder must exist), or stdout."""
    if not value:
        yield sys.stdout
        return
    path = Path(value)
    if not path.parent.is_dir():
        raise InputError(f"--out {path}: folder {path.parent} does not exist")
    try:
        out = path.open("w")
    except OSError as exc:
        raise InputError(f"--out {path}: cannot write ({exc.strerror})") from exc
    try:
        with out:
            yield out
    except OSError as exc:  # a full disk shows in a write or in the close: one line, not a traceback
        raise InputError(f"--out {path}: cannot write ({exc.strerror})") from exc


@contextmanager
def _existing_store(settings: Settings) -> Iterator[Any]:
    """The store at ``settings.db`` for reading: never created, refused without its schema,
    closed on the way out."""
    from emolens.store import SqlStore

    store = SqlStore(settings.db, create=False)  # a reader never creates a database
    try:
        store.require_schema()
        yield store
    finally:
        store.close()


def cmd_analyze(args: argparse.Namespace) -> int:
    settings = _settings(args)
    annotate_dir = _annotate_dir(args.annotate)
    with _output(args.out) as out:  # both checked before the models load
        return _analyze(args, settings, out, annotate_dir)


def _stage_ms(analyzer: Any, before: dict[str, float], frames: int) -> dict[str, float]:
    """``detect_ms``, ``classify_ms``, ...: each stage's milliseconds per frame since ``before``."""
    now = analyzer.times.seconds
    return {f"{k}_ms": round(1000 * (now[k] - before.get(k, 0.0)) / max(frames, 1), 1) for k in now}


def _analyze(args: argparse.Namespace, settings: Settings, out: IO[str], annotate_dir: Path | None) -> int:
    import time

    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from emolens.pipeline import Analyzer

    ok = failed = faces = 0

    def emit(source: str, frame: int, ts: float | None, results: list[Any]) -> None:
        for face in results:
            record = {"source": source, "frame": frame, "timestamp": ts, **face.to_dict()}
            out.write(json.dumps(record) + "\n")

    inputs: list[tuple[str, str]] = []
    for p in args.paths:
        try:
            inputs.extend(_expand([p]))
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    if not inputs:  # nothing to analyse: the models need not load
        print(f"analyzed 0 input(s), 0 face(s); {failed} failed", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    # A video's frames are one scene followed over time; images are stills, each its own scene
    # (a folder of unrelated photos is not a video): no tracking, and the stricter faceness ramp
    # of a single look. Both share the models and the detector.
    analyzer = Analyzer(settings, track=True)
    stills = Analyzer(settings, classifier=analyzer.classifier, detector=analyzer.detector)
    logs.event(
        log.info,
        "models_loaded",
        detector=analyzer.detector.name,
        inference=redact_url(settings.inference),
        inputs=len(inputs),
        seconds=round(time.perf_counter() - t0, 2),
    )
    # The bars go to stderr only when it is a terminal (tqdm's disable=None), and log lines are
    # written above them rather than through them.
    with logging_redirect_tqdm():
        for source, kind in tqdm(
            inputs,
            desc="inputs",
            unit="file",
            disable=True if args.no_progress or len(inputs) == 1 else None,
            file=sys.stderr,
        ):
            try:
                if kind == "image":
                    faces += _analyze_image(args, stills, source, annotate_dir, emit)
                else:
                    faces += _analyze_video(args, analyzer, source, annotate_dir, emit)
                ok += 1
            except EmolensError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed += 1
    out.flush()  # a write that fails says so before the summary claims the faces were written
    logs.event(log.info, "analyze_done", inputs=ok, faces=faces, failed=failed)
    print(f"analyzed {ok} input(s), {faces} face(s); {failed} failed", file=sys.stderr)
    return 0 if ok else 2


def _analyze_image(args: argparse.Namespace, analyzer: Any, source: str, annotate_dir: Path | None, emit: Any) -> int:
    import time

    import cv2

    from emolens.annotate import annotate
    from emolens.media import read_image
    from emolens.pipeline import to_bgr

    t0 = time.perf_counter()
    before = dict(analyzer.times.seconds)
    image = read_image(Path(source), analyzer.settings.max_pixels)
    analyzer.reset()
    results = analyzer.analyze(image)
    emit(source, 0, None, results)
    if annotate_dir:
        target = annotate_dir / Path(source).name
        if target.suffix.lower() == ".pgm":  # the annotations are in colour: PGM holds gray only
            target = target.with_suffix(".ppm")
        if not cv2.imwrite(str(target), annotate(to_bgr(image), results, args.blur)):
            raise InputError(f"{target}: could not write the annotated image")
        logs.event(log.info, "annotated", source=source, path=target)
    seconds = round(time.perf_counter() - t0, 3)
    logs.event(log.info, "image", source=source, faces=len(results), seconds=seconds, **_stage_ms(analyzer, before, 1))
    return len(results)


def _analyze_video(args: argparse.Namespace, analyzer: Any, source: str, annotate_dir: Path | None, emit: Any) -> int:
    import time
    from contextlib import ExitStack

    from tqdm import tqdm

    from emolens.annotate import VideoWriter, annotate
    from emolens.media import iter_video, video_fps, video_frame_count

    analyzer.reset()
    n_frames = n_faces = 0
    total = video_frame_count(source) or None
    fps = args.fps if args.fps else None
    t0 = time.perf_counter()
    before = dict(analyzer.times.seconds)
    logs.event(log.info, "video_start", source=source, frames=total, sample_fps=fps)
    with ExitStack() as stack:
        writer: VideoWriter | None = None
        bar = tqdm(
            iter_video(source, fps),
            total=total if fps is None else None,  # sampled: fewer frames than the file declares
            desc=Path(source).name,
            unit="frame",
            disable=True if args.no_progress else None,
            file=sys.stderr,
            leave=False,
        )
        for frame in stack.enter_context(bar):
            t_frame = time.perf_counter()
            results = analyzer.analyze(frame.image, frame.timestamp)
            emit(source, frame.index, round(frame.timestamp, 3), results)
            n_frames += 1
            n_faces += len(results)
            logs.event(
                log.info,
                "frame",
                source=source,
                frame=frame.index,
                t=round(frame.timestamp, 3),
                faces=len(results),
                ms=round(1000 * (time.perf_counter() - t_frame), 1),
            )
            if annotate_dir:
                if writer is None:
                    h, w = frame.image.shape[:2]
                    target = annotate_dir / (Path(source).stem + ".annotated.mp4")
                    # sampled at --fps, the kept frames play at that rate; else at the source's own
                    writer = stack.enter_context(VideoWriter(target, fps or video_fps(source), (w, h)))
                writer.write(annotate(frame.image, results, args.blur))
    if writer is not None:
        logs.event(log.info, "annotated", source=source, path=writer.path, codec=writer.codec, frames=n_frames)
    seconds = time.perf_counter() - t0
    logs.event(
        log.info,
        "video",
        source=source,
        frames=n_frames,
        faces=n_faces,
        seconds=round(seconds, 2),
        fps=round(n_frames / max(seconds, 1e-9), 1),
        **_stage_ms(analyzer, before, n_frames),
    )
    return n_faces


# ---------------------------------------------------------------- run / stats / demo


def _run_cameras(args: argparse.Namespace) -> list[Any]:
    """The cameras of ``emolens run``: ``--source`` with ``--camera-id`` (one camera), and/or
    repeated ``--camera id=...,source=...`` and a ``--cameras`` YAML file."""
    from emolens.runner import CameraSource, load_cameras, parse_camera
    from emolens.store import Camera

    cameras = []
    if args.source or args.camera_id:
        if not (args.source and args.camera_id):
            raise ConfigError("--source and --camera-id go together (or use --camera id=ID,source=SOURCE)")
        cameras.append(CameraSource(args.source, Camera(args.camera_id, args.zone, args.site)))
    elif args.zone or args.site:
        raise ConfigError("--zone and --site belong to --source/--camera-id; give them inside --camera")
    cameras += [parse_camera(spec) for spec in args.camera or []]
    if args.cameras:
        cameras += load_cameras(Path(args.cameras))
    if not cameras:
        raise ConfigError("give a source: --source FILE --camera-id ID, --camera id=ID,source=FILE, or --cameras FILE")
    return cameras


# the reasons Ingest counts in RunSummary.dropped_by_camera, as `run`'s summary words them
_DROP_WORDS = {
    "rate": "above the target fps",
    "backlog": "shed while detection was behind",
    "unreadable": "unreadable images",
}


def cmd_run(args: argparse.Namespace) -> int:
    from emolens.live import make_live_state
    from emolens.runner import run_cameras
    from emolens.store import make_store

    settings = _settings(args)
    start = parse_start(args.start)
    cameras = _run_cameras(args)
    store = make_store(settings.db)
    try:
        summary = run_cameras(cameras, store, settings, start=start, live=make_live_state(settings.live))
    finally:
        store.close()
    rate = summary.frames / max(summary.seconds, 1e-9)
    for c in cameras:
        dropped = summary.dropped_by_camera.get(c.camera.camera_id, {})
        why = ", ".join(f"{n} {_DROP_WORDS.get(reason, reason)}" for reason, n in sorted(dropped.items()) if n)
        print(
            f"camera {c.camera.camera_id}: {summary.frames_by_camera.get(c.camera.camera_id, 0)} frames, "
            f"{sum(dropped.values())} dropped{f' ({why})' if why else ''}",
            file=sys.stderr,
        )
    print(
        f"{len(cameras)} camera(s): {summary.frames} frames analysed, {summary.observations} frame results "
        f"sent to {redact_url(settings.db)}, which counts a frame it already holds once ({rate:.1f} frames/s)",
        file=sys.stderr,
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from emolens.tables import print_buckets

    settings = _settings(args)
    with _existing_store(settings) as store:
        if args.camera_id and args.camera_id not in {c.camera_id for c in store.cameras()}:
            raise NotFound(f"unknown camera {args.camera_id!r}")  # not the URL: it may hold a password
        if args.since or args.until or args.by or args.every:
            return _stats_query(args, settings, store)
        buckets = store.buckets(camera_id=args.camera_id, zone=args.zone, site=args.site)
    print_buckets(buckets, settings.k_anonymity, args.format, sys.stdout)
    return 0


def _utc(flag: str, text: str | None) -> Any:
    """``--since``/``--until``: an ISO date or time, UTC unless it names a zone; naive UTC."""
    return parse_time(flag, text).replace(tzinfo=None) if text else None


def _stats_query(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    """``stats`` with ``--since/--until/--by/--every``: groups per period from the rollups,
    k-safe, every page fetched (a query too big for one answer is refused before it runs).
    Defaults: ``--every hour --by camera``, until now, since a day (minutes) or a week before."""
    from datetime import UTC, datetime, timedelta

    from emolens.analytics import By, Every, pages
    from emolens.tables import print_stats

    every: Every = args.every or "hour"
    by: By = args.by or "camera"
    until = _utc("--until", args.until) or datetime.now(UTC).replace(tzinfo=None)
    since = _utc("--since", args.since) or until - timedelta(days=1 if every == "minute" else 7)
    rows, suppressed = [], None
    for page in pages(
        store,
        since,
        until,
        by=by,
        every=every,
        k=settings.k_anonymity,
        page_size=settings.stats_max_page_size,
        camera_id=args.camera_id,
        zone=args.zone,
        site=args.site,
        max_rows=settings.stats_max_rows,
        max_page_size=settings.stats_max_page_size,
    ):
        rows.extend(page.rows)
        suppressed = page.suppressed if suppressed is None else suppressed
    if not rows and not suppressed:
        span = f"{since.isoformat(timespec='minutes')} to {until.isoformat(timespec='minutes')} UTC"
        print(f"no statistics from {span} (set --since/--until for another period)", file=sys.stderr)
    print_stats(rows, by, settings.k_anonymity, suppressed, args.format, sys.stdout)
    return 0


def cmd_cameras(args: argparse.Namespace) -> int:
    """``emolens cameras``: every camera the store knows, with its zone and site; ``--set ID``
    registers a camera or moves it to ``--zone``/``--site`` (the registry access scopes rest on:
    the aggregator dead-letters messages that name another zone or site for it)."""
    import csv

    from emolens.store import Camera

    if args.set is None and (args.zone is not None or args.site is not None):
        raise ConfigError("--zone and --site go with --set CAMERA_ID")
    if args.set is not None:
        camera = Camera(args.set, args.zone or "", args.site or "")
        for what, value in (("camera id", camera.camera_id), ("zone", camera.zone), ("site", camera.site)):
            if len(value) > MAX_ID_LENGTH or (what == "camera id" and not value):
                raise ConfigError(
                    f"--set: the {what} must be {'1' if what == 'camera id' else '0'}-{MAX_ID_LENGTH} characters"
                )
    with _existing_store(_settings(args)) as store:
        if args.set is not None:
            store.ensure_camera(camera)
            print(f"camera {camera.camera_id}: zone {camera.zone!r}, site {camera.site!r}", file=sys.stderr)
            return 0
        cams = store.cameras()
    records = [{"camera_id": c.camera_id, "zone": c.zone, "site": c.site} for c in cams]
    if args.format == "json":
        print(json.dumps(records, indent=1))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=["camera_id", "zone", "site"])
        writer.writeheader()
        writer.writerows(records)
    elif not records:
        print("no cameras")
    else:
        widths = {k: max(len(k), *(len(r[k]) for r in records)) for k in ("camera_id", "zone")}
        print(f"{'camera_id'.ljust(widths['camera_id'])}  {'zone'.ljust(widths['zone'])}  site")
        for r in records:
            print(f"{r['camera_id'].ljust(widths['camera_id'])}  {r['zone'].ljust(widths['zone'])}  {r['site']}")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """``emolens retention apply``: delete what is older than the configured ages and say what went."""
    from emolens.store import Policy

    settings = _settings(args)
    with _existing_store(settings) as store:
        removed = store.apply_retention(Policy.from_settings(settings))
    for r in removed:
        print(r.describe())
    return 0


def _report_time(flag: str, text: str, tz: Any) -> Any:
    """``--since``/``--until``: an ISO date or time; without a zone it is in ``--tz``. Returned
    as naive UTC, as the store keeps time."""
    return parse_time(flag, text, tz).replace(tzinfo=None)


REPORT_FORMATS = {".html": "html", ".htm": "html", ".zip": "csv"}  # --out's suffix -> what it holds


def _report_format(out: Path, asked: str | None) -> str:
    """One rule: the format follows ``--out``'s suffix (*.html: the page, *.zip: its tables as
    CSV); ``--format``, when given, must agree with it."""
    fmt = REPORT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"--out {out}: name it *.html for the report or *.zip for its tables as CSV")
    if asked is not None and asked != fmt:
        holds = (
            "one CSV per table into a zip, so name it *.zip" if asked == "csv" else "an HTML page, so name it *.html"
        )
        raise InputError(f"--out {out}: --format {asked} writes {holds}")
    return fmt


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from tqdm import tqdm

    from emolens.analytics_report import collect, render, write_csv_zip
    from emolens.analytics_report.source import StoreSource

    settings = _settings(args)
    try:
        tz = ZoneInfo(args.tz) if args.tz else UTC
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"--tz {args.tz!r} is not a time zone name such as Europe/Berlin") from exc
    since, until = _report_time("--since", args.since, tz), _report_time("--until", args.until, tz)
    out = Path(args.out)
    fmt = _report_format(out, args.format)
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    with _existing_store(settings) as store:
        source = StoreSource(store)
        # rows fetched so far, on stderr only when it is a terminal (as `analyze` does)
        with tqdm(
            desc="querying", unit=" rows", disable=True if args.no_progress else None, file=sys.stderr, leave=False
        ) as bar:
            data = collect(source, since, until, args.by, settings.k_anonymity, tz, progress=bar.update)
    try:
        if fmt == "csv":
            names = write_csv_zip(data, out)
            what = f"{len(names)} CSV tables"
        else:
            out.write_text(render(data, store.name), encoding="utf-8")
            what = "HTML"
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write ({exc.strerror})") from exc
    print(
        f"report: {out} ({what}; {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC by {args.by}, "
        f"k={settings.k_anonymity}, {data.hidden_rows} group-period(s) below k left out)",
        file=sys.stderr,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from emolens.demo import write_demo_clip
    from emolens.stages import JPEG_QUALITY

    out = Path(args.out)
    clip = write_demo_clip(out / "demo.mp4")
    db = out / "emolens.db"
    if db.exists():
        db.unlink()
    print(f"demo clip: {clip}", file=sys.stderr)
    common = ["--db", f"sqlite:///{db}"]
    rc = main(["analyze", str(clip), "--annotate", str(out), "--out", str(out / "faces.jsonl")])
    if rc:
        return rc
    print(f"annotated video: {out / 'demo.annotated.mp4'}, faces: {out / 'faces.jsonl'}", file=sys.stderr)
    rc = main(
        [
            "run",
            "--source",
            str(clip),
            "--camera-id",
            "demo-cam",
            "--zone",
            "lobby",
            "--site",
            "demo",
            "--fps",
            "15",
            "--start",
            "2026-01-01T12:00:00",
            *common,
        ]
    )
    if rc:
        return rc
    # k=1: the demo's only face is its own, so nothing needs hiding.
    print(
        "statistics of the demo, shown with --k 1 (emolens stats hides a minute with fewer than 5 "
        "distinct faces unless told otherwise). The run reads frames as the camera-ingest sends them, "
        f"JPEG quality {JPEG_QUALITY}, so its face and low-quality counts can differ by a few from "
        "the analyze pass over the raw frames:",
        file=sys.stderr,
    )
    return main(["stats", "--camera-id", "demo-cam", "--k", "1", *common])


def cmd_gateway(args: argparse.Namespace) -> int:
    import signal

    from emolens.live import make_live_state
    from emolens.services.gateway import LIVE_TIMEOUT_S, AnalyticsService, build_server, check_address
    from emolens.store import make_store

    settings = _settings(args)
    address = f"{args.host}:{args.port}"
    # before the models load: a refusal should be quick
    check_address(address, tls=bool(settings.tls_cert), auth=bool(settings.tokens_file), insecure=args.insecure)
    store = make_store(settings.db)
    try:
        live = make_live_state(settings.live, timeout_s=LIVE_TIMEOUT_S) if args.live else None
        service = AnalyticsService(settings, store, live)
        server, port = build_server(service, address, insecure=args.insecure, reflection=args.reflection)
    except BaseException:
        store.close()
        raise
    server.start()
    security = "tls" if settings.tls_cert else "plaintext"
    auth = "tokens" if settings.tokens_file else "no auth"
    db = settings.db.split("://")[0]  # the URL may carry a password: the log gets its kind only
    print(
        f"gateway listening on {args.host}:{port} ({security}, {auth}; db {db}, inference {settings.inference})",
        file=sys.stderr,
    )
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=2))
    try:
        server.wait_for_termination()
    finally:
        store.close()
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from emolens.store import SqlStore
    from emolens.store.migrate import current_revision, head_revision

    settings = _settings(args)
    store = SqlStore(settings.db, create=args.action == "upgrade")  # opening it to write upgrades it
    try:
        print(f"{redact_url(settings.db)}: revision {current_revision(store.engine)} (newest {head_revision()})")
    finally:
        store.close()
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(f"emolens.services.{args.service}")
    return int(module.main(args, _settings(args)))


# ---------------------------------------------------------------- developer tools
# Each is a module with its own main(argv); the verb hands it the arguments that follow it.


def _needs(verb: str, exc: ModuleNotFoundError) -> None:
    """A third-party module a tool needs is not installed: one line that says which and how.
    A missing emolens module is our bug, not the user's, and keeps its traceback."""
    if exc.name and exc.name.split(".")[0] != "emolens":
        raise ConfigError(
            f"`emolens {verb}` needs {exc.name!r}, which is not installed here; "
            "install the extras (`make install-dev`, or pip install 'emolens[train,platform]')"
        ) from exc


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        from emolens.bench import main as bench

        return int(bench(args.rest))
    except ModuleNotFoundError as exc:
        _needs("bench", exc)
        raise


def cmd_evaluate(args: argparse.Namespace) -> int:
    try:
        from emolens.evaluation.run import main as evaluate

        return int(evaluate(args.rest))
    except ModuleNotFoundError as exc:
        _needs("evaluate", exc)
        raise


def cmd_dev(args: argparse.Namespace) -> int:
    try:
        from emolens.dev import main as dev

        return int(dev(args.rest))
    except ModuleNotFoundError as exc:
        _needs("dev", exc)
        raise


# ---------------------------------------------------------------- entry point


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emolens")
    except PackageNotFoundError:  # a source tree on sys.path, never installed
        return "unknown"


class _SubParser(argparse.ArgumentParser):
    """Every command takes ``-v`` after its verb too. Its default is SUPPRESS so that a verb
    without it leaves the ``emolens -v`` before the verb standing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.add_help:  # the developer tools (add_help=False) hand every argument to their own parser
            self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE)


_VERBOSE = "log progress events (key=value) to stderr"


_OPEN_TIMEOUT_HELP = (
    "a live source that never opens gives up after this many seconds with an error; once open, drops are "
    "retried forever (EMOLENS_SOURCE_OPEN_TIMEOUT_S, default 30; 0 = retry forever)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emolens", description="Emotion analytics from faces in images and video.")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE)
    parser.add_argument("--version", action="version", version=f"emolens {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SubParser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--inference", help="onnx://PATH or triton://HOST:PORT (EMOLENS_INFERENCE)")
        p.add_argument("--detector", choices=["auto", "blazeface", "blazeface-full", "blazeface-short", "haar"])
        p.add_argument("--preprocess", choices=["none", "auto", "clahe"])
        p.add_argument(
            "--detect-interval",
            type=float,
            metavar="SECONDS",
            help="video: full face detection every SECONDS, faces followed between; 0 = every frame "
            "(EMOLENS_DETECT_INTERVAL, default 0.33)",
        )
        p.add_argument(
            "--min-face-px",
            type=int,
            metavar="PIXELS",
            help="smallest face width the detector looks for; HD frames get BlazeFace over tiles for it, "
            "at a cost (docs/benchmarks.md); 0 = the whole frame only (EMOLENS_MIN_FACE_PX, default 32)",
        )
        p.add_argument(
            "--classify-interval",
            type=float,
            metavar="SECONDS",
            help="video: a followed face is classified again after SECONDS (or when it moves a lot), "
            "keeping its last classification between; 0 = every frame (EMOLENS_CLASSIFY_INTERVAL, default 0.33)",
        )
        p.add_argument(
            "--threads",
            type=int,
            help="ONNX Runtime and BlazeFace threads (EMOLENS_THREADS, default 0 = one per core; BlazeFace at most 4)",
        )

    p = sub.add_parser("analyze", help="faces in images, folders and videos as JSON Lines")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", help="write JSON Lines here instead of stdout")
    p.add_argument(
        "--annotate",
        metavar="DIR",
        help="write annotated images/videos into DIR (made if missing; its folder must exist)",
    )
    p.add_argument("--blur", action="store_true", help="blur faces in annotated output")
    p.add_argument("--fps", type=float, help="sample videos at this rate (default: every frame)")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (they show only when stderr is a terminal)"
    )
    common(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("run", help="the whole platform in one process: one or more sources -> per-minute SQL buckets")
    p.add_argument("--source", help="video file, rtsp/http URL, webcam index or image folder (with --camera-id)")
    p.add_argument("--camera-id")
    p.add_argument("--zone", default="")
    p.add_argument("--site", default="")
    p.add_argument(
        "--camera",
        action="append",
        metavar="id=ID,source=SOURCE[,zone=Z][,site=S]",
        help="one more camera (repeatable); all sources are decoded in parallel and analysed together",
    )
    p.add_argument("--cameras", metavar="FILE", help="cameras from a YAML file: a list of {id, source, zone, site}")
    p.add_argument("--db", help="SQL store URL (default sqlite:///emolens.db, EMOLENS_DB)")
    p.add_argument("--fps", type=float, help="frames per second to analyze (EMOLENS_FPS, default 5)")
    p.add_argument("--start", help="ISO time of the source's first frame (files; default now)")
    p.add_argument("--live", help="live counters: memory:// (default) or redis://HOST:PORT/DB")
    p.add_argument("--open-timeout", type=float, metavar="SECONDS", help=_OPEN_TIMEOUT_HELP)
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("stats", help="statistics: per-minute buckets, or by camera|zone|site per minute|hour|day")
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--camera-id")
    p.add_argument("--zone")
    p.add_argument("--site")
    p.add_argument("--k", type=int, help="hide buckets with fewer distinct faces (EMOLENS_K_ANONYMITY, default 5)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument(
        "--since",
        help="ISO date/time (UTC unless it names a zone); with --until/--by/--every: rollups "
        "(default: 7 days before --until, 1 day with --every minute)",
    )
    p.add_argument("--until", help="ISO date/time, exclusive (default now)")
    p.add_argument("--by", choices=["camera", "zone", "site"], help="group by (default camera)")
    p.add_argument("--every", choices=["minute", "hour", "day"], help="one row per group and period (default hour)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("cameras", help="list the cameras the store knows, with zone and site; or register/move one")
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--set", metavar="CAMERA_ID", help="register this camera, or move it, to --zone and --site")
    p.add_argument("--zone", help="with --set: the camera's zone")
    p.add_argument("--site", help="with --set: the camera's site")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_cameras)

    p = sub.add_parser("retention", help="delete statistics older than the configured ages (docs/analytics.md)")
    p.add_argument("action", choices=["apply"])
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.set_defaults(func=cmd_retention)

    p = sub.add_parser("report", help="a period's statistics as one self-contained HTML report with plots, or CSV")
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--since", required=True, help="start, ISO date or time (in --tz; default UTC)")
    p.add_argument("--until", required=True, help="end, exclusive; the report compares with the period before")
    p.add_argument("--by", choices=["zone", "site", "camera"], default="zone", help="group by (default zone)")
    p.add_argument("--out", required=True, help="report.html, or report.zip for its tables as CSV")
    p.add_argument("--format", choices=["html", "csv"], help="optional: follows --out's suffix (.html, .zip)")
    p.add_argument("--tz", help="time zone of hours of day and weekdays, e.g. Europe/Berlin (default UTC)")
    p.add_argument("--k", type=int, help="hide groups with fewer distinct visitors (EMOLENS_K_ANONYMITY, default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("gateway", help="the partner gRPC API: AnalyzeImage, AnalyzeStream, QueryStats, WatchLive")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--live", help="live-state URL: memory:// or redis://HOST:PORT/DB (enables WatchLive)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS only (EMOLENS_TLS_CERT)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert (EMOLENS_TLS_KEY)")
    p.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (EMOLENS_TLS_CLIENT_CA)")
    p.add_argument("--tokens-file", help="YAML/JSON bearer tokens and scopes (EMOLENS_TOKENS_FILE; docs/api.md)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow plaintext off loopback (only behind a proxy or mesh that encrypts)",
    )
    p.add_argument("--reflection", action="store_true", help="serve gRPC server reflection (off by default)")
    common(p)
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("db", help="database schema: upgrade to the newest migration, or show the current one")
    p.add_argument("action", choices=["upgrade", "current"])
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("ingest", help="service: publish a camera's sampled frames to the bus")
    p.add_argument("--source", required=True)
    p.add_argument("--camera-id", required=True)
    p.add_argument("--zone", default="")
    p.add_argument("--site", default="")
    p.add_argument("--bus", help="kafka://HOST:PORT or memory:// (EMOLENS_BUS)")
    p.add_argument("--fps", type=float)
    p.add_argument("--start", help="ISO time of the first frame (files; default now)")
    p.add_argument("--seq-start", type=int, help="first frame sequence number (default: microseconds now)")
    p.add_argument("--open-timeout", type=float, metavar="SECONDS", help=_OPEN_TIMEOUT_HELP)
    p.set_defaults(func=cmd_service, service="ingest")

    p = sub.add_parser("detect", help="service: frames -> observations")
    p.add_argument("--bus", help="kafka://HOST:PORT (EMOLENS_BUS)")
    p.add_argument("--idle-exit", type=float, help="exit after this many idle seconds (batch jobs, tests)")
    common(p)
    p.set_defaults(func=cmd_service, service="detector")

    p = sub.add_parser("aggregate", help="service: observations -> SQL buckets and live counters")
    p.add_argument("--bus", help="kafka://HOST:PORT (EMOLENS_BUS)")
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--live", help="memory:// or redis://HOST:PORT/DB (EMOLENS_LIVE)")
    p.add_argument("--idle-exit", type=float, help="exit after this many idle seconds (batch jobs, tests)")
    p.set_defaults(func=cmd_service, service="aggregator")

    p = sub.add_parser("demo", help="build a demo clip, run it end to end, print the statistics")
    p.add_argument("--out", default="demo", help="folder for the clip, faces.jsonl, annotated video and database")
    p.set_defaults(func=cmd_demo)

    # Developer tools: every argument after the verb (--help included) goes to the tool's own parser.
    for name, func, text in (
        ("bench", cmd_bench, "developer tool: benchmarks -> docs/benchmarks.md (`emolens bench --help`)"),
        ("evaluate", cmd_evaluate, "developer tool: evaluate the models -> docs/model-card.md (needs the train extra)"),
        ("dev", cmd_dev, "developer tool: install|up|down the real servers on loopback (`emolens dev --help`)"),
    ):
        p = sub.add_parser(name, help=text, add_help=False)
        p.set_defaults(func=func, passthrough=True)
    return parser


def _check_flags(args: argparse.Namespace) -> None:
    """Values argparse's types let through but no command can use: refused in one line, before
    a camera id no store holds is silently dead-lettered, or gRPC binds port -5 as 65531."""
    for flag in ("camera_id", "zone", "site"):
        value = getattr(args, flag, None)
        shortest = 1 if flag == "camera_id" else 0
        if value is not None and not shortest <= len(value) <= MAX_ID_LENGTH:
            name = flag.replace("_", "-")
            raise ConfigError(f"--{name} must be {shortest}-{MAX_ID_LENGTH} characters, got {len(value)}")
    seq = getattr(args, "seq_start", None)
    if seq is not None and not 0 <= seq < 1 << 63:
        raise ConfigError(f"--seq-start {seq} is outside 0..2^63")
    port = getattr(args, "port", None)
    if port is not None and not 0 <= port < 65536:
        raise ConfigError(f"--port {port} is not a port number (0-65535; 0 picks a free one)")
    idle = getattr(args, "idle_exit", None)
    if idle is not None and not idle > 0:
        raise ConfigError(f"--idle-exit {idle} must be a positive number of seconds")


def _configure_logging(args: argparse.Namespace) -> None:
    """EMOLENS_LOG_LEVEL, else INFO for the services (their events are their record) and
    WARNING for the tools, whose output is their answer; ``-v`` shows INFO at least."""
    settings = _settings(args)
    level = settings.log_level.upper() or ("INFO" if args.command in SERVICE_COMMANDS else "WARNING")
    if args.verbose and logging.getLevelName(level) > logging.INFO:
        level = "INFO"
    configure_logging(level, settings.log_format)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    try:
        _configure_logging(args)
        _check_flags(args)
        code = int(args.func(args))
        sys.stdout.flush()  # a write that fails fails here, not in Python's exit ("Exception ignored")
        return code
    except EmolensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``emolens stats | head``): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # a write that failed (a full disk, a file system gone read-only): whatever it was
        # writing, one line; what stdout still buffers is dropped, so the exit is quiet too
        where = exc.filename or "standard output"
        print(f"error: cannot write to {where} ({exc.strerror or exc})", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
