"""The package's structure: imports flow one way (import-linter), and the committed gRPC code
is what protos/ generates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, contract: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *(["--contract", contract] if contract else [])],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([str(cwd), str(cwd / "tools")])},
    )


def test_import_layers_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime, the tools and the contracts, copied: a place to plant violations."""
    copy = tmp_path_factory.mktemp("repo")
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    for package in ("emolens", "tools"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    assert _lint_imports(copy).returncode == 0  # the copy itself is clean
    return copy


# Each contract fails on the mistake it is for: the examples of issue 24 (the gateway importing
# synthetic data or the demo, the pipeline importing scikit-image, the detector importing
# tritonclient, inside a function too) and the upward imports the layers forbid.
@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("errors.py", "from emolens.store import make_store  # upward\n", "layers"),  # bottom layer -> pieces
        ("pipeline.py", "import emolens.runner  # upward\n", "layers"),  # pipeline -> the flow above it
        ("store/sql.py", "import torch  # the runtime must not need the train extra\n", "runtime-without-tools"),
        ("cli/analyze.py", "import emolens_tools.bench\n", "runtime-without-tools"),
        ("services/gateway.py", "from emolens_tools import synthetic\n", "services-real-data"),
        ("services/gateway.py", "def _clip():\n    from emolens.demo import write_demo_clip\n", "services-real-data"),
        ("pipeline.py", "def _photo():\n    import skimage.data\n", "core-without-servers"),
        ("vision/detect.py", "def _remote():\n    import tritonclient.grpc\n", "core-without-servers"),
        ("track.py", "import redis\n", "core-without-servers"),
        ("inference/onnx.py", "import sqlalchemy\n", "core-without-servers"),
        ("vision/align.py", "import grpc\n", "core-without-servers"),
    ],
)
def test_each_import_contract_fails_on_what_it_forbids(repo_copy, module, planted, contract):
    target = repo_copy / "emolens" / module
    clean = target.read_text()
    assert _lint_imports(repo_copy, contract).returncode == 0
    target.write_text(clean + "\n" + planted)
    try:
        result = _lint_imports(repo_copy, contract)
    finally:
        target.write_text(clean)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout.upper() and "1 broken" in result.stdout


def test_committed_grpc_code_is_what_protos_generate(tmp_path):
    pytest.importorskip("grpc_tools")
    protos = sorted((ROOT / "protos" / "emolens" / "v1").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *map(str, protos),
        ],
        check=True,
        timeout=120,
    )
    generated = sorted(p.name for p in (tmp_path / "emolens" / "v1").iterdir())
    committed = sorted(p.name for p in (ROOT / "emolens" / "v1").iterdir() if p.suffix in (".py", ".pyi"))
    assert set(generated) == set(committed) - {"__init__.py"}, "run `make protos` and commit emolens/v1/"
    for name in generated:
        assert (tmp_path / "emolens" / "v1" / name).read_text() == (ROOT / "emolens" / "v1" / name).read_text(), (
            f"emolens/v1/{name} is stale: run `make protos` and commit it"
        )
