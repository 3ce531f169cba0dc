"""A real Triton server (python backend running the same model.onnx) behind TritonClassifier."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from emolens.inference import MODELS, make_classifier
from emolens.inference.onnx import OnnxClassifier
from emolens.inference.triton import TritonClassifier
from tests.conftest import MODEL_REPO


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


def test_dynamic_batching_is_used(triton):
    """64 concurrent one-face requests: Triton's own statistics show executions of batch > 1."""
    x = np.random.default_rng(1).uniform(0, 255, (1, 1, 48, 48)).astype(np.float32)
    before = triton.statistics("emotion")["model_stats"][0]
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(lambda _: triton.predict("emotion", x), range(64)))
    assert all(r.shape == (1, 7) for r in results)
    stats = triton.statistics("emotion")["model_stats"][0]
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
    old = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in before.get("batch_stats", [])}
    new = {k: v - old.get(k, 0) for k, v in sizes.items()}
    assert sum(k * v for k, v in new.items()) == 64  # every request answered exactly once
    assert any(k > 1 and v > 0 for k, v in new.items()), new


def test_unknown_model_is_a_clear_error(triton):
    from emolens.errors import ModelError

    with pytest.raises(ModelError):
        triton.predict("age", np.zeros((1, 1, 48, 48), np.float32))


def test_gateway_analyze_image_through_triton(triton_url, astronaut, tmp_path):
    import cv2
    import grpc

    from emolens.services.gateway import AnalyticsService, build_server
    from emolens.settings import Settings
    from emolens.store import SqlStore
    from emolens.v1 import analytics_pb2, analytics_pb2_grpc

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
