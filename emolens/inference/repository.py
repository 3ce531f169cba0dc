"""Reading a model's description (input size, labels, crop geometry) from a Triton-layout
model repository: ``<repo>/<model>/{config.pbtxt,labels.txt,1/model.onnx}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emolens.errors import ModelError

CROP_KEY = "emolens_crop_box"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    labels: tuple[str, ...]
    size: int  # square input side
    # Where the face detector's box sits in the model's input crop, in crop pixels:
    # [centre x, centre y, box width]. Measured on the training crops at export.
    crop_box: np.ndarray


def parse_crop_box(value: str, name: str) -> np.ndarray:
    """The ``emolens_crop_box`` parameter: "cx,cy,width" in crop pixels."""
    try:
        values = np.array([float(v) for v in value.split(",")], np.float32)
    except ValueError as exc:
        raise ModelError(f"{name}: {CROP_KEY} is not a list of numbers: {value!r}") from exc
    if values.size != 3 or values[2] <= 0:
        raise ModelError(f"{name}: {CROP_KEY} needs 3 numbers (cx, cy, width > 0), got {value!r}")
    return values


def parse_config(text: str, name: str) -> tuple[int, np.ndarray]:
    """(input side, crop box) from config.pbtxt text."""
    dims = re.search(r"input\s*\[.*?dims:\s*\[\s*1\s*,\s*(\d+)\s*,\s*(\d+)\s*\]", text, re.S)
    if not dims:
        raise ModelError(f"{name}: config.pbtxt declares no input dims [1, H, W]")
    h, w = int(dims.group(1)), int(dims.group(2))
    if h != w:
        raise ModelError(f"{name}: only square inputs are supported, got {h}x{w}")
    crop = re.search(rf'key:\s*"{CROP_KEY}"\s*value\s*{{\s*string_value:\s*"([^"]+)"', text)
    if not crop:
        raise ModelError(f"{name}: config.pbtxt has no {CROP_KEY} parameter (re-export the model)")
    return h, parse_crop_box(crop.group(1), name)


def load_model_info(repo: Path, name: str) -> ModelInfo:
    folder = repo / name
    config, labels = folder / "config.pbtxt", folder / "labels.txt"
    for path in (config, labels):
        if not path.exists():
            raise ModelError(f"model {name!r}: {path} not found (is {repo} a model repository?)")
    size, crop_box = parse_config(config.read_text(), name)
    names = tuple(line.strip() for line in labels.read_text().splitlines() if line.strip())
    return ModelInfo(name=name, labels=names, size=size, crop_box=crop_box)
