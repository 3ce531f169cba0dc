"""The Analyzer end to end on real photos: one model call per frame, every shape of input."""

import cv2
import numpy as np
import pytest

from emolens import Analyzer, Settings
from emolens.errors import InputError
from emolens.inference.onnx import OnnxClassifier
from emolens.pipeline import to_bgr
from emolens.results import EMOTIONS
from tests.conftest import MODEL_REPO


class CountingClassifier:
    """Wraps the real ONNX classifier and records each call's batch size."""

    def __init__(self) -> None:
        self.inner = OnnxClassifier(MODEL_REPO)
        self.calls: list[tuple[str, int]] = []

    def info(self, model):
        return self.inner.info(model)

    def predict(self, model, images):
        self.calls.append((model, len(images)))
        return self.inner.predict(model, images)


@pytest.fixture(scope="module")
def three_faces(astronaut):
    head = astronaut[40:220, 130:320]
    frame = np.full((480, 640, 3), 90, np.uint8)
    for x, y, s in ((20, 40, 1.0), (260, 60, 0.7), (450, 250, 0.8)):
        patch = cv2.resize(head, None, fx=s, fy=s)
        frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return frame


def test_all_faces_of_a_frame_share_one_call_per_model(three_faces):
    clf = CountingClassifier()
    faces = Analyzer(Settings.from_env(), classifier=clf).analyze(three_faces)
    assert len(faces) == 3
    assert sorted(clf.calls) == [("emotion", 3), ("smile", 3)]


def test_batch_of_frames_is_one_call_per_model(three_faces, astronaut):
    clf = CountingClassifier()
    per_frame = Analyzer(Settings.from_env(), classifier=clf).analyze_batch([three_faces, astronaut, three_faces])
    assert [len(f) for f in per_frame] == [3, 1, 3]
    assert sorted(clf.calls) == [("emotion", 7), ("smile", 7)]


def test_batch_and_single_calls_agree(analyzer, three_faces):
    single = analyzer.analyze(three_faces)
    batched = analyzer.analyze_batch([three_faces, three_faces])[1]
    for a, b in zip(single, batched, strict=True):
        assert a.box == b.box
        assert a.smile == pytest.approx(b.smile, abs=1e-5)


def test_result_fields(analyzer, astronaut):
    (face,) = analyzer.analyze(astronaut)
    assert set(face.emotions) == set(EMOTIONS)
    assert sum(face.emotions.values()) == pytest.approx(1.0, abs=1e-4)
    assert 0.0 <= face.smile <= 1.0 and 0.0 <= face.quality <= 1.0
    assert face.track_id is None  # no tracking on stills
    assert len(face.landmarks) == 6


def test_tracking_smooths_and_keeps_ids(astronaut):
    analyzer = Analyzer(Settings.from_env(smoothing=0.8), track=True)
    ids, smiles = [], []
    for dx in range(0, 40, 4):
        frame = np.roll(astronaut, dx, axis=1)
        (face,) = analyzer.analyze(frame)
        ids.append(face.track_id)
        smiles.append(face.smile)
    assert len(set(ids)) == 1
    analyzer.reset()
    (face,) = analyzer.analyze(astronaut)
    assert face.track_id == 1  # a fresh tracker after reset


def test_input_conversions(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    assert to_bgr(gray).shape == astronaut.shape
    assert to_bgr(astronaut.astype(np.uint16) * 257).dtype == np.uint8
    np.testing.assert_array_equal(to_bgr(astronaut.astype(np.float32) / 255.0), astronaut)
    for bad in (np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4), np.int64)):
        with pytest.raises(InputError):
            to_bgr(bad)
