"""`emolens analyze`: faces in images, folders and videos as JSON Lines (one record per face)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from emolens import logs
from emolens.cli.options import add_model_options, settings_from
from emolens.errors import EmolensError, InputError
from emolens.settings import Settings, redact_url

log = logging.getLogger("emolens")

HELP = "faces in images, folders and videos as JSON Lines"


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    add_model_options(p)


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


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
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
