"""Detection interval with tracking (emolens.vision.follow): faces followed between full
detections, and a full detection at once on a lost face, motion elsewhere or a scene cut."""

import cv2
import numpy as np
import pytest

from emolens import Analyzer, Settings
from emolens.errors import ConfigError
from emolens.vision.detect import BlazeFaceDetector, make_detector
from emolens.vision.follow import FOLLOW_MIN_SCORE, FaceFollower


class Counting:
    """The real full detector, counting its calls."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, 0

    def detect(self, image):
        self.calls += 1
        return self.inner.detect(image)


@pytest.fixture(scope="module")
def full():
    return make_detector("blazeface")


@pytest.fixture(scope="module")
def local():
    return BlazeFaceDetector("short", min_score=FOLLOW_MIN_SCORE)


@pytest.fixture(scope="module")
def head(astronaut):
    return cv2.resize(astronaut[40:220, 130:320], None, fx=0.8, fy=0.8)


def _frame(head, x, y, background=90):
    frame = np.full((480, 640, 3), background, np.uint8)
    frame[y : y + head.shape[0], x : x + head.shape[1]] = head
    return frame


def _centre_of_face(head, x, y):
    # the astronaut's face sits in the upper middle of the head-and-shoulders patch
    return x + 0.5 * head.shape[1], y + 0.45 * head.shape[0]


def _covers(det, point):
    return det.box[0] <= point[0] <= det.box[2] and det.box[1] <= point[1] <= det.box[3]


def test_a_moving_face_is_followed_between_full_detections(full, local, head):
    counting = Counting(full)
    follower = FaceFollower(counting, local, interval=100)
    for k in range(12):
        x, y = 40 + 30 * k, 100 + 6 * k  # 30 px a frame: a brisk walk at 5 fps
        faces = follower.detect(_frame(head, x, y))
        assert len(faces) == 1, f"frame {k}"
        assert _covers(faces[0], _centre_of_face(head, x, y)), f"frame {k}: box {faces[0].box}"
    assert counting.calls == 1  # the first frame only; the other 11 were followed
    assert follower.passes == {"full_first": 1, "follow": 11}


def test_full_detection_every_interval_frames(full, local, head):
    counting = Counting(full)
    follower = FaceFollower(counting, local, interval=4)
    passes = []
    for k in range(9):
        follower.detect(_frame(head, 100 + 5 * k, 120))
        passes.append(follower.last_pass)
    assert passes == ["full", "follow", "follow", "follow"] * 2 + ["full"]
    assert counting.calls == 3


def test_a_scene_cut_triggers_a_full_detection(full, local, head):
    follower = FaceFollower(full, local, interval=100)
    follower.detect(_frame(head, 200, 120, background=40))
    follower.detect(_frame(head, 204, 120, background=40))
    assert follower.last_pass == "follow"
    faces = follower.detect(_frame(head, 208, 120, background=200))  # the lights go on: another scene
    assert follower.last_pass == "full" and follower.passes["full_scene_cut"] == 1
    assert len(faces) == 1


def test_a_lost_face_triggers_a_full_detection(full, local, head):
    follower = FaceFollower(full, local, interval=100)
    follower.detect(_frame(head, 100, 120))
    frame = _frame(head, 100, 120)
    frame[120 : 120 + head.shape[0], 100 : 100 + head.shape[1]] = 90  # the face is gone
    frame[0:8, 0:8] = 0  # and nothing else moved enough to count as motion
    assert follower.detect(frame) == []
    assert follower.passes["full_lost"] == 1


def test_a_face_walking_in_is_detected_on_arrival_not_at_the_next_interval(full, local, head):
    follower = FaceFollower(full, local, interval=100)
    assert len(follower.detect(_frame(head, 20, 40))) == 1
    frame = _frame(head, 24, 40)
    small = cv2.resize(head, None, fx=0.7, fy=0.7)
    frame[250 : 250 + small.shape[0], 450 : 450 + small.shape[1]] = small
    faces = follower.detect(frame)
    assert follower.passes["full_motion"] == 1
    assert len(faces) == 2


def test_counts_stay_close_to_full_detection_on_the_demo_clip(full, local):
    """The demo clip (15 fps, 1-3 faces, a dim and a side-lit stretch): the faces found per
    frame with interval 5 against full detection on every frame."""
    from emolens.demo import demo_frames

    frames = demo_frames(seconds=8.0, fps=15)
    follower = FaceFollower(full, local, interval=5)
    reference = sum(len(full.detect(f)) for f in frames)
    followed = sum(len(follower.detect(f)) for f in frames)
    assert abs(followed - reference) <= 0.03 * reference
    assert follower.passes["follow"] >= len(frames) // 3  # it did save work


def test_analyzer_follows_on_video_and_detects_fully_on_stills(astronaut, head):
    analyzer = Analyzer(Settings.from_env({}, detect_interval=4), track=True)
    assert analyzer.follower is not None and analyzer.follower.interval == 4
    ids = [analyzer.analyze(_frame(head, 60 + 10 * k, 100))[0].track_id for k in range(4)]
    assert len(set(ids)) == 1
    assert analyzer.follower.passes == {"full_first": 1, "follow": 3}
    analyzer.reset()  # what `emolens analyze` does before each still image
    analyzer.analyze(astronaut)
    assert analyzer.follower.last_pass == "full"
    assert Analyzer(Settings.from_env({}, detect_interval=1), track=True).follower is None
    assert Analyzer(Settings.from_env({}, detect_interval=4)).follower is None  # stills: no tracking


def test_detect_interval_setting():
    assert Settings.from_env({"EMOLENS_DETECT_INTERVAL": "7"}).detect_interval == 7
    with pytest.raises(ConfigError, match="detect_interval"):
        Settings.from_env({}, detect_interval=0)
    with pytest.raises(ConfigError):
        FaceFollower(make_detector("blazeface-short"), make_detector("blazeface-short"), interval=0)
