"""In-process inference with ONNX Runtime on the model repository's model.onnx files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from emolens.contract import INPUT_NAME, MODELS, OUTPUT_NAME, ModelInfo, load_model_info
from emolens.errors import ModelError


class OnnxClassifier:
    """>>> clf = OnnxClassifier(default_repository())  # doctest: +SKIP
    >>> clf.predict("smile", np.zeros((3, 1, 48, 48), np.float32)).shape  # doctest: +SKIP
    (3, 2)
    """

    def __init__(self, repo: Path, threads: int = 0, models: tuple[str, ...] = MODELS) -> None:
        if not repo.is_dir():
            raise ModelError(f"model repository {repo} not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Idle intra-op threads would otherwise spin between runs: the pipeline calls the
        # models once a frame, between BlazeFace and video decoding, and on 2 cores those
        # spinning threads took the CPU from them (the demo clip ran at 47 against 115
        # frames/s without spinning, alternating rounds of one run), and even back-to-back
        # batches of 64 ran faster without it on a shared machine (docs/benchmarks.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._info: dict[str, ModelInfo] = {}
        self._sessions: dict[str, ort.InferenceSession] = {}
        for name in models:
            info = load_model_info(repo, name)
            path = repo / name / "1" / "model.onnx"
            if not path.exists():
                raise ModelError(f"model {name!r}: {path} not found")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            inputs, outputs = session.get_inputs(), session.get_outputs()
            if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
                raise ModelError(
                    f"model {name!r} breaks the contract: needs input {INPUT_NAME!r} and output {OUTPUT_NAME!r}"
                )
            self._info[name], self._sessions[name] = info, session

    def info(self, model: str) -> ModelInfo:
        if model not in self._info:
            raise ModelError(f"unknown model {model!r}: this repository serves {', '.join(self._info)}")
        return self._info[model]

    def predict(self, model: str, images: np.ndarray) -> np.ndarray:
        info = self.info(model)
        if len(images) == 0:
            return np.zeros((0, len(info.labels)), np.float32)
        try:
            out = self._sessions[model].run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, np.float32)})[0]
        except (Fail, InvalidArgument, RuntimeException) as exc:  # e.g. crops of the wrong shape
            raise ModelError(f"model {model!r}: ONNX Runtime refused the batch {images.shape}: {exc}") from exc
        return np.asarray(out, np.float32)
