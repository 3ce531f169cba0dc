"""Export trained networks (one, or an ensemble) into the Triton model-repository layout of the
model contract, as an int8 graph by default."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from emolens.contract import INPUT_NAME, OUTPUT_NAME, training_folder, write_model_files
from emolens.inference.base import softmax
from emolens_tools.training.loop import full_weights, half_weights
from emolens_tools.training.model import Ensemble, build_network
from emolens_tools.training.tasks import TaskSpec


def load_pytorch(folder: Path, spec: TaskSpec) -> Ensemble:
    """The PyTorch twin of a repository's ONNX model from the weights in ``folder/pytorch.pt``
    (:func:`emolens.contract.training_folder`).

    The network shape comes from ``training.json``, not from today's recipe.
    """
    state = torch.load(folder / "pytorch.pt")
    meta_path = folder / "training.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    # Exports from before shapes were recorded (sessions 1-3) are all this VGG-style shape;
    # shape_of records no arch for VGG-style networks.
    shape = {"channels": (32, 48, 96, 192), "reps": (1, 2, 2, 2), "arch": meta.get("arch", "vgg")}
    if "channels" in meta:
        shape.update(channels=tuple(meta["channels"]), reps=tuple(meta["reps"]))
    # Since session 8 each member records its own shape (an ensemble may mix architectures).
    records = meta.get("members") or [{}] * len(state["members"])
    if len(records) != len(state["members"]):
        held = len(state["members"])
        raise ValueError(f"{meta_path} describes {len(records)} networks, {folder / 'pytorch.pt'} holds {held}")
    nets = []
    for record in records:
        own = record.get("shape", {})
        own = {key: tuple(v) if isinstance(v, list) else v for key, v in own.items()}
        nets.append(build_network(dataclasses.replace(spec, **{**shape, **own})))
    weights = [float(record.get("weight", 1.0)) for record in records]
    model = Ensemble(nets, flip=bool(meta.get("flip_tta", False)), weights=weights)
    for net, weights in zip(model.members, state["members"], strict=True):
        net.load_state_dict(full_weights(weights))
    return model.eval()


class _Calibration(CalibrationDataReader):
    def __init__(self, images: np.ndarray, batch: int = 64) -> None:
        self._batches = iter(
            [{INPUT_NAME: images[i : i + batch].astype(np.float32)[:, None]} for i in range(0, len(images), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> None:
    """Static int8 quantisation (QDQ, per-channel int8 weights, uint8 activations) calibrated
    on training crops. The input stays FP32 raw pixels and the output FP32 logits, so the
    model contract does not change; the per-image standardisation stays in float."""
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        quantize_static(
            str(pre),
            str(out_path),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def export(
    model: nn.Module,
    spec: TaskSpec,
    repo: Path,
    sample: np.ndarray,
    crop_box: np.ndarray,
    meta: dict[str, object],
    calibration: np.ndarray,
    quantize: bool = True,
) -> str:
    """Write ``repo/<task>/{config.pbtxt,labels.txt,1/model.onnx}`` (what Triton serves) and,
    beside the repository, ``model_training/<task>/{pytorch.pt,training.json}``.

    ``model`` is an ``Ensemble``. The fp32 graph must match PyTorch on ``sample`` (uint8
    [N, H, W]) to 1e-3; with ``quantize`` the shipped graph is int8 and must pick the same
    class as the fp32 graph on at least 97% of ``sample``. Returns a one-line summary of
    these checks, which also goes into training.json.
    """
    model = model.eval().float()
    out_dir = repo / spec.name
    (out_dir / "1").mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "1" / "model.onnx"
    x = sample.astype(np.float32)[:, None]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        torch.onnx.export(
            model,
            (torch.zeros(2, 1, spec.size, spec.size),),
            str(fp32_path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        fp32_session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
        fp32 = fp32_session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        diff = float(np.abs(fp32 - ref).max())
        if diff > 1e-3:
            raise RuntimeError(f"ONNX Runtime and PyTorch disagree on {spec.name}: max |diff| = {diff:.2e}")
        checks: dict[str, object] = {"fp32_vs_pytorch_max_abs_diff": diff, "precision": "fp32"}
        if quantize:
            quantize_int8(fp32_path, onnx_path, calibration)
            int8 = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
                [OUTPUT_NAME], {INPUT_NAME: x}
            )[0]
            agree = float((int8.argmax(1) == fp32.argmax(1)).mean())
            prob_diff = float(np.abs(softmax(int8) - softmax(fp32)).max())
            if agree < 0.97:
                raise RuntimeError(f"int8 {spec.name} picks the fp32 class on only {agree:.1%} of the sample")
            checks.update(precision="int8", int8_top1_agreement=agree, int8_max_prob_diff=prob_diff)
        else:
            shutil.copyfile(fp32_path, onnx_path)
    write_model_files(repo, spec.name, spec.size, crop_box)
    records = training_folder(repo, spec.name)
    records.mkdir(parents=True, exist_ok=True)
    (records / "training.json").write_text(json.dumps({**meta, "export": checks}, indent=2) + "\n")
    # The PyTorch weights travel with the ONNX file so tests can check the two still agree;
    # fp16 halves the file (the int8 graph is much further from fp32 than fp16 is).
    members = getattr(model, "members", [model])
    torch.save({"members": [half_weights(m.state_dict()) for m in members]}, records / "pytorch.pt")
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in checks.items())
