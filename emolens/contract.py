"""The model contract, in one place: model names, labels, input sizes, the crop box, and the
Triton ``config.pbtxt`` that carries them, written by the export and read by every adapter.

A model repository holds ``<repo>/<model>/{config.pbtxt, labels.txt, 1/model.onnx}``. Input
``image`` is FP32 ``[N, 1, H, W]`` raw pixels 0..255, output ``logits`` FP32 ``[N, C]`` in the
order of :data:`LABELS`. The configs parse into :class:`emolens.v1.model_config_pb2.ModelConfig`
(Triton's own field names), from their text or from the JSON Triton serves.

>>> info = load_model_info(default_repository(), EMOTION)
>>> info.labels == LABELS[EMOTION] and info.size == INPUT_SIZES[EMOTION]
True
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format, text_format
from google.protobuf.message import Error as ProtobufError

from emolens.errors import ModelError
from emolens.v1.model_config_pb2 import ModelConfig, ModelInstanceGroup

SMILE = "smile"
EMOTION = "emotion"
MODELS = (SMILE, EMOTION)
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LABELS: dict[str, tuple[str, ...]] = {SMILE: ("no_smile", "smile"), EMOTION: EMOTIONS}
# Square input side of each model: SMILEsmileD's native 64 px keeps the mouth's detail;
# FER2013 is 48 px.
INPUT_SIZES: dict[str, int] = {SMILE: 64, EMOTION: 48}
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MAX_BATCH_SIZE = 128
CROP_KEY = "emolens_crop_box"

_HEADER = """\
# Written by emolens.contract: production Triton config (GPU, ONNX Runtime backend).
# The parameter emolens_crop_box says where the face detector's box sits in the input crop
# (centre x, centre y, width; crop pixels), measured on the training images.
"""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    labels: tuple[str, ...]
    size: int  # square input side
    # Where the face detector's box sits in the model's input crop, in crop pixels:
    # [centre x, centre y, box width]. Measured on the training crops at export.
    crop_box: np.ndarray


def default_repository() -> Path:
    """The model repository shipped inside the package (the two int8 ONNX models)."""
    return Path(str(files("emolens") / "model_repository"))


def training_folder(repo: Path, model: str) -> Path:
    """Where the training artefacts of ``repo``'s ``model`` lie: its PyTorch weights
    (``pytorch.pt``) and training record (``training.json``), beside the model repository in
    ``model_training/`` and never inside it (the repository holds what Triton serves). The
    wheel carries neither.

    >>> training_folder(Path("emolens/model_repository"), "smile").as_posix()
    'emolens/model_training/smile'
    """
    return repo.parent / "model_training" / model


def parse_crop_box(value: str, name: str) -> np.ndarray:
    """The ``emolens_crop_box`` parameter: "cx,cy,width" in crop pixels."""
    try:
        values = np.array([float(v) for v in value.split(",")], np.float32)
    except ValueError as exc:
        raise ModelError(f"{name}: {CROP_KEY} is not a list of numbers: {value!r}") from exc
    if values.size != 3 or values[2] <= 0:
        raise ModelError(f"{name}: {CROP_KEY} needs 3 numbers (cx, cy, width > 0), got {value!r}")
    return values


def model_config(name: str, size: int, crop_box: np.ndarray) -> ModelConfig:
    """The production config of model ``name`` (GPU instance, dynamic batching)."""
    config = ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=MAX_BATCH_SIZE)
    config.input.add(name=INPUT_NAME, data_type="TYPE_FP32", dims=[1, size, size])
    config.output.add(name=OUTPUT_NAME, data_type="TYPE_FP32", dims=[len(LABELS[name])], label_filename="labels.txt")
    config.dynamic_batching.preferred_batch_size.extend([32, 64])
    config.dynamic_batching.max_queue_delay_microseconds = 2000
    config.instance_group.add(count=1, kind=ModelInstanceGroup.KIND_GPU)
    config.parameters[CROP_KEY].string_value = ",".join(f"{v:.2f}" for v in np.ravel(crop_box))
    return config


def config_text(config: ModelConfig) -> str:
    return _HEADER + text_format.MessageToString(config)


def cpu_config(config: ModelConfig) -> ModelConfig:
    """The same model for the CPU Triton that installs here: python backend, CPU instances."""
    cpu = ModelConfig()
    cpu.CopyFrom(config)
    cpu.ClearField("platform")
    cpu.backend = "python"
    for group in cpu.instance_group:
        group.kind = ModelInstanceGroup.KIND_CPU
    return cpu


def parse_config_text(text: str, name: str) -> ModelConfig:
    try:
        return text_format.Parse(text, ModelConfig(), allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise ModelError(f"{name}: config.pbtxt does not parse: {exc}") from exc


def parse_config_json(config: dict[str, Any], name: str) -> ModelConfig:
    """The JSON form Triton's ``get_model_config(as_json=True)`` returns."""
    try:
        return json_format.ParseDict(config, ModelConfig(), ignore_unknown_fields=True)
    except (json_format.ParseError, ProtobufError) as exc:
        raise ModelError(f"{name}: model config from the server does not parse: {exc}") from exc


def model_info(config: ModelConfig, name: str, labels: tuple[str, ...] | None = None) -> ModelInfo:
    """Check ``config`` against the contract and describe the model.

    ``labels`` defaults to the contract's (Triton does not serve labels.txt to clients).
    """
    if name not in LABELS:
        raise ModelError(f"unknown model {name!r}: the contract has {', '.join(MODELS)}")
    inputs = [i for i in config.input if i.name == INPUT_NAME]
    if not inputs:
        raise ModelError(f"{name}: config declares no input {INPUT_NAME!r}")
    dims = list(inputs[0].dims)
    if len(dims) != 3 or dims[0] != 1:
        raise ModelError(f"{name}: input dims {dims} break the contract [1, H, W]")
    if dims[1] != dims[2]:
        raise ModelError(f"{name}: only square inputs are supported, got {dims[1]}x{dims[2]}")
    if CROP_KEY not in config.parameters:
        raise ModelError(f"{name}: config has no {CROP_KEY} parameter (re-export the model)")
    labels = LABELS[name] if labels is None else labels
    if labels != LABELS[name]:
        raise ModelError(f"{name}: labels {list(labels)} differ from the contract's {list(LABELS[name])}")
    crop_box = parse_crop_box(config.parameters[CROP_KEY].string_value, name)
    return ModelInfo(name=name, labels=labels, size=int(dims[1]), crop_box=crop_box)


def load_model_info(repo: Path, name: str) -> ModelInfo:
    """Describe ``repo/name`` from its config.pbtxt and labels.txt."""
    folder = repo / name
    config, labels = folder / "config.pbtxt", folder / "labels.txt"
    for path in (config, labels):
        if not path.exists():
            raise ModelError(f"model {name!r}: {path} not found (is {repo} a model repository?)")
    names = tuple(line.strip() for line in labels.read_text().splitlines() if line.strip())
    return model_info(parse_config_text(config.read_text(), name), name, names)


def write_model_files(repo: Path, name: str, size: int, crop_box: np.ndarray) -> Path:
    """Write ``config.pbtxt`` and ``labels.txt`` of ``repo/name`` (the ONNX file is the caller's)."""
    folder = repo / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(LABELS[name]) + "\n")
    (folder / "config.pbtxt").write_text(config_text(model_config(name, size, crop_box)))
    return folder
