"""The classifier seam: a batch of aligned grayscale crops in, logits out."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from emolens import metrics
from emolens.contract import EMOTION, MODELS, SMILE, ModelInfo

__all__ = ["EMOTION", "MODELS", "SMILE", "Classifier", "ModelInfo", "predict_many", "softmax"]


class Classifier(Protocol):
    """Runs the models of the model contract. Implementations: ``OnnxClassifier`` (in-process)
    and ``TritonClassifier`` (remote)."""

    def info(self, model: str) -> ModelInfo:
        """Input size, labels and crop box of ``model``."""
        ...

    def predict(self, model: str, images: np.ndarray) -> np.ndarray:
        """FP32 [N, 1, H, W] raw pixels -> FP32 [N, C] logits, in one call."""
        ...


def predict_many(classifier: Classifier, batches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All models' batches; concurrently where the classifier can (Triton), else one by one.
    Timed as one call (``emolens_inference_seconds``, by backend)."""
    backend = type(classifier).__name__.removesuffix("Classifier").lower()
    with metrics.INFERENCE_SECONDS.labels(backend).time():
        concurrent = getattr(classifier, "predict_many", None)
        if concurrent is not None:
            return dict(concurrent(batches))
        return {model: classifier.predict(model, x) for model, x in batches.items()}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
