"""Inference adapters behind one ``Classifier`` seam, chosen from a URL.

``onnx://PATH`` runs ONNX Runtime in-process on the model repository at PATH (relative paths
are resolved against the working directory; ``onnx://`` alone is the repository shipped in the
package); ``triton://HOST:PORT`` calls a Triton server.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from emolens.contract import EMOTION, MODELS, SMILE, ModelInfo, default_repository
from emolens.errors import ConfigError
from emolens.inference.base import Classifier, predict_many, softmax

__all__ = ["EMOTION", "MODELS", "SMILE", "Classifier", "ModelInfo", "make_classifier", "predict_many", "softmax"]


def make_classifier(url: str, threads: int = 0) -> Classifier:
    if url.startswith("onnx://"):
        from emolens.inference.onnx import OnnxClassifier

        path = url[len("onnx://") :]
        return OnnxClassifier(Path(path) if path else default_repository(), threads=threads)
    if url.startswith("triton://"):
        parsed = urlparse(url)
        if not parsed.hostname or not parsed.port:
            raise ConfigError(f"triton URL needs host and port: {url!r}")
        from emolens.inference.triton import TritonClassifier

        # triton://HOST:PORT?timeout=S&probe=P: the deadline of one call (retried within
        # TritonClassifier), and how long a call goes unanswered before the server's liveness is asked
        query = parse_qs(parsed.query)
        try:
            timeout_s = float(query.get("timeout", ["10"])[0])
            probe_s = float(query.get("probe", ["1"])[0])
        except ValueError:
            raise ConfigError(f"triton URL timeout and probe must be seconds: {url!r}") from None
        if not (0 < timeout_s < math.inf and 0 < probe_s < math.inf):
            raise ConfigError(f"triton URL timeout and probe must be positive seconds: {url!r}")
        return TritonClassifier(f"{parsed.hostname}:{parsed.port}", timeout_s=timeout_s, probe_s=probe_s)
    raise ConfigError(f"unknown inference URL {url!r}: use onnx://PATH or triton://HOST:PORT")
