"""The `fer` package's own pipeline (OpenCV Haar cascade + its quantised TFLite emotion model,
both shipped in the package) behind a line protocol, run by the peer's interpreter in its own
virtualenv: this file imports neither emolens nor anything the peer venv lacks, so it is run
by path (``python fer_worker.py``), not as a module of emolens.

One JSON object a line on stdin, one answer a line on stdout:

    {"op": "clip", "path": "demo.mp4"}      -> {"frames": 180, "faces": 150, "seconds": 2.1}
    {"op": "faces", "path": "faces.npz"}    -> {"seconds": 3.0, "faces": [[{"box": [x0, y0, x1, y1],
                                                 "emotions": {"angry": ..., ...}}, ...], ...]}
    {"op": "quit"}

``faces.npz`` holds ``frames`` (uint8 [N, H, W, 3], BGR). Times cover decoding (clip) and
``FER.detect_emotions`` per frame, as a user of the package would run it.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import cv2
import numpy as np
from fer.fer import FER  # its TensorFlow reads TF_CPP_MIN_LOG_LEVEL, set by emolens_tools.peers.FerPeer


def _faces(detector: FER, image: np.ndarray) -> list[dict]:
    out = []
    for face in detector.detect_emotions(image):
        x, y, w, h = (int(v) for v in face["box"])
        out.append({"box": [x, y, x + w, y + h], "emotions": {k: float(v) for k, v in face["emotions"].items()}})
    return out


def main() -> int:
    logging.disable(logging.INFO)  # fer logs each call at INFO to the root logger
    detector = FER()  # the package's defaults: Haar cascade, TFLite model
    detector.detect_emotions(np.zeros((480, 640, 3), np.uint8))  # load the model before timing
    answer = sys.stdout
    sys.stdout = sys.stderr  # anything the package prints goes to stderr, not into answers
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        if request["op"] == "clip":
            frames = faces = 0
            t0 = time.perf_counter()
            capture = cv2.VideoCapture(request["path"])
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                faces += len(_faces(detector, image))
                frames += 1
            capture.release()
            result: dict = {"frames": frames, "faces": faces, "seconds": time.perf_counter() - t0}
        elif request["op"] == "faces":
            images = np.load(request["path"])["frames"]
            t0 = time.perf_counter()
            found = [_faces(detector, image) for image in images]
            result = {"faces": found, "seconds": time.perf_counter() - t0}
        else:
            result = {"error": f"unknown op {request['op']!r}"}
        answer.write(json.dumps(result) + "\n")
        answer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
