"""A real Triton server (python backend running the same model.onnx) behind TritonClassifier."""

import contextlib
import glob
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest

from emolens.contract import default_repository
from emolens.inference import MODELS, make_classifier
from emolens.inference.onnx import OnnxClassifier
from emolens.inference.triton import TritonClassifier
from emolens.inference.triton_repo import write_cpu_repository
from emolens.services.gateway import AnalyticsService, build_server
from emolens.settings import Settings
from emolens.store import SqlStore
from emolens.v1 import analytics_pb2, analytics_pb2_grpc
from emolens_tools import dev
from tests.conftest import MODEL_REPO
from tests.integration.conftest import TRITON_VENV, wait_until

SHM_REGIONS = "/dev/shm/triton_python_backend_shm_region_*"


@pytest.fixture(scope="module")
def triton(triton_url):
    clf = make_classifier(triton_url)
    assert isinstance(clf, TritonClassifier)
    return clf


@pytest.mark.parametrize("model", ["smile", "emotion"])
def test_triton_agrees_with_onnx_runtime(triton, model):
    local = OnnxClassifier(MODEL_REPO)
    side = local.info(model).size
    x = np.random.default_rng(0).uniform(0, 255, (9, 1, side, side)).astype(np.float32)
    np.testing.assert_allclose(triton.predict(model, x), local.predict(model, x), atol=1e-4)
    assert triton.info(model).labels == local.info(model).labels
    np.testing.assert_allclose(triton.info(model).crop_box, local.info(model).crop_box)


def _batch_counts(model_stats: dict) -> dict[int, int]:
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model_stats.get("batch_stats", [])}


def test_dynamic_batching_is_used(triton):
    """64 concurrent one-face requests: Triton's own statistics show executions of batch > 1."""
    x = np.random.default_rng(1).uniform(0, 255, (1, 1, 48, 48)).astype(np.float32)
    before = triton.statistics("emotion")["model_stats"][0]
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(lambda _: triton.predict("emotion", x), range(64)))
    assert all(r.shape == (1, 7) for r in results)
    old = _batch_counts(before)
    new: dict[int, int] = {}

    def executions_recorded() -> bool:
        # Triton records an execution's statistics after its responses are sent, so the last
        # batch can show up a moment after the client has its answer.
        nonlocal new
        now = _batch_counts(triton.statistics("emotion")["model_stats"][0])
        new = {k: v - old.get(k, 0) for k, v in now.items()}
        return sum(k * v for k, v in new.items()) >= 64

    wait_until("Triton's statistics count all 64 requests", executions_recorded, timeout_s=10)
    assert sum(k * v for k, v in new.items()) == 64  # every request answered exactly once
    assert any(k > 1 and v > 0 for k, v in new.items()), new


def test_unknown_model_is_a_clear_error(triton):
    from emolens.errors import ModelError

    with pytest.raises(ModelError):
        triton.predict("age", np.zeros((1, 1, 48, 48), np.float32))


def test_gateway_analyze_image_through_triton(triton_url, astronaut, tmp_path):
    settings = Settings.from_env(inference=triton_url)
    store = SqlStore(f"sqlite:///{tmp_path / 'g.db'}")
    server, port = build_server(AnalyticsService(settings, store, None), "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analytics_pb2_grpc.AnalyticsStub(channel)
            image = cv2.imencode(".png", astronaut)[1].tobytes()
            remote = stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=image), timeout=30)
    finally:
        server.stop(0)
    local = AnalyticsService(Settings.from_env(inference=f"onnx://{MODEL_REPO}"), store, None)
    expected = local._analyzer(track=False).analyze(astronaut)
    assert len(remote.faces) == len(expected) == 1
    assert remote.faces[0].smile == pytest.approx(expected[0].smile, abs=1e-4)


def test_both_models_in_one_concurrent_round(triton):
    rng = np.random.default_rng(3)
    x = {m: rng.uniform(0, 255, (3, 1, triton.info(m).size, triton.info(m).size)).astype(np.float32) for m in MODELS}
    both = triton.predict_many(x)
    np.testing.assert_allclose(both["smile"], triton.predict("smile", x["smile"]), atol=1e-5)
    np.testing.assert_allclose(both["emotion"], triton.predict("emotion", x["emotion"]), atol=1e-5)


def _kill_triton(service: dev.Service, regions: set[str]) -> None:
    """SIGKILL the server and its python-backend stubs (its own process group), as a crash
    would, then remove only this server's shared-memory regions (the session's Triton keeps its)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(service.pid, 0)
    for leftover in regions:
        with contextlib.suppress(OSError):
            os.unlink(leftover)


def test_gateway_answers_unavailable_once_triton_is_gone(services_dir, astronaut, tmp_path):
    """A Triton of this test's own serves the gateway, then dies: AnalyzeImage answers
    UNAVAILABLE (after the client's retries), not INVALID_ARGUMENT, and names no host or port."""
    venv = dev.install_triton(TRITON_VENV)
    repo = write_cpu_repository(default_repository(), services_dir / "triton-down-repo")
    before = set(glob.glob(SHM_REGIONS))
    triton = dev.start_triton(services_dir / "triton-down", repo, venv)
    regions = set(glob.glob(SHM_REGIONS)) - before
    store = SqlStore(f"sqlite:///{tmp_path / 'g.db'}")
    server, port = build_server(
        AnalyticsService(Settings.from_env({}, inference=triton.url), store, None), "127.0.0.1:0"
    )
    server.start()
    image = cv2.imencode(".png", astronaut)[1].tobytes()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analytics_pb2_grpc.AnalyticsStub(channel)
            served = stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=image), timeout=60)
            assert len(served.faces) == 1
            _kill_triton(triton, regions)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                stub.AnalyzeImage(analytics_pb2.AnalyzeImageRequest(image=image), timeout=60)
            elapsed = time.monotonic() - started
    finally:
        server.stop(0)
        _kill_triton(triton, regions)
        store.close()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    triton_port = triton.url.rsplit(":", 1)[1]
    assert triton_port not in err.value.details() and "127.0.0.1" not in err.value.details()
    assert elapsed < 30  # retries with backoff, then a clear answer; no hang


@pytest.mark.fault
def test_a_frozen_triton_surfaces_within_seconds(services_dir, demo_clip):
    """Triton frozen by SIGSTOP mid-stream (a hung node, a stopped container) under the default
    inference URL (no ``?timeout=``): the detector says NOT_SERVING and logs the retry within a
    few seconds (before: 41 s), then, once Triton runs again, analyses every frame once."""
    import threading

    from emolens.bus import FRAMES_TOPIC, OBSERVATIONS_TOPIC, MemoryBus
    from emolens.stages import Detector, Ingest
    from emolens.store import Camera
    from emolens.v1 import observations_pb2

    venv = dev.install_triton(TRITON_VENV)
    repo = write_cpu_repository(default_repository(), services_dir / "triton-frozen-repo")
    before = set(glob.glob(SHM_REGIONS))
    triton = dev.start_triton(services_dir / "triton-frozen", repo, venv)
    regions = set(glob.glob(SHM_REGIONS)) - before
    settings = Settings.from_env({}, inference=triton.url, fps=5)
    bus = MemoryBus()
    sent = Ingest(bus, Camera("cam-frozen"), settings).run(str(demo_clip))
    detector = Detector(bus, settings, make_classifier(settings.inference))
    changes: list[tuple[float, bool]] = []
    detector.on_ready = lambda ok: changes.append((time.monotonic(), ok))
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            detector.step(timeout_s=0.05, max_frames=2)

    observed = bus.consumer([OBSERVATIONS_TOPIC], "frozen-check")
    seen: list[int] = []
    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        wait_until(
            "some frames analysed",
            lambda: bool(seen.extend(m.offset for m in observed.poll(0.1, 99))) or len(seen) >= 4,
        )
        os.kill(triton.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            wait_until(
                "the detector to say NOT_SERVING", lambda: any(not ok for _, ok in changes), timeout_s=90, every_s=0.05
            )
            surfaced = next(t for t, ok in changes if not ok) - frozen_at
            print(f"\nFROZEN-REPORT NOT_SERVING {surfaced:.1f} s after SIGSTOP (default inference URL)")
        finally:
            os.kill(triton.pid, signal.SIGCONT)
        thawed = time.monotonic()
        wait_until(
            "every frame analysed",
            lambda: bool(seen.extend(m.offset for m in observed.poll(0.1, 99))) or len(seen) >= sent,
            timeout_s=120,
        )
        print(f"FROZEN-REPORT every frame analysed {time.monotonic() - thawed:.1f} s after SIGCONT")
    finally:
        stop.set()
        worker.join(timeout=60)
        _kill_triton(triton, regions)
    assert surfaced < 5
    assert changes[-1][1] is True  # ready again
    frames = [
        observations_pb2.FrameObservations.FromString(m.value).frame_seq
        for m in bus.consumer([OBSERVATIONS_TOPIC], "all").poll(0.1, 999)
    ]
    assert len(frames) == len(set(frames)) == sent == len(bus.consumer([FRAMES_TOPIC], "f").poll(0.1, 999))


@pytest.mark.pixel
def test_triton_shared_memory_is_private_and_removed(services_dir):
    """The python backend's /dev/shm regions carry every face crop between Triton and its model
    processes: owner-only (0600) from before the first inference and after a batch large
    enough to grow them (before: 0644, and a 64x64 crop was read back from one by another
    user minutes after the last inference), and gone once the server is stopped."""
    venv = dev.install_triton(TRITON_VENV)
    repo = write_cpu_repository(default_repository(), services_dir / "triton-shm-repo")
    before = set(glob.glob(SHM_REGIONS))
    triton = dev.start_triton(services_dir / "triton-shm", repo, venv)
    try:
        regions = set(glob.glob(SHM_REGIONS)) - before
        assert regions
        assert {p: oct(os.stat(p).st_mode & 0o777) for p in regions} == dict.fromkeys(regions, "0o600")
        clf = make_classifier(triton.url)
        rng = np.random.default_rng(5)
        crops = {
            m: rng.uniform(0, 255, (128, 1, clf.info(m).size, clf.info(m).size)).astype(np.float32) for m in MODELS
        }
        assert clf.predict_many(crops)["emotion"].shape == (128, 7)  # the largest batch, over 1 MB: regions grow
        after = set(glob.glob(SHM_REGIONS)) - before
        assert {p: oct(os.stat(p).st_mode & 0o777) for p in after} == dict.fromkeys(after, "0o600")
    finally:
        dev.stop(triton)
    assert not (set(glob.glob(SHM_REGIONS)) - before)
