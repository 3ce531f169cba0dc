"""Remote inference on NVIDIA Triton over gRPC (dynamic batching happens server-side).

Every call has a deadline; UNAVAILABLE and DEADLINE_EXCEEDED are retried with exponential
backoff, other errors are raised at once as ModelError.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from emolens.contract import INPUT_NAME, MODELS, OUTPUT_NAME, ModelInfo, model_info, parse_config_json
from emolens.errors import ModelError

log = logging.getLogger(__name__)

_RETRYABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED")


class TritonClassifier:
    def __init__(self, url: str, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2) -> None:
        try:
            import tritonclient.grpc as grpcclient
        except ImportError as exc:
            raise ModelError("triton:// needs tritonclient: pip install 'emolens[platform]'") from exc
        self._grpc = grpcclient
        self.url, self.timeout_s, self.retries, self.backoff_s = url, timeout_s, retries, backoff_s
        self.client = grpcclient.InferenceServerClient(url)
        self._info: dict[str, ModelInfo] = {}
        for name in MODELS:
            config = self._call(partial(self.client.get_model_config, name, as_json=True, client_timeout=timeout_s))
            self._info[name] = model_info(parse_config_json(config["config"], name), name)

    def _call(self, fn: Callable[[], Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except InferenceServerException as exc:
                retryable = any(code in str(exc.status()) for code in _RETRYABLE)
                if not retryable or attempt == self.retries:
                    raise ModelError(f"triton at {self.url}: {exc.message()}") from exc
                log.warning("event=triton_retry attempt=%d status=%s delay_s=%.2f", attempt + 1, exc.status(), delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def info(self, model: str) -> ModelInfo:
        return self._info[model]

    def predict(self, model: str, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, len(self._info[model].labels)), np.float32)
        x = np.ascontiguousarray(images, np.float32)
        inp = self._grpc.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = self._grpc.InferRequestedOutput(OUTPUT_NAME)
        result = self._call(lambda: self.client.infer(model, [inp], outputs=[out], client_timeout=self.timeout_s))
        return np.asarray(result.as_numpy(OUTPUT_NAME), np.float32)

    def predict_many(self, batches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send one request per model at once (async) and wait for all: the smile and emotion
        calls of a frame overlap instead of queueing behind each other."""
        if len(batches) < 2 or any(len(x) == 0 for x in batches.values()):
            return {m: self.predict(m, x) for m, x in batches.items()}
        done = threading.Event()
        results: dict[str, Any] = {}
        lock = threading.Lock()

        def callback(model: str, result: Any, error: Any) -> None:
            with lock:
                results[model] = error if error is not None else result
                if len(results) == len(batches):
                    done.set()

        for model, x in batches.items():
            x = np.ascontiguousarray(x, np.float32)
            inp = self._grpc.InferInput(INPUT_NAME, list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            self.client.async_infer(
                model,
                [inp],
                partial(callback, model),
                outputs=[self._grpc.InferRequestedOutput(OUTPUT_NAME)],
                client_timeout=self.timeout_s,
            )
        if not done.wait(self.timeout_s + 1):
            raise ModelError(f"triton at {self.url}: no answer within {self.timeout_s} s")
        out = {}
        for model, result in results.items():
            if not hasattr(result, "as_numpy"):
                # one failed: fall back to the synchronous path, which retries with backoff
                out[model] = self.predict(model, batches[model])
            else:
                out[model] = np.asarray(result.as_numpy(OUTPUT_NAME), np.float32)
        return out

    def statistics(self, model: str) -> dict[str, Any]:
        """Triton's own inference statistics for ``model`` (batch sizes it executed, counts)."""
        stats = self.client.get_inference_statistics(model, as_json=True)
        return dict(json.loads(json.dumps(stats)))
