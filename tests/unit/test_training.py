"""A tiny training run end to end (a few batches) and the pieces it is built from."""

import itertools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emolens.inference.onnx import OnnxClassifier  # noqa: E402
from emolens.training import augment  # noqa: E402
from emolens.training.loop import _lr_at  # noqa: E402
from emolens.training.tasks import TASKS  # noqa: E402


def test_tiny_training_run_exports_a_contract_model(data_dir, tmp_path):
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    train_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_script)
    args = [
        "--task",
        "smile",
        "--epochs",
        "2",
        "--max-batches",
        "3",
        "--limit",
        "512",
        "--template-images",
        "60",
        "--workdir",
        str(tmp_path / "work"),
        "--repo",
        str(tmp_path / "repo"),
        "--data-dir",
        str(data_dir),
        "--no-progress",
        "--threads",
        "1",
    ]
    assert train_script.main(args) == 0
    meta = json.loads((tmp_path / "repo" / "smile" / "training.json").read_text())
    assert meta["epochs"] == 2 and len(meta["history"]) == 2
    clf = OnnxClassifier(tmp_path / "repo", models=("smile",))
    assert clf.predict("smile", np.zeros((3, 1, 48, 48), np.float32)).shape == (3, 2)
    # resuming a finished run trains nothing more and exports the same best epoch
    assert train_script.main(args) == 0
    again = json.loads((tmp_path / "repo" / "smile" / "training.json").read_text())
    assert again["history"] == meta["history"]


def test_lr_schedule_warms_up_then_decays():
    spec = TASKS["emotion"]
    lrs = [_lr_at(spec, e, 0, 10, 10) for e in range(10)] + [_lr_at(spec, 9, 9, 10, 10)]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(spec.lr)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] < 0.01 * spec.lr


def test_augmentations_keep_shape_range_and_are_seeded():
    img = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)
    a = augment.augment_batch(np.stack([img] * 8), np.random.default_rng(5))
    b = augment.augment_batch(np.stack([img] * 8), np.random.default_rng(5))
    assert a.shape == (8, 1, 48, 48) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # each view differs


def test_fixed_degradations():
    img = np.full((48, 48), 200.0, np.float32)
    dark = augment.low_light(img, 2.5, 0.35)
    assert dark.mean() == pytest.approx(255 * (200 / 255) ** 2.5 * 0.35, rel=1e-4)
    assert augment.downscale(img, 24).shape == (48, 48)
    assert augment.jpeg(img, 20).shape == (48, 48)
    noisy = augment.gaussian_noise(np.full((100, 100), 128.0, np.float32), 12.0, np.random.default_rng(0))
    assert noisy.std() == pytest.approx(12.0, rel=0.1)
