"""Reading a model's description (input size, labels, crop template) from a Triton-layout
model repository: ``<repo>/<model>/{config.pbtxt,labels.txt,1/model.onnx}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emolens.errors import ModelError

TEMPLATE_KEY = "emolens_crop_template"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    labels: tuple[str, ...]
    size: int  # square input side
    template: np.ndarray  # [4, 2] eyes, nose tip, mouth in crop pixels

    @property
    def eye_distance(self) -> float:
        return float(np.hypot(*(self.template[1] - self.template[0])))


def parse_config(text: str, name: str) -> tuple[int, np.ndarray]:
    """(input side, crop template) from config.pbtxt text."""
    dims = re.search(r"input\s*\[.*?dims:\s*\[\s*1\s*,\s*(\d+)\s*,\s*(\d+)\s*\]", text, re.S)
    if not dims:
        raise ModelError(f"{name}: config.pbtxt declares no input dims [1, H, W]")
    h, w = int(dims.group(1)), int(dims.group(2))
    if h != w:
        raise ModelError(f"{name}: only square inputs are supported, got {h}x{w}")
    tpl = re.search(rf'key:\s*"{TEMPLATE_KEY}"\s*value\s*{{\s*string_value:\s*"([^"]+)"', text)
    if not tpl:
        raise ModelError(f"{name}: config.pbtxt has no {TEMPLATE_KEY} parameter (re-export the model)")
    values = np.array([float(v) for v in tpl.group(1).split(",")], np.float32)
    if values.size != 8:
        raise ModelError(f"{name}: {TEMPLATE_KEY} needs 8 numbers, got {values.size}")
    return h, values.reshape(4, 2)


def load_model_info(repo: Path, name: str) -> ModelInfo:
    folder = repo / name
    config, labels = folder / "config.pbtxt", folder / "labels.txt"
    for path in (config, labels):
        if not path.exists():
            raise ModelError(f"model {name!r}: {path} not found (is {repo} a model repository?)")
    size, template = parse_config(config.read_text(), name)
    names = tuple(line.strip() for line in labels.read_text().splitlines() if line.strip())
    return ModelInfo(name=name, labels=names, size=size, template=template)
