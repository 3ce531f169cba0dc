"""The shipped models honour the model contract every client relies on."""

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from emolens.inference.onnx import OnnxClassifier
from emolens.inference.repository import load_model_info
from emolens.results import EMOTIONS
from tests.conftest import MODEL_REPO

EXPECTED = {"smile": ("no_smile", "smile"), "emotion": EMOTIONS}


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_layout_labels_and_config(name):
    folder = MODEL_REPO / name
    onnx_path = folder / "1" / "model.onnx"
    assert onnx_path.stat().st_size <= 8 * 1024 * 1024
    info = load_model_info(MODEL_REPO, name)
    assert info.labels == EXPECTED[name]
    config = (folder / "config.pbtxt").read_text()
    assert f'name: "{name}"' in config
    assert 'platform: "onnxruntime_onnx"' in config
    assert re.search(r"max_batch_size:\s*\d+", config)
    assert "dynamic_batching" in config
    assert "KIND_GPU" in config
    assert re.search(r'name: "image"\s*data_type: TYPE_FP32\s*dims: \[ 1, 48, 48 \]', config)
    assert re.search(rf'name: "logits"\s*data_type: TYPE_FP32\s*dims: \[ {len(EXPECTED[name])} \]', config)
    # the alignment template sits inside the crop, eyes above nose above mouth
    tpl = info.template
    assert ((tpl > 0) & (tpl < info.size)).all()
    assert tpl[0, 0] < tpl[1, 0] and tpl[:2, 1].max() < tpl[2, 1] < tpl[3, 1]


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_onnx_io_names_types_and_dynamic_batch(name):
    model = onnx.load(str(MODEL_REPO / name / "1" / "model.onnx"))
    onnx.checker.check_model(model)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("image", "logits")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and not in_dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in in_dims[1:]] == [1, 48, 48]
    session = ort.InferenceSession(str(MODEL_REPO / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n in (1, 7, 64):
        x = rng.uniform(0, 255, (n, 1, 48, 48)).astype(np.float32)
        (logits,) = session.run(["logits"], {"image": x})
        assert logits.shape == (n, len(EXPECTED[name])) and logits.dtype == np.float32
    # batching does not change a row's answer
    x = rng.uniform(0, 255, (5, 1, 48, 48)).astype(np.float32)
    batch = session.run(["logits"], {"image": x})[0]
    single = np.concatenate([session.run(["logits"], {"image": x[i : i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(batch, single, atol=1e-4)


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_normalisation_is_inside_the_graph(name):
    """Raw 0..255 in: the graph standardises each image itself, so a global brightness
    shift leaves the logits unchanged and a contrast change moves them only a little."""
    clf = OnnxClassifier(MODEL_REPO)
    rng = np.random.default_rng(1)
    x = rng.uniform(40, 200, (4, 1, 48, 48)).astype(np.float32)
    a = clf.predict(name, x)
    np.testing.assert_allclose(clf.predict(name, x + 30), a, atol=1e-3)
    assert np.abs(clf.predict(name, x * 0.8 + 20) - a).max() < 0.25 * np.abs(a).max()


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_onnx_agrees_with_pytorch_weights(name):
    torch = pytest.importorskip("torch")
    from emolens.training.model import FaceNet
    from emolens.training.tasks import TASKS

    model = FaceNet(TASKS[name])
    model.load_state_dict(torch.load(MODEL_REPO / name / "pytorch.pt"))
    model.eval()
    x = np.random.default_rng(2).uniform(0, 255, (16, 1, 48, 48)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = OnnxClassifier(MODEL_REPO).predict(name, x)
    np.testing.assert_allclose(got, ref, atol=1e-3)
