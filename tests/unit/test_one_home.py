"""One home per fact: the tuning defaults live in ``Settings`` (the chart's values and the
services' env files must agree with it), and the model contract's tensor names in
``emolens.contract``."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import yaml

from emolens.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = {f.name: f.default for f in fields(Settings)}
# Where a service finds its dependencies and serves its probes: the distributed shape's wiring,
# which differs from the embedded defaults (memory://, SQLite, ONNX, no ports) by design.
WIRING = {"bus", "db", "live", "inference", "health_port", "metrics_port"}


def _same(name: str, raw: object) -> bool:
    default = DEFAULTS[name]
    try:
        return type(default)(raw) == default
    except ValueError:
        return False


def _snake(key: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), key)


def test_chart_values_are_the_settings_defaults():
    values = yaml.safe_load((ROOT / "helm" / "emolens" / "values.yaml").read_text())["settings"]
    names = {key: _snake(key) for key in values}
    assert not [k for k, n in names.items() if n not in DEFAULTS], "values.yaml settings that Settings lacks"
    differ = {k: (values[k], DEFAULTS[n]) for k, n in names.items() if not _same(n, values[k])}
    assert differ == {}, "values.yaml disagrees with Settings (value, default)"


def test_service_env_files_set_the_settings_defaults_or_only_wiring():
    files = sorted((ROOT / "services").glob("*/defaults.env"))
    assert len(files) == 4
    for path in files:
        pairs = re.findall(r"\$\{EMOLENS_(\w+):=([^}]*)\}", path.read_text())
        assert pairs, path
        unknown = [n for n, _ in pairs if n.lower() not in DEFAULTS]
        assert unknown == [], path
        differ = {n: v for n, v in pairs if n.lower() not in WIRING and not _same(n.lower(), v)}
        assert differ == {}, f"{path.relative_to(ROOT)} disagrees with Settings"


def test_the_checks_see_a_disagreement():
    assert not _same("fps", "4") and not _same("quality_threshold", "0.3") and _same("fps", "5")


def test_tensor_names_are_spelled_only_in_the_contract():
    """``image`` and ``logits`` as tensor names come from ``contract.INPUT_NAME``/``OUTPUT_NAME``."""
    literal = re.compile(r"""["'](logits)["']|[\[{(,]\s*["']image["']\s*[\]:)]""")
    found = []
    for path in sorted([*(ROOT / "emolens").rglob("*.py"), *(ROOT / "tools" / "emolens_tools").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ("emolens/contract.py",) or rel.startswith("emolens/v1/"):
            continue
        found += [f"{rel}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1) if literal.search(line)]
    assert found == []
