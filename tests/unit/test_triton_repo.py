import shutil

import pytest

from emolens.contract import config_text, cpu_config, parse_config_text
from emolens.errors import ModelError
from emolens.inference.triton_repo import write_cpu_repository
from tests.conftest import MODEL_REPO


def test_cpu_repository_keeps_batching_and_contract(tmp_path):
    repo = write_cpu_repository(MODEL_REPO, tmp_path / "r")
    for name in ("smile", "emotion"):
        production = (MODEL_REPO / name / "config.pbtxt").read_text()
        cpu = (repo / name / "config.pbtxt").read_text()
        assert cpu == config_text(cpu_config(parse_config_text(production, name)))
        assert 'backend: "python"' in cpu and "onnxruntime_onnx" not in cpu
        assert "KIND_CPU" in cpu and "KIND_GPU" not in cpu
        assert "dynamic_batching" in cpu and "max_batch_size: 128" in cpu
        assert (repo / name / "1" / "model.onnx").read_bytes() == (MODEL_REPO / name / "1" / "model.onnx").read_bytes()
        assert "np.concatenate(batches)" in (repo / name / "1" / "model.py").read_text()


def test_incomplete_repository_is_a_model_error(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(MODEL_REPO, broken)
    (broken / "emotion" / "1" / "model.onnx").unlink()
    target = tmp_path / "r"
    with pytest.raises(ModelError, match="emotion"):
        write_cpu_repository(broken, target)
    assert not target.exists()
