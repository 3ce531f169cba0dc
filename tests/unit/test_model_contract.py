"""The shipped models honour the model contract every client relies on."""

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from emolens.contract import load_model_info, parse_config_text, training_folder
from emolens.inference.onnx import OnnxClassifier
from emolens.results import EMOTIONS
from tests.conftest import MODEL_REPO

EXPECTED = {"smile": ("no_smile", "smile"), "emotion": EMOTIONS}
SIZE = {"smile": 64, "emotion": 48}  # input side: SMILEsmileD native, FER2013 native


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
    side = SIZE[name]
    parsed = parse_config_text(config, name)
    (inp,), (out,) = parsed.input, parsed.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("image", 11, [1, side, side])  # 11: TYPE_FP32
    assert (out.name, out.data_type, list(out.dims)) == ("logits", 11, [len(EXPECTED[name])])
    assert re.search(rf"data_type: TYPE_FP32\s*dims: 1\s*dims: {side}\s*dims: {side}", config)
    # the crop box: the detector's box is centred in the crop and fills most of it
    cx, cy, width = info.crop_box
    assert abs(cx - info.size / 2) < 4 and abs(cy - info.size / 2) < 6
    assert 0.6 * info.size < width < 1.4 * info.size


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_onnx_io_names_types_and_dynamic_batch(name):
    model = onnx.load(str(MODEL_REPO / name / "1" / "model.onnx"))
    onnx.checker.check_model(model)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("image", "logits")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and not in_dims[0].dim_value  # symbolic batch
    side = SIZE[name]
    assert [d.dim_value for d in in_dims[1:]] == [1, side, side]
    session = ort.InferenceSession(str(MODEL_REPO / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n in (1, 7, 64):
        x = rng.uniform(0, 255, (n, 1, side, side)).astype(np.float32)
        (logits,) = session.run(["logits"], {"image": x})
        assert logits.shape == (n, len(EXPECTED[name])) and logits.dtype == np.float32
    # batching does not change a row's answer
    x = rng.uniform(0, 255, (5, 1, side, side)).astype(np.float32)
    batch = session.run(["logits"], {"image": x})[0]
    single = np.concatenate([session.run(["logits"], {"image": x[i : i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(batch, single, atol=1e-4)


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_normalisation_is_inside_the_graph(name):
    """Raw 0..255 in: the graph standardises each image itself, so a global brightness
    shift leaves the logits unchanged and a contrast change moves them only a little."""
    clf = OnnxClassifier(MODEL_REPO)
    rng = np.random.default_rng(1)
    x = rng.uniform(40, 200, (4, 1, SIZE[name], SIZE[name])).astype(np.float32)
    a = clf.predict(name, x)
    # int8: the float rounding of x + 30 can move a value across a quantisation step, so "unchanged"
    # means within a few hundredths (without the standardisation the logits move by whole units)
    np.testing.assert_allclose(clf.predict(name, x + 30), a, atol=0.03)
    assert np.abs(clf.predict(name, x * 0.8 + 20) - a).max() < 0.25 * np.abs(a).max()


def _face_views(astronaut: np.ndarray, side: int, n: int = 24) -> np.ndarray:
    """n crops of a real face: shifted, scaled, mirrored and relit."""
    import cv2

    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY).astype(np.float32)
    rng = np.random.default_rng(2)
    out = []
    for _ in range(n):
        span = int(rng.integers(100, 150))
        y0, x0 = int(rng.integers(50, 80)), int(rng.integers(150, 190))
        crop = cv2.resize(gray[y0 : y0 + span, x0 : x0 + span], (side, side), interpolation=cv2.INTER_AREA)
        crop = crop[:, ::-1] if rng.random() < 0.5 else crop
        out.append(np.clip(crop * rng.uniform(0.4, 1.3), 0, 255))
    return np.stack(out)[:, None].astype(np.float32)


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_onnx_agrees_with_pytorch_weights(name, astronaut):
    """The shipped int8 graph answers like the PyTorch networks it was exported from."""
    torch = pytest.importorskip("torch")
    from emolens.inference.base import softmax
    from emolens_tools.training.export import load_pytorch
    from emolens_tools.training.tasks import TASKS

    model = load_pytorch(training_folder(MODEL_REPO, name), TASKS[name])
    assert len(model.members) == len(TASKS[name].members)
    x = _face_views(astronaut, SIZE[name])
    with torch.no_grad():
        ref = softmax(model(torch.from_numpy(x)).numpy())
    got = softmax(OnnxClassifier(MODEL_REPO).predict(name, x))
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert np.abs(got - ref).max() < 0.1
    assert np.abs(got - ref).mean() < 0.02


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_the_repository_holds_what_triton_serves_and_training_lies_beside(name):
    """model_repository/<model> is Triton's layout and nothing else; the PyTorch weights and the
    training record are in model_training/<model> next to it."""
    held = sorted(p.relative_to(MODEL_REPO / name).as_posix() for p in (MODEL_REPO / name).rglob("*") if p.is_file())
    assert held == ["1/model.onnx", "config.pbtxt", "labels.txt"]
    beside = training_folder(MODEL_REPO, name)
    assert beside.parent.parent == MODEL_REPO.parent and (beside / "pytorch.pt").is_file()


@pytest.mark.parametrize("name", ["smile", "emotion"])
def test_export_checks_are_recorded(name):
    """training.json says what the export checked: fp32 graph == PyTorch, int8 == fp32."""
    import json

    checks = json.loads((training_folder(MODEL_REPO, name) / "training.json").read_text())["export"]
    assert checks["fp32_vs_pytorch_max_abs_diff"] < 1e-3
    assert checks["precision"] == "int8" and checks["int8_top1_agreement"] >= 0.97
