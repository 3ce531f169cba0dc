"""Benchmarks (never timed tests): throughput measured side by side in one run.

    emolens bench                 # every benchmark (starts the servers the last four need)
    emolens bench --only onnx     # one of them (`emolens bench --help` lists them and what each measures)

One table, :data:`BENCHMARKS`, holds every benchmark: its name, what it measures, how it runs
and how its section of the page renders; :func:`render` writes the page from it.

Writes docs/benchmarks.md and docs/benchmarks.json under the current directory (``--out``
chooses another place). Measures the models in the package unless ``--repo`` names another
repository; the precision bench needs the ``train`` extra, the last three the ``platform``
extra and the servers of :mod:`emolens_tools.dev`. Absolute numbers on shared machines are noisy:
compare rows of the same run, and rerun before drawing conclusions.
"""

# Long module: one table of ten benchmarks, each a measurement and its section of the page kept
# side by side in the table's order; the page is one reader's document and the table its outline.
# A benchmark that grows a helper of its own is the one to move out first.
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emolens.contract import INPUT_NAME, default_repository
from emolens.geometry import holds
from emolens.inference import MODELS
from emolens.inference.onnx import OnnxClassifier
from emolens.pipeline import Analyzer
from emolens.settings import Settings
from emolens.tables import markdown_table
from emolens_tools import dev

if TYPE_CHECKING:  # both need extras the other benchmarks do without
    from emolens.inference.triton import TritonClassifier
    from emolens.observations import FrameObservations


def _run_for(run: Callable[[], object], batch: int, seconds: float) -> tuple[int, float]:
    """Call ``run`` (one batch of ``batch`` faces) for ``seconds``: (faces done, seconds spent)."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run()
        n += batch
    return n, time.perf_counter() - t0


def bench_onnx(repo: Path, seconds: float) -> dict[str, dict[str, float]]:
    """Faces/s per model for batch sizes 1, 8, 64 (ONNX Runtime, default threads)."""
    clf = OnnxClassifier(repo)
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, float]] = {}
    for model in MODELS:
        size = clf.info(model).size
        row = {}
        for batch in (1, 8, 64):
            x = rng.uniform(0, 255, (batch, 1, size, size)).astype(np.float32)
            for _ in range(3):
                clf.predict(model, x)
            n, spent = _run_for(partial(clf.predict, model, x), batch, seconds)
            row[f"batch{batch}"] = n / spent
        out[model] = row
    return out


def bench_precision(repo: Path, seconds: float) -> dict[str, dict[str, float]]:
    """The shipped int8 graph against the fp32 graph of the same networks (re-exported from
    pytorch.pt; needs the train extra), batch 64, measured in alternating rounds."""
    import onnxruntime as ort

    from emolens.contract import load_model_info, training_folder
    from emolens_tools.training.export import export, load_pytorch
    from emolens_tools.training.tasks import TASKS

    rng = np.random.default_rng(0)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            spec = TASKS[model]
            sample = rng.integers(0, 256, (8, spec.size, spec.size), dtype=np.uint8)
            crop_box = load_model_info(repo, model).crop_box
            export(
                load_pytorch(training_folder(repo, model), spec),
                spec,
                Path(tmp),
                sample,
                crop_box,
                {},
                sample,
                quantize=False,
            )
            sessions = {
                name: ort.InferenceSession(str(path / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
                for name, path in (("int8", repo), ("fp32", Path(tmp)))
            }
            x = rng.uniform(0, 255, (64, 1, spec.size, spec.size)).astype(np.float32)
            counts = {name: 0.0 for name in sessions}
            spent = {name: 0.0 for name in sessions}
            for _ in range(3):
                for name, session in sessions.items():
                    session.run(None, {INPUT_NAME: x})
                    n, dt = _run_for(partial(session.run, None, {INPUT_NAME: x}), 64, seconds / 3)
                    counts[name] += n
                    spent[name] += dt
            row = {f"{name}_batch64": counts[name] / spent[name] for name in sessions}
            row["speedup"] = row["int8_batch64"] / row["fp32_batch64"]
            out[model] = row
    return out


def _analyze_clip(analyzer: Analyzer, clip: Path) -> tuple[int, int, float, float]:
    """One pass of ``analyzer`` over ``clip`` as `emolens analyze` does it: (frames, faces,
    wall seconds, seconds spent decoding the video)."""
    from emolens.media import iter_video

    analyzer.reset()
    frames = faces = 0
    t_decode = 0.0
    t0 = time.perf_counter()
    t_last = t0
    for frame in iter_video(str(clip)):
        t_decode += time.perf_counter() - t_last
        faces += len(analyzer.analyze(frame.image, frame.timestamp))
        frames += 1
        t_last = time.perf_counter()
    return frames, faces, time.perf_counter() - t0, t_decode


def bench_analyze(repo: Path, seconds_of_video: float, rounds: int = 3) -> dict[str, object]:
    """`emolens analyze`'s per-frame work on the 640x480 demo clip (1-3 faces a frame):
    decode + detect + align + classify + track, frames/s and per-stage ms; with the default
    detection interval and with full detection on every frame (``detect_interval=0``), in
    alternating rounds of the same run."""
    from emolens.demo import write_demo_clip
    from emolens.pipeline import StageTimes

    settings = Settings.from_env(inference=f"onnx://{repo}")
    modes = {"interval": settings, "full": settings.with_(detect_interval=0.0)}
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_demo_clip(Path(tmp) / "bench.mp4", seconds=seconds_of_video, fps=15)
        analyzers = {name: Analyzer(s, track=True) for name, s in modes.items()}
        totals = {name: [0, 0, 0.0, 0.0] for name in modes}
        for analyzer in analyzers.values():
            _analyze_clip(analyzer, clip)  # warm-up
            analyzer.times = StageTimes()
            if analyzer.follower is not None:
                analyzer.follower.passes.clear()
        for _ in range(rounds):
            for name, analyzer in analyzers.items():
                for i, v in enumerate(_analyze_clip(analyzer, clip)):
                    totals[name][i] += v
        for name, analyzer in analyzers.items():
            frames, faces, wall, t_decode = totals[name]
            stages = analyzer.times.per_frame_ms()
            stages["video decode"] = 1000 * t_decode / frames
            follower = analyzer.follower
            out[name] = {
                "frames": int(frames) // rounds,
                "faces_per_frame": faces / frames,
                "frames_per_s": frames / wall,
                "stage_ms_per_frame": stages,
                "detector": (follower or analyzer.detector).name,
                "detect_interval": modes[name].detect_interval,
                "passes": dict(follower.passes) if follower is not None else {"full": int(frames)},
            }
    result: dict[str, object] = dict(out["interval"])
    result["full_detection"] = out["full"]
    result["speedup"] = float(out["interval"]["frames_per_s"]) / float(out["full"]["frames_per_s"])  # type: ignore[arg-type]
    return result


def bench_small_faces(repo: Path, rounds: int = 4) -> dict[str, object]:
    """Faces at CCTV distance, side by side in one run: the 640x480 demo clip at the default
    ``min_face_px`` against ``min_face_px=0`` (the whole frame only, as before tiles); one
    1080p camera at 30 fps with 40-72 px faces at ``min_face_px`` 32 and 48; and 8 cameras of
    720p sampled at 5 fps in one process (``emolens run``'s shape)."""
    import shutil
    from datetime import UTC, datetime

    from emolens.demo import small_face_frames, write_clip, write_demo_clip
    from emolens.inference import make_classifier
    from emolens.pipeline import StageTimes
    from emolens.runner import CameraSource, run_cameras
    from emolens.store import Camera, SqlStore

    base = Settings.from_env(inference=f"onnx://{repo}")
    classifier = make_classifier(base.inference, base.threads)
    out: dict[str, object] = {"min_face_px_default": base.min_face_px}
    with tempfile.TemporaryDirectory() as tmp:
        demo = write_demo_clip(Path(tmp) / "demo.mp4", seconds=12.0, fps=15)
        hd = write_clip(Path(tmp) / "hd.mp4", small_face_frames((1920, 1080), 6.0, 30), 30)
        cases = {
            "demo_default": (demo, base),
            "demo_whole_frame": (demo, base.with_(min_face_px=0)),
            "hd1080_32px": (hd, base.with_(min_face_px=32)),
            "hd1080_48px": (hd, base.with_(min_face_px=48)),
            "hd1080_whole_frame": (hd, base.with_(min_face_px=0)),
        }
        analyzers = {k: Analyzer(s, classifier=classifier, track=True) for k, (_, s) in cases.items()}
        totals = {k: [0.0, 0.0, 0.0] for k in cases}
        for k, analyzer in analyzers.items():
            _analyze_clip(analyzer, cases[k][0])  # warm-up
            analyzer.times = StageTimes()
        for _ in range(rounds):  # alternating, so load on the machine falls on every case alike
            for k, analyzer in analyzers.items():
                n_frames, n_faces, wall, _decode = _analyze_clip(analyzer, cases[k][0])
                totals[k][0] += n_frames
                totals[k][1] += n_faces
                totals[k][2] += wall
        for k, (frame_sum, face_sum, wall_sum) in totals.items():
            out[k] = {"frames_per_s": frame_sum / wall_sum, "faces_per_frame": face_sum / frame_sum}
            print(json.dumps({k: out[k]}), file=sys.stderr)
        out["demo_ratio"] = float(out["demo_default"]["frames_per_s"]) / float(  # type: ignore[index]
            out["demo_whole_frame"]["frames_per_s"]  # type: ignore[index]
        )
        cam = write_clip(Path(tmp) / "cam-0.mp4", small_face_frames((1280, 720), 12.0, 15), 15)
        settings = base.with_(fps=5.0)
        sources = []
        for i in range(8):
            path = Path(tmp) / f"cam-{i}.mp4"
            if not path.exists():
                shutil.copyfile(cam, path)
            sources.append(CameraSource(str(path), Camera(f"cam-{i}", "zone", "bench")))
        whole = settings.with_(min_face_px=0)
        for key, run_settings in (("cameras720_8", settings), ("cameras720_8_whole_frame", whole)):
            store = SqlStore(f"sqlite:///{tmp}/{key}.db")
            summary = run_cameras(
                sources, store, run_settings, start=datetime(2026, 6, 1, 9, tzinfo=UTC), classifier=classifier
            )
            store.close()
            rate = summary.frames / summary.seconds
            out[key] = {"frames": summary.frames, "frames_per_s": rate, "cameras_at_5fps": rate / 5.0}
            print(json.dumps({key: out[key]}), file=sys.stderr)
    return out


def _face_scores(
    found: list[list[tuple[tuple[float, float, float, float], int]]], truth: list[tuple[float, float, int]]
) -> dict[str, float]:
    """Faces found and accuracy on pasted test faces, the model card's rule: a face is found when
    a box holds the pasted face's centre; its label is that box's top emotion."""
    hit = correct = 0
    for faces, (cx, cy, label) in zip(found, truth, strict=True):
        labels = [emotion for box, emotion in faces if holds(box, cx, cy)]
        if labels:
            hit += 1
            correct += labels[0] == label
    n = max(len(truth), 1)
    return {"found": hit / n, "accuracy": correct / n, "accuracy_on_found": correct / max(hit, 1)}


def bench_peers(repo: Path, seconds_of_video: float = 12.0, rounds: int = 3, n_faces: int = 300) -> dict[str, object]:
    """emolens beside the `fer` package's own pipeline (Haar cascade + its TFLite model, in its
    own venv, a subprocess: emolens_tools.peers), in alternating rounds of one run: the 640x480 demo
    clip at 15 fps (`emolens analyze`'s work, decoding included; fer's ``detect_emotions`` per
    frame) and ``n_faces`` FER2013 test faces pasted into frames (emolens_tools.testframes): frames/s,
    faces found, accuracy."""
    from emolens.demo import write_demo_clip
    from emolens.results import EMOTIONS
    from emolens_tools.peers import FER_VERSION, FerPeer, install_fer
    from emolens_tools.testframes import pasted_faces

    settings = Settings.from_env(inference=f"onnx://{repo}")
    video = Analyzer(settings, track=True)
    stills = Analyzer(settings, classifier=video.classifier)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_demo_clip(Path(tmp) / "peers.mp4", seconds=seconds_of_video, fps=15)
        pasted = list(pasted_faces("emotion", n_faces))
        npz = Path(tmp) / "faces.npz"
        np.savez(npz, frames=np.stack([p.image for p in pasted]))
        truth = [(p.centre[0], p.centre[1], p.label) for p in pasted]
        clip_runs: dict[str, list[float]] = {"emolens": [0.0, 0.0, 0.0], "fer": [0.0, 0.0, 0.0]}
        with FerPeer(install_fer()) as peer:
            _analyze_clip(video, clip)  # warm-up (the peer warmed up when it started)
            peer.clip(clip)
            for _ in range(rounds):
                frames, faces, wall, _decode = _analyze_clip(video, clip)
                for i, v in enumerate((float(frames), float(faces), wall)):
                    clip_runs["emolens"][i] += v
                answer = peer.clip(clip)
                for i, key in enumerate(("frames", "faces", "seconds")):
                    clip_runs["fer"][i] += answer[key]
            t0 = time.perf_counter()
            ours = []
            for p in pasted:
                stills.reset()
                ours.append([(f.box, EMOTIONS.index(f.label)) for f in stills.analyze(p.image)])
            our_seconds = time.perf_counter() - t0
            answer = peer.faces(npz)
            theirs = [
                [(tuple(f["box"]), int(np.argmax([f["emotions"][e] for e in EMOTIONS]))) for f in frame]
                for frame in answer["faces"]
            ]
            their_seconds = float(answer["seconds"])
    out: dict[str, object] = {
        "rounds": rounds,
        "clip_frames": int(clip_runs["emolens"][0]) // rounds,
        "test_faces": len(pasted),
        "fer_version": FER_VERSION,
    }
    for name, (n_frames, faces_seen, clip_seconds), found, faces_seconds in (
        ("emolens", clip_runs["emolens"], ours, our_seconds),
        ("fer", clip_runs["fer"], theirs, their_seconds),
    ):
        out[name] = {
            "clip_frames_per_s": n_frames / clip_seconds,
            "clip_faces_per_frame": faces_seen / n_frames,
            "faces_frames_per_s": len(pasted) / faces_seconds,
            **_face_scores(found, truth),
        }
    ours_row, theirs_row = out["emolens"], out["fer"]
    assert isinstance(ours_row, dict) and isinstance(theirs_row, dict)
    out["detector"] = (video.follower or video.detector).name
    out["ratio"] = ours_row["clip_frames_per_s"] / theirs_row["clip_frames_per_s"]
    return out


def bench_cameras(
    repo: Path, counts: tuple[int, ...] = (1, 2, 4, 8, 16, 24), seconds_of_video: float = 12.0
) -> dict[str, object]:
    """Cameras per box: ``emolens run`` (the embedded shape: a decoding thread per source, one
    detector stepping over all cameras, one classifier batch per tick, SQLite) on N 640x480
    recordings at once, each sampled at 5 fps; recordings are read as fast as the detector
    takes them, so frames/s over all cameras / 5 is the number of live 5 fps cameras it keeps
    up with."""
    import shutil
    from datetime import UTC, datetime

    from emolens.demo import write_demo_clip
    from emolens.inference import make_classifier
    from emolens.runner import CameraSource, run_cameras
    from emolens.store import Camera, SqlStore

    fps = 5.0
    settings = Settings.from_env(inference=f"onnx://{repo}", fps=fps)
    classifier = make_classifier(settings.inference, settings.threads)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_demo_clip(Path(tmp) / "cam-0.mp4", seconds=seconds_of_video, fps=15)
        for n in counts:
            sources = []
            for i in range(n):
                path = Path(tmp) / f"cam-{i}.mp4"
                if not path.exists():
                    shutil.copyfile(clip, path)
                sources.append(CameraSource(str(path), Camera(f"cam-{i}", f"zone-{i % 2}", "bench")))
            store = SqlStore(f"sqlite:///{tmp}/cameras-{n}.db")
            summary = run_cameras(
                sources, store, settings, start=datetime(2026, 6, 1, 9, tzinfo=UTC), classifier=classifier
            )
            store.close()
            rate = summary.frames / summary.seconds
            runs.append(
                {
                    "cameras": n,
                    "frames": summary.frames,
                    "seconds": summary.seconds,
                    "frames_per_s": rate,
                    "cameras_at_5fps": rate / fps,
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr)
    # held: the most cameras of a run that kept up with all of them at 5 fps
    kept_up = [int(r["cameras"]) for r in runs if float(r["cameras_at_5fps"]) >= int(r["cameras"])]
    return {"fps": fps, "cpus": os.cpu_count(), "runs": runs, "held": max(kept_up, default=0)}


def _async_rate(clf: TritonClassifier, x: np.ndarray, total: int, in_flight: int) -> float:
    """Requests/s with ``in_flight`` one-face requests outstanding at all times, sent with the
    client's async_infer from one thread (64 Python threads would measure the GIL, not Triton)."""
    import threading

    slots = threading.Semaphore(in_flight)
    finished = threading.Event()
    count = [0]
    lock = threading.Lock()

    def done(result: object, error: object) -> None:
        if error is not None:
            raise RuntimeError(error)
        slots.release()
        with lock:
            count[0] += 1
            if count[0] == total:
                finished.set()

    inputs, outputs = clf.request(x)
    t0 = time.perf_counter()
    for _ in range(total):
        slots.acquire()
        clf.client.async_infer("emotion", inputs, done, outputs=outputs)
    finished.wait(300)
    return total / (time.perf_counter() - t0)


def bench_triton(repo: Path, workdir: Path, requests: int = 768) -> dict[str, float]:
    """One-face requests to Triton: sequential batch-1 calls vs 64 requests in flight (the
    server's dynamic batcher merges them). Same server, same model, same run."""
    from emolens.inference.triton import TritonClassifier
    from emolens.inference.triton_repo import write_cpu_repository

    svc = dev.start_triton(
        workdir / "triton", write_cpu_repository(repo, workdir / "triton-repo"), dev.install_triton()
    )
    try:
        clf = TritonClassifier(svc.url.removeprefix("triton://"))
        x = np.random.default_rng(0).uniform(0, 255, (1, 1, 48, 48)).astype(np.float32)
        for _ in range(20):
            clf.predict("emotion", x)
        t0 = time.perf_counter()
        for _ in range(requests):
            clf.predict("emotion", x)
        sequential = requests / (time.perf_counter() - t0)
        _async_rate(clf, x, total=256, in_flight=64)  # warm the batcher and the backend's buffers
        before = clf.statistics("emotion")["model_stats"][0]
        concurrent = _async_rate(clf, x, total=requests * 6, in_flight=64)
        after = clf.statistics("emotion")["model_stats"][0]
        old = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in before.get("batch_stats", [])}
        new = {
            int(b["batch_size"]): int(b["compute_infer"]["count"]) - old.get(int(b["batch_size"]), 0)
            for b in after.get("batch_stats", [])
        }
        executions = sum(new.values())
        return {
            "sequential_batch1_per_s": sequential,
            "concurrent64_per_s": concurrent,
            "speedup": concurrent / sequential,
            "mean_batch": sum(k * v for k, v in new.items()) / max(executions, 1),
            "max_batch": max((k for k, v in new.items() if v), default=0),
        }
    finally:
        dev.stop(svc)


def _synthetic_frames(n_frames: int, faces: int, camera: str, seq0: int) -> list[FrameObservations]:
    from datetime import UTC, datetime, timedelta

    from emolens.observations import FrameObservations
    from emolens.results import EMOTIONS, FaceResult

    rng = np.random.default_rng(0)
    t0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    out = []
    for i in range(n_frames):
        fs = []
        for j in range(faces):
            p = rng.dirichlet(np.ones(len(EMOTIONS)))
            fs.append(
                FaceResult(
                    (0, 0, 50, 50),
                    [(0.0, 0.0)] * 6,
                    0.9,
                    0.8,
                    False,
                    float(rng.uniform()),
                    dict(zip(EMOTIONS, p.tolist(), strict=True)),
                    track_id=j + 1,
                )
            )
        out.append(FrameObservations(camera, seq0 + i, t0 + timedelta(seconds=i / 5), fs))
    return out


def bench_aggregator(workdir: Path, n_frames: int = 4000, faces: int = 5) -> dict[str, float]:
    """The aggregator's loop (protobuf decode, one PostgreSQL transaction per batch, commit)
    over pre-published observations on the in-process bus, into a real PostgreSQL."""
    from emolens.bus import OBSERVATIONS_TOPIC, MemoryBus
    from emolens.stages import Aggregator, drain
    from emolens.store import Camera, SqlStore
    from emolens.wire import observations_to_pb

    svc = dev.start_postgres(workdir / "pg")
    try:
        store = SqlStore(svc.url)
        store.ensure_camera(Camera("bench-cam"))  # the aggregator stores declared cameras only
        bus = MemoryBus()
        for fr in _synthetic_frames(n_frames, faces, "bench-cam", 1):
            bus.publish(OBSERVATIONS_TOPIC, fr.camera_id, observations_to_pb(fr).SerializeToString())
        agg = Aggregator(bus, store, None)
        t0 = time.perf_counter()
        handled = drain(agg, idle_s=0.2, timeout_s=0.05)
        seconds = time.perf_counter() - t0 - 0.2  # the idle wait that ends the drain is not work
        stored = sum(b.faces for b in store.buckets(camera_id="bench-cam"))
        store.close()
        assert handled == n_frames and stored == n_frames * faces
        return {
            "frames": n_frames,
            "faces_per_frame": faces,
            "frames_per_s": n_frames / seconds,
            "observations_per_s": n_frames * faces / seconds,
        }
    finally:
        dev.stop(svc)


def bench_e2e(repo: Path, workdir: Path, seconds_of_video: float = 12.0) -> dict[str, float]:
    """ingest -> Kafka -> detect (Triton) -> Kafka -> aggregate (PostgreSQL, Redis), all real
    servers on loopback, the three stages in this process's threads; frames/s from the first
    published frame to the last committed bucket."""
    import threading
    from datetime import UTC, datetime

    from emolens.bus import make_bus
    from emolens.demo import write_demo_clip
    from emolens.inference.triton import TritonClassifier
    from emolens.inference.triton_repo import write_cpu_repository
    from emolens.live import make_live_state
    from emolens.stages import Aggregator, Detector, Ingest
    from emolens.store import Camera, SqlStore

    services: list[dev.Service] = []
    try:
        pg = dev.start_postgres(workdir / "pg-e2e")
        services.append(pg)
        redis = dev.start_redis(workdir / "redis")
        services.append(redis)
        kafka = dev.start_kafka(workdir / "kafka")
        services.append(kafka)
        triton = dev.start_triton(
            workdir / "triton-e2e", write_cpu_repository(repo, workdir / "tr"), dev.install_triton()
        )
        services.append(triton)
        clip = write_demo_clip(workdir / "e2e.mp4", seconds=seconds_of_video, fps=15)
        settings = Settings.from_env(fps=15, bus=kafka.url, db=pg.url, live=redis.url, inference=triton.url)
        bus = make_bus(kafka.url)
        store = SqlStore(pg.url)
        detector = Detector(bus, settings, TritonClassifier(triton.url.removeprefix("triton://")))
        aggregator = Aggregator(bus, store, make_live_state(redis.url))
        done = threading.Event()
        published: list[int] = []

        def run_ingest() -> None:
            ingest = Ingest(bus, Camera("e2e"), settings, 1)
            ingest.declare(store)  # as `emolens ingest --db` does
            published.append(ingest.run(str(clip), datetime(2026, 6, 1, tzinfo=UTC)))

        def run_aggregator() -> None:
            while not done.is_set():
                aggregator.step(0.2)

        agg_thread = threading.Thread(target=run_aggregator)
        agg_thread.start()
        t0 = time.perf_counter()
        ingest_thread = threading.Thread(target=run_ingest)
        ingest_thread.start()
        expected = int(seconds_of_video * 15)
        while sum(b.frames for b in store.buckets(camera_id="e2e")) < expected and time.perf_counter() - t0 < 600:
            detector.step(0.2)
        wall = time.perf_counter() - t0
        done.set()
        agg_thread.join()
        ingest_thread.join()
        frames = sum(b.frames for b in store.buckets(camera_id="e2e"))
        store.close()
        bus.close()
        return {"frames": frames, "frames_per_s": frames / wall, "seconds": wall}
    finally:
        for svc in reversed(services):
            dev.stop(svc)


_TABLE_SIZES = (
    "SELECT coalesce(p.relname, c.relname), sum(pg_total_relation_size(c.oid))::bigint "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent "
    "WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY 1"
)


def _best(run: Callable[[], object]) -> float:
    """The fastest of three calls of ``run``, in seconds."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def _table_sizes(store: Any) -> dict[str, int]:
    """Bytes per table (partitions counted in their parent), after VACUUM ANALYZE."""
    from sqlalchemy import text

    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
        return dict(conn.execute(text(_TABLE_SIZES)).all())


def _time_queries(store: Any, start: Any, until: Any) -> dict[str, float]:
    """Best of 3 of the queries QueryStats and the report run, all pages."""
    from emolens.analytics import query_all, query_stats

    def whole(by: str, every: str) -> Callable[[], object]:
        return partial(query_all, store, start, until, by=by, every=every, k=5, page_size=10_000)

    return {
        "site_by_day_s": _best(partial(query_stats, store, start, until, by="site", every="day", site="site-00", k=5)),
        "month_sites_by_day_s": _best(whole("site", "day")),
        "month_zones_by_hour_s": _best(whole("zone", "hour")),
        "month_cameras_by_day_s": _best(whole("camera", "day")),
    }


def _time_report(url: str, start: Any, until: Any, html: Path) -> tuple[float, int]:
    """`emolens report` itself, as a user runs it (a new process, imports included): the period by
    hour and by day, the previous period by day, the dwell bins, rendered to one HTML file; best
    of 3 seconds and the file's bytes."""
    argv = [sys.executable, "-m", "emolens", "report", "--db", url, "--since", start.isoformat()]
    argv += ["--until", until.isoformat(), "--by", "zone", "--out", str(html), "--no-progress"]
    seconds = _best(partial(subprocess.run, argv, check=True, capture_output=True))
    size = html.stat().st_size
    html.unlink()
    return seconds, size


def _analytics_run(admin: Any, server_url: str, workdir: Path, cameras: int, n_days: int) -> dict[str, object]:
    """One size of the analytics bench in a fresh database, dropped afterwards."""
    from datetime import datetime, timedelta

    from sqlalchemy.engine import make_url

    from emolens.store import SqlStore
    from emolens_tools.synthetic import generate

    name = f"emolens_analytics_{n_days}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    store = SqlStore(url)
    start = datetime(2026, 1, 5)  # a Monday
    gen = generate(store, cameras, n_days, start)
    sizes = _table_sizes(store)
    until = start + timedelta(days=n_days)
    timings = _time_queries(store, start, until)
    timings["report_s"], report_bytes = _time_report(url, start, until, workdir / f"report-{n_days}.html")
    _explain_zones_by_hour(store, start, until)
    store.close()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name}")
    camera_days = cameras * n_days
    return {
        "days": n_days,
        "visitors": gen.visitors,
        "generate_s": round(gen.seconds, 1),
        "bytes_per_camera_day": round(sum(sizes.values()) / camera_days),
        "report_bytes": report_bytes,
        "bytes_per_camera_day_by_table": {t: round(b / camera_days) for t, b in sorted(sizes.items())},
        **{k: round(v, 3) for k, v in timings.items()},
    }


def bench_analytics(workdir: Path, cameras: int = 200, days: tuple[int, ...] = (7, 30)) -> dict[str, object]:
    """Statistics at city scale on PostgreSQL: ``cameras`` x each of ``days`` generated (one
    fresh database each) through the aggregator's rollup code, then the queries QueryStats and
    the report run, timed (best of 3), and the store's size per camera-day."""
    from sqlalchemy import create_engine

    svc = dev.start_postgres(workdir / "pg-analytics")
    try:
        admin = create_engine(svc.url, isolation_level="AUTOCOMMIT")
        runs = [_analytics_run(admin, svc.url, workdir, cameras, n_days) for n_days in days]
        admin.dispose()
    finally:
        dev.stop(svc)
    return {"cameras": cameras, "runs": runs}


def _explain_zones_by_hour(store: Any, since: Any, until: Any) -> None:
    """EXPLAIN ANALYZE of the first page's query of "all zones by hour", on stderr: where the
    time of the biggest query goes (scan, sort, spills)."""
    from sqlalchemy import select

    from emolens.analytics import MAX_PAGE_SIZE
    from emolens.store.stats import grouped

    window = grouped("zone", "hour", since, until).subquery()
    q = select(window).order_by(window.c.period_start, window.c.site, window.c.zone).limit(MAX_PAGE_SIZE + 1)
    sql = str(q.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql).scalars().all()
    print(f"EXPLAIN ANALYZE zones by hour, {since} to {until}:", *plan, sep="\n", file=sys.stderr)


NOTES_BEGIN = "<!-- notes: {key} (written by hand; emolens bench keeps this block when it rewrites the page) -->"
NOTES_END = "<!-- /notes: {key} -->"
_NOTES = re.compile(r"<!-- notes: (\w+) [^\n]*-->\n(.*?)\n<!-- /notes: \1 -->", re.S)


def read_notes(page: str) -> dict[str, str]:
    """The hand-written notes blocks of a rendered page, by section (see :func:`render`).

    >>> read_notes(render({"machine": "m", "e2e": {"frames_per_s": 1, "frames": 1, "seconds": 1}}, {"e2e": "why"}))
    {'e2e': 'why'}
    """
    return {m.group(1): m.group(2) for m in _NOTES.finditer(page)}


def _notes(notes: dict[str, str], key: str) -> list[str]:
    text = notes.get(key, "").strip("\n")
    return [NOTES_BEGIN.format(key=key), text, NOTES_END.format(key=key), ""] if text else []


def _section_onnx(onnx: dict[str, Any]) -> list[str]:
    return [
        "## ONNX Runtime throughput per model (faces/s, CPU)",
        "",
        "Goal: >= 500 faces/s per model at batch 64 (real time needs about 150: 30 fps, a few faces a frame).",
        "",
        markdown_table(
            ["model", "batch 1", "batch 8", "batch 64"],
            [[m, *(f"{row[f'batch{b}']:.0f}" for b in (1, 8, 64))] for m, row in onnx.items()],
        ),
        "",
    ]


def _section_precision(prec: dict[str, Any]) -> list[str]:
    return [
        "## int8 against fp32 (same networks, batch 64, faces/s, alternating rounds)",
        "",
        markdown_table(
            ["model", "fp32", "int8 (shipped)", "speed-up"],
            [
                [m, f"{row['fp32_batch64']:.0f}", f"{row['int8_batch64']:.0f}", f"{row['speedup']:.2f}x"]
                for m, row in prec.items()
            ],
        ),
        "",
    ]


def _section_analyze(a: dict[str, Any]) -> list[str]:
    f = a.get("full_detection", {})
    return [
        "## `emolens analyze` on a 640x480 video",
        "",
        f"Demo clip (astronaut photo, 1-3 faces a frame, {a['faces_per_frame']:.2f} on average), every frame",
        f"at 15 fps, tracking on, detector `{a['detector']}`: the full detector every {a.get('detect_interval')} s",
        "and faces followed between (docs/architecture.md, Detection), against full detection on",
        "every frame, in alternating rounds of the same run. Goal: >= 60 frames/s.",
        "",
        f"**{a['frames_per_s']:.1f} frames/s** with the interval, {f.get('frames_per_s', 0.0):.1f} with full",
        f"detection on every frame (**{a.get('speedup', 0.0):.2f}x**), over {a['frames']} frames a round; faces a",
        f"frame {a['faces_per_frame']:.3f} against {f.get('faces_per_frame', 0.0):.3f}.",
        f"Passes of the interval run: {a.get('passes')}.",
        "",
        markdown_table(
            ["stage", "ms per frame (interval)", "ms per frame (full every frame)"],
            [
                [s, f"{ms:.2f}", f"{f.get('stage_ms_per_frame', {}).get(s, 0.0):.2f}"]
                for s, ms in a["stage_ms_per_frame"].items()
            ],
        ),
        "",
    ]


def _section_peers(pr: dict[str, Any]) -> list[str]:
    return [
        "## Peers side by side: the `fer` package",
        "",
        f"`fer` {pr.get('fer_version', '')} with its defaults (`FER()`: OpenCV's Haar cascade, its quantised",
        "TFLite emotion model, both shipped in the package) in its own venv, a subprocess (`emolens_tools.peers`;",
        "build the venv with `emolens dev peers`), against emolens with its defaults (detector",
        f"`{pr['detector']}`), in {pr['rounds']} alternating rounds of one run on the same",
        f"640x480 demo clip at 15 fps ({pr['clip_frames']} frames, decoding included), and on the same",
        f"{pr['test_faces']} FER2013 test faces pasted at 192 px into frames over clutter (`emolens_tools.testframes`;",
        "a face is found when a box holds its centre, its label is that box's top emotion; still images, so",
        "emolens runs its full detector on each). Goals: emolens >= 5x fer's frames/s and >= 60 frames/s.",
        "",
        markdown_table(
            [
                "pipeline",
                "demo clip frames/s",
                "faces a frame (clip)",
                "test faces: frames/s",
                "found",
                "accuracy (all faces)",
                "accuracy (found faces)",
            ],
            [
                [
                    name,
                    f"{row['clip_frames_per_s']:.1f}",
                    f"{row['clip_faces_per_frame']:.2f}",
                    f"{row['faces_frames_per_s']:.1f}",
                    f"{100 * row['found']:.1f}%",
                    f"{100 * row['accuracy']:.1f}%",
                    f"{100 * row['accuracy_on_found']:.1f}%",
                ]
                for name, row in (("emolens", pr["emolens"]), ("fer", pr["fer"]))
            ],
        ),
        "",
        f"emolens / fer on the clip: **{pr['ratio']:.2f}x** the frames/s.",
        "",
        *pr.get("notes", []),
    ]


def _section_small_faces(sf: dict[str, Any]) -> list[str]:
    whole = sf.get("cameras720_8_whole_frame")
    return [
        "## Small faces (CCTV distance)",
        "",
        "Side by side in one run (`emolens bench --only small_faces`): the 640x480 demo clip at the default",
        f"`min_face_px` ({sf['min_face_px_default']}) against `min_face_px=0` (the whole frame only, as before",
        "tiles), in 4 alternating rounds; a 1080p camera at 30 fps with three walking figures whose faces",
        "are 40, 56 and 72 px",
        "(`emolens.demo.small_face_frames`), with following at the default detection interval; and 8 cameras",
        "of 720p with the same figures sampled at 5 fps in one process (`emolens run`'s shape).",
        "",
        markdown_table(
            ["case", "frames/s", "faces/frame"],
            [
                [k, f"{v['frames_per_s']:.1f}", f"{v['faces_per_frame']:.2f}"]
                for k, v in sf.items()
                if isinstance(v, dict) and "faces_per_frame" in v
            ],
        ),
        "",
        f"Demo clip at the default against the whole frame only: **{sf['demo_ratio']:.2f}x** the frames/s.",
        f"8 cameras of 720p at 5 fps: {sf['cameras720_8']['frames_per_s']:.1f} frames/s over all cameras, "
        f"**{sf['cameras720_8']['cameras_at_5fps']:.1f} cameras' worth**"
        + (
            f" (the whole frame only, same run: {whole['cameras_at_5fps']:.1f}, finding fewer of the faces)."
            if whole is not None
            else "."
        ),
        "",
    ]


def _section_cameras(cams: dict[str, Any]) -> list[str]:
    return [
        "## Cameras per box (embedded run, 640x480 at 5 fps)",
        "",
        "`emolens run` with N cameras in one process (a decoding thread per source, one detector for all,",
        "one classifier batch per tick with the faces of every camera, SQLite store), each camera the 12 s",
        "demo clip sampled at 5 fps. Recordings are read as fast as detection takes them, so frames/s over",
        f"all cameras / 5 is how many live 5 fps cameras this machine keeps up with. {cams['cpus']} CPUs.",
        "",
        markdown_table(
            ["cameras in the run", "frames", "seconds", "frames/s (all cameras)", "frames/s ÷ 5"],
            [
                [
                    str(r["cameras"]),
                    str(r["frames"]),
                    f"{r['seconds']:.1f}",
                    f"{r['frames_per_s']:.1f}",
                    f"{r['cameras_at_5fps']:.1f}",
                ]
                for r in cams["runs"]
            ],
        ),
        "",
        f"**{cams['held']} cameras** at 5 fps on this box: the largest run that kept up with all of its cameras.",
        "",
        *cams.get("notes", []),
    ]


def _section_triton(t: dict[str, Any]) -> list[str]:
    return [
        "## Triton dynamic batching (CPU build, python backend running the same ONNX model)",
        "",
        "One-face `emotion` requests: one at a time vs 64 in flight (async, one client thread).",
        "Goal: concurrent >= 4x sequential.",
        "",
        markdown_table(
            ["sequential batch-1 req/s", "64 in flight req/s", "speed-up", "mean batch executed", "max batch"],
            [
                [
                    f"{t['sequential_batch1_per_s']:.0f}",
                    f"{t['concurrent64_per_s']:.0f}",
                    f"**{t['speedup']:.1f}x**",
                    f"{t['mean_batch']:.1f}",
                    f"{t['max_batch']}",
                ]
            ],
        ),
        "",
    ]


def _section_aggregator(g: dict[str, Any]) -> list[str]:
    return [
        "## Aggregator into PostgreSQL",
        "",
        f"{g['frames']} frames x {g['faces_per_frame']} faces, pre-published; protobuf decode + one transaction",
        "per batch (idempotency keys, per-minute upserts) + offset commit. Goal: >= 10,000 observations/s.",
        "",
        f"**{g['observations_per_s']:.0f} face observations/s** ({g['frames_per_s']:.0f} frames/s).",
        "",
    ]


def _section_e2e(e: dict[str, Any]) -> list[str]:
    return [
        "## End to end through the distributed stack",
        "",
        "ingest -> Kafka (Tansu) -> detect (Triton) -> Kafka -> aggregate (PostgreSQL, Redis), the 640x480 demo",
        "clip at 15 fps, all on this machine's CPUs (Triton shares them with the detector).",
        "",
        f"**{e['frames_per_s']:.1f} frames/s** ({e['frames']} frames in {e['seconds']:.1f} s).",
        "",
    ]


def _section_analytics(an: dict[str, Any]) -> list[str]:
    runs = an["runs"]
    return [
        "## Statistics at city scale (PostgreSQL)",
        "",
        f"{an['cameras']} cameras (20 a site, 5 zones), generated by `scripts/generate_stats.py` through the",
        "aggregator's rollup code at 5 fps; every query is `emolens.analytics.query_stats` (what `QueryStats`,",
        "`emolens stats` and the report run), all pages, best of 3. `emolens report` is the command itself",
        "(a new process) over all the days, by zone, to one HTML file: the period by hour and by day, the",
        "previous period by day (before the generated data, so empty) and the dwell bins. Goal: each < 10 s",
        "on 2 cores; time and size per camera-day no more than linear in the days.",
        "`emolens bench --only analytics` reruns it.",
        "",
        markdown_table(
            [
                "days",
                "one site by day (s)",
                "all sites by day (s)",
                "all zones by hour (s)",
                "all cameras by day (s)",
                "`emolens report` by zone (s)",
                "store bytes per camera-day",
                "generation (s)",
            ],
            [
                [
                    str(r["days"]),
                    f"{r['site_by_day_s']:.3f}",
                    f"{r['month_sites_by_day_s']:.3f}",
                    f"{r['month_zones_by_hour_s']:.3f}",
                    f"{r['month_cameras_by_day_s']:.3f}",
                    f"{r['report_s']:.2f}" if "report_s" in r else "-",
                    f"{r['bytes_per_camera_day']:,}",
                    f"{r['generate_s']:.0f}",
                ]
                for r in runs
            ],
        ),
        "",
        "Bytes per camera-day by table (the last run): "
        + ", ".join(f"{t} {b:,}" for t, b in runs[-1]["bytes_per_camera_day_by_table"].items() if b),
        "",
    ]


@dataclass(frozen=True)
class BenchRun:
    """What every benchmark may use: the models, the time per ONNX measurement, a scratch folder
    the postgres user can reach (for the servers of :mod:`emolens_tools.dev`), the analytics sizes."""

    repo: Path
    seconds: float
    workdir: Path
    analytics_cameras: int = 200
    analytics_days: tuple[int, ...] = (7, 30)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: ``name`` is its ``--only`` choice, its key in docs/benchmarks.json and its
    notes block; ``run`` measures, ``section`` renders the result as the page's section (the
    notes block follows it)."""

    name: str
    measures: str
    run: Callable[[BenchRun], object]
    section: Callable[[dict[str, Any]], list[str]]


# In the page's order, which is also the order `emolens bench` runs them in.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "onnx",
        "faces/s per model at batch 1, 8, 64 (ONNX Runtime)",
        lambda r: bench_onnx(r.repo, r.seconds),
        _section_onnx,
    ),
    Benchmark(
        "precision",
        "the shipped int8 graphs against fp32 re-exports (train extra)",
        lambda r: bench_precision(r.repo, r.seconds),
        _section_precision,
    ),
    Benchmark(
        "analyze",
        "`emolens analyze` on the demo clip: frames/s and ms per stage, interval against full detection",
        lambda r: bench_analyze(r.repo, 12.0),
        _section_analyze,
    ),
    Benchmark(
        "peers",
        "emolens beside the `fer` package: frames/s, faces found, accuracy (`emolens dev peers`)",
        lambda r: bench_peers(r.repo),
        _section_peers,
    ),
    Benchmark(
        "small_faces",
        "faces at CCTV distance: tiles against the whole frame, 1080p and 8 cameras of 720p",
        lambda r: bench_small_faces(r.repo),
        _section_small_faces,
    ),
    Benchmark(
        "cameras",
        "cameras per box: `emolens run` with 1-24 cameras at 5 fps",
        lambda r: bench_cameras(r.repo),
        _section_cameras,
    ),
    Benchmark(
        "triton",
        "Triton's dynamic batching: sequential against 64 requests in flight (platform extra)",
        lambda r: bench_triton(r.repo, r.workdir),
        _section_triton,
    ),
    Benchmark(
        "aggregator",
        "the aggregator into PostgreSQL: observations/s",
        lambda r: bench_aggregator(r.workdir),
        _section_aggregator,
    ),
    Benchmark(
        "e2e",
        "ingest -> Kafka -> detect (Triton) -> Kafka -> aggregate, frames/s",
        lambda r: bench_e2e(r.repo, r.workdir),
        _section_e2e,
    ),
    Benchmark(
        "analytics",
        "statistics at city scale on PostgreSQL: query and report times, bytes per camera-day",
        lambda r: bench_analytics(r.workdir, r.analytics_cameras, r.analytics_days),
        _section_analytics,
    ),
)


def render(results: dict[str, object], notes: dict[str, str] | None = None) -> str:
    """The Markdown page of ``results``: one section per benchmark of :data:`BENCHMARKS` found in
    them, each ending with its block of ``notes`` (written by hand: what a reader needs beside
    the numbers, which a rerun must not erase)."""
    notes = notes or {}
    lines = [
        "# Benchmarks",
        "",
        "_Generated by `emolens bench`; the numbers below are one run on the machine described. The blocks",
        "between `notes` markers are written by hand (the detector precision section is one); a rerun keeps them._",
        "",
        f"Machine: {results['machine']}",
        "",
    ]
    for bench in BENCHMARKS:
        result = results.get(bench.name)
        if result is None:
            continue
        assert isinstance(result, dict)
        lines += bench.section(result) + _notes(notes, bench.name)
    return "\n".join(lines) + "\n"


def _days(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(","))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emolens bench",
        description=__doc__,
        epilog="benchmarks:\n" + "\n".join(f"  {b.name:<12} {b.measures}" for b in BENCHMARKS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repo", type=Path, default=default_repository(), help="model repository to measure")
    parser.add_argument("--only", choices=[b.name for b in BENCHMARKS])
    parser.add_argument("--analytics-cameras", type=int, default=200, help="cameras of the analytics bench")
    parser.add_argument(
        "--analytics-days",
        type=_days,
        default=(7, 30),
        help="days of the analytics bench, one fresh database each (comma-separated)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="time per ONNX measurement")
    parser.add_argument("--out", type=Path, default=Path("docs", "benchmarks.md"), help="Markdown report (+ .json)")
    return parser


def write_page(out: Path, results: dict[str, object], keep_others: bool) -> None:
    """Write ``out`` (Markdown, its notes kept) and its .json; with ``keep_others`` the sections
    of the last run that ``results`` lacks are kept (one benchmark rerun)."""
    previous = out.with_suffix(".json")
    if keep_others and previous.exists():
        results = {**json.loads(previous.read_text()), **results}
    out.parent.mkdir(parents=True, exist_ok=True)
    notes = read_notes(out.read_text()) if out.exists() else {}
    out.write_text(render(results, notes))
    previous.write_text(json.dumps(results, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    cpu = platform.processor() or platform.machine()
    results: dict[str, object] = {"machine": f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # the postgres user must reach its data folder
        run = BenchRun(args.repo, args.seconds, work, args.analytics_cameras, args.analytics_days)
        for bench in BENCHMARKS:
            if args.only in (None, bench.name):
                results[bench.name] = bench.run(run)
                print(json.dumps(results[bench.name], indent=1), file=sys.stderr)
    write_page(args.out, results, keep_others=bool(args.only))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
