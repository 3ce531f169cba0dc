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


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
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


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("errors.py", "from emolens.store import make_store  # upward\n"),  # bottom layer -> pieces
        ("pipeline.py", "import emolens.runner  # upward\n"),  # pipeline -> the flow above it
        ("store/sql.py", "import torch  # the runtime must not need the train extra\n"),
    ],
)
def test_import_contract_fails_on_a_new_upward_import(tmp_path, module, upward):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    shutil.copytree(ROOT / "emolens", copy / "emolens", ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    shutil.copytree(ROOT / "tools", copy / "tools", ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    assert _lint_imports(copy).returncode == 0  # the copy itself is clean
    target = copy / "emolens" / module
    target.write_text(target.read_text() + "\n" + upward)
    result = _lint_imports(copy)
    assert result.returncode != 0
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
