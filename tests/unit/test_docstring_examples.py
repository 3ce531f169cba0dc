"""The runnable examples in docstrings stay true: every module of the package whose source holds
an example (``>>>``) is found here and its examples run, so none is left out by a hand-kept list."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (ROOT / "emolens", ROOT / "tools" / "emolens_tools")  # the runtime and the developer tools


def _modules_with_examples() -> list[str]:
    out = []
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            rel = path.relative_to(package.parent).with_suffix("")
            if rel.parts[1:2] == ("v1",):  # generated protobuf code
                continue
            if ">>> " in path.read_text(encoding="utf-8"):
                parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
                out.append(".".join(parts))
    return out


MODULES = _modules_with_examples()


def test_examples_are_found_in_every_layer():
    """The discovery sees the modules whose examples a hand-kept list had left out, and the tools'."""
    expected = {"emolens.errors", "emolens.retry", "emolens.geometry", "emolens.contract", "emolens.wire"}
    assert expected | {"emolens_tools.evaluation.scores", "emolens_tools.synthetic"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    found = sum(len(t.examples) for t in doctest.DocTestFinder().find(module))
    assert found > 0, f"{name}: its '>>> ' is in no docstring doctest finds"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
