from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_REPO = ROOT / "model_repository"

# pytest puts the checkout's tools/ on this process's path (pythonpath in pyproject.toml); the
# processes the tests start (`python -m emolens dev ...`, the dev supervisor it spawns) import the
# same developer tools, whether or not `make install-dev` installed them.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "tools"), os.environ.get("PYTHONPATH", "")) if p)
DATA_DIR = Path(os.environ.get("EMOLENS_DATA_DIR", ROOT.parent / "shared" / "data"))


def copy_checkout(dest: Path) -> Path:
    """The checkout's files at ``dest``, to build wheels from: setuptools leaves build/ in the
    source tree, and a stale build/ of the checkout could put deleted modules into a wheel."""
    shutil.copytree(
        ROOT,
        dest,
        symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", ".tools", ".run", "demo", "__pycache__"),
    )
    return dest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (ROOT / "tests" / "integration") in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)  # `make test-unit` leaves these out


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "fer2013.npz").exists() or not (DATA_DIR / "smiles.npz").exists():
        pytest.skip(f"real face data not found in {DATA_DIR} (set EMOLENS_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from emolens.demo import astronaut_bgr

    return astronaut_bgr()


@pytest.fixture(scope="session")
def analyzer():
    from emolens import Analyzer, Settings

    return Analyzer(Settings.from_env(inference=f"onnx://{MODEL_REPO}"))


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emolens.demo import write_demo_clip

    return write_demo_clip(tmp_path_factory.mktemp("clip") / "demo.mp4", seconds=4.0, fps=10)


@pytest.fixture(scope="session")
def face_frames(astronaut: np.ndarray) -> dict[str, np.ndarray]:
    """The astronaut photo under the conditions the detector must handle."""
    h, w = astronaut.shape[:2]
    rot = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0), (w, h))
    dark = (astronaut.astype(np.float32) * 0.3).astype(np.uint8)
    ramp = np.clip(np.linspace(0.15, 1.0, w), 0, 1)[None, :, None]
    side_lit = (astronaut.astype(np.float32) * ramp).astype(np.uint8)
    return {"plain": astronaut, "rotated30": rot, "dark": dark, "side_lit": side_lit}
