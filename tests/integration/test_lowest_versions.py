"""The runtime at the lowest release series its dependency ranges allow (issue 24: ranges, not
pins, tested at their floor): the wheel installed into a fresh venv with every core and `server`
dependency held to the release series of its lower bound (``>=1.18`` -> ``==1.18.*``), read from
pyproject.toml itself, analyzes a photo and counts the demo clip exactly as the dev venv does.
(It found `onnxruntime>=1.17` untrue: 1.17 refuses the shipped models' ai.onnx.ml opset 5.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT, copy_checkout

pytestmark = pytest.mark.integration


def floor_constraints() -> list[str]:
    """``name==X.Y.*`` for each ``name>=X.Y[...]`` of the core dependencies and the server extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["server"]]
    out = []
    for spec in specs:
        m = re.match(r"([A-Za-z0-9_.\-\[\]]+?)(\[.*\])?\s*>=\s*([0-9]+(?:\.[0-9]+)?)", spec.split(";")[0])
        assert m, f"{spec}: every dependency needs a lower bound"
        out.append(f"{m.group(1)}=={m.group(3)}.*")
    return out


def _counts(emolens: Path, clip: Path, db: Path) -> dict:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("EMOLENS_", "PYTHONPATH"))}}
    env["EMOLENS_K_ANONYMITY"] = "1"
    subprocess.run(
        [str(emolens), "run", "--source", str(clip), "--camera-id", "c", "--db", f"sqlite:///{db}",
         "--start", "2026-06-01T09:00:00Z"],
        check=True, env=env, capture_output=True, timeout=600,
    )  # fmt: skip
    out = subprocess.run(
        [str(emolens), "stats", "--db", f"sqlite:///{db}", "--format", "json"],
        check=True, env=env, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    (row,) = json.loads(out)
    return {k: row[k] for k in ("frames", "faces", "tracks", "low_quality", "smile_rate", "top_emotion")}


def test_the_runtime_at_its_lowest_allowed_releases(tmp_path, astronaut):
    import cv2

    from emolens.demo import write_demo_clip

    constraints = tmp_path / "floor.txt"
    constraints.write_text("\n".join(floor_constraints()) + "\n")
    dist, source = tmp_path / "dist", copy_checkout(tmp_path / "source")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)]
    subprocess.run(pip_wheel, check=True, timeout=600)
    (wheel,) = dist.glob("emolens-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-c", str(constraints), f"{wheel}[server]"],
        check=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    versions = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format", "json"], check=True, capture_output=True, text=True
    ).stdout
    installed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(versions)}
    for line in constraints.read_text().split():
        name, series = line.split("==")
        assert installed[name.lower().replace("_", "-")].startswith(series.rstrip("*")), (name, installed)
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), astronaut)  # BGR
    analyzed = subprocess.run(
        [str(venv / "bin" / "emolens"), "analyze", str(photo)], capture_output=True, text=True, timeout=300
    )
    assert analyzed.returncode == 0 and "1 face(s)" in analyzed.stderr, analyzed.stderr[-2000:]
    clip = write_demo_clip(tmp_path / "clip.mp4", seconds=6.0, fps=15)
    floor = _counts(venv / "bin" / "emolens", clip, tmp_path / "floor.db")
    dev = _counts(Path(sys.executable).parent / "emolens", clip, tmp_path / "dev.db")
    assert floor == dev
