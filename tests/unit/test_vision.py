import itertools

import cv2
import numpy as np
import pytest

from emolens.errors import InputError
from emolens.geometry import overlaps
from emolens.vision.align import align_face, crop_transform
from emolens.vision.detect import (
    BlazeFaceDetector,
    HaarFaceDetector,
    TiledDetector,
    letterbox,
    make_detector,
    nms_groups,
)
from emolens.vision.preprocess import noise_sigma, preprocess
from emolens.vision.quality import assess
from emolens_tools.training.canvas import detection_at, measure_crop_box

FACE_BOX = (174, 70, 279, 175)  # the astronaut's face, measured by hand on the photo


def _covers_face(det, box=FACE_BOX):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return det.box[0] <= cx <= det.box[2] and det.box[1] <= cy <= det.box[3]


@pytest.fixture(scope="module")
def detector():
    return make_detector("blazeface")


@pytest.mark.parametrize("condition", ["plain", "rotated30", "dark", "side_lit"])
def test_blazeface_finds_the_face_under_hard_conditions(detector, face_frames, condition):
    image = face_frames[condition]
    if condition == "rotated30":
        # rotation about the image centre moves the face: rotate the expected centre too
        h, w = image.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0)
        c = m @ np.array([(FACE_BOX[0] + FACE_BOX[2]) / 2, (FACE_BOX[1] + FACE_BOX[3]) / 2, 1.0])
        box = (c[0] - 1, c[1] - 1, c[0] + 1, c[1] + 1)
    else:
        box = FACE_BOX
    faces = detector.detect(image)
    assert len(faces) == 1
    assert _covers_face(faces[0], box)
    assert faces[0].landmarks.shape == (6, 2)


def test_several_faces_in_one_frame(detector, astronaut):
    head = astronaut[40:220, 130:320]
    frame = np.full((480, 640, 3), 90, np.uint8)
    for x, y, s in ((20, 40, 1.0), (260, 60, 0.7), (450, 250, 0.8)):
        patch = cv2.resize(head, None, fx=s, fy=s)
        frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    faces = detector.detect(frame)
    assert len(faces) == 3
    xs = sorted((f.box[0] + f.box[2]) / 2 for f in faces)
    assert xs[0] < 200 < xs[1] < 420 < xs[2]


def test_yawed_face_is_found(detector, astronaut):
    """A perspective squeeze of one side stands in for ~45 degrees of yaw."""
    h, w = astronaut.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[0, 0], [w * 0.55, h * 0.12], [w * 0.55, h * 0.88], [0, h]])
    yawed = cv2.warpPerspective(astronaut, cv2.getPerspectiveTransform(src, dst), (w, h))
    faces = detector.detect(yawed)
    assert len(faces) == 1


def test_blank_and_tiny_frames_have_no_faces(detector):
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((8, 8, 3), 255, np.uint8)) == []


def test_haar_fallback_finds_frontal_face(astronaut):
    faces = HaarFaceDetector().detect(astronaut)
    assert any(_covers_face(f) for f in faces)


def test_tiles_cover_the_long_side():
    assert TiledDetector.tiles(640, 480) == [(0, 0, 480), (80, 0, 480), (160, 0, 480)]
    assert TiledDetector.tiles(480, 640) == [(0, 0, 480), (0, 80, 480), (0, 160, 480)]
    assert TiledDetector.tiles(500, 480) == []


def test_unknown_detector_is_a_config_error():
    from emolens.errors import ConfigError

    with pytest.raises(ConfigError):
        make_detector("yolo")
    with pytest.raises(ConfigError):
        BlazeFaceDetector("medium")


def test_crop_transform_puts_the_box_where_the_crop_box_says():
    crop_box = np.float32([24.0, 27.5, 40.0])
    m = crop_transform((210, 130, 330, 250), crop_box)
    centre, left, right = (m @ [[270, 210, 330], [190, 190, 190], [1, 1, 1]]).T
    np.testing.assert_allclose(centre, [24.0, 27.5], atol=1e-4)
    np.testing.assert_allclose(right[0] - left[0], 40.0, atol=1e-4)  # box width 120 px -> 40 crop px
    assert m[0, 1] == 0 and m[1, 0] == 0  # no rotation: the training crops keep the head's roll
    with pytest.raises(InputError, match="empty face box"):
        crop_transform((10, 10, 10, 40), crop_box)


def test_align_cuts_the_same_crop_at_any_scale_and_place():
    """A face shown 4x larger somewhere in a frame comes back as the original crop."""
    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 1.5)
    frame = np.zeros((480, 640), np.uint8)
    frame[100:292, 300:492] = cv2.resize(crop, (192, 192), interpolation=cv2.INTER_CUBIC)
    crop_box = np.float32([24.0, 26.0, 40.0])  # box centre 2 px below the crop centre
    box = (300 + 4 * 4, 100 + 4 * 6, 300 + 4 * 44, 100 + 4 * 46)  # that box, in frame pixels
    out = align_face(frame, box, crop_box, 48)
    assert out.shape == (48, 48) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - crop).mean() < 3.0
    shifted = align_face(frame, (box[0] + 16, box[1], box[2] + 16, box[3]), crop_box, 48)
    assert np.abs(shifted.astype(int) - crop).mean() > 5.0  # a wrong box gives a different crop


def test_measure_crop_box_on_real_face(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    crop = cv2.resize(gray[60:190, 160:290], (48, 48), interpolation=cv2.INTER_AREA)
    crop_box, found = measure_crop_box([crop], make_detector("blazeface"), upscale=4)
    assert found == 1.0
    assert 18 < crop_box[0] < 30 and 18 < crop_box[1] < 32 and 25 < crop_box[2] < 48


def test_detection_at_picks_the_most_confident_box_holding_the_point():
    class D:
        def __init__(self, box, score):
            self.box, self.score = box, score

    faces = [D((0, 0, 10, 10), 0.9), D((0, 0, 50, 50), 0.6), D((20, 20, 60, 60), 0.8)]
    assert detection_at(faces, 25, 25).score == 0.8
    assert detection_at(faces, 5, 5).score == 0.9
    assert detection_at(faces, 100, 100) is None


def test_quality_penalises_blur_dark_small_and_profile(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)[70:175, 174:279]
    frontal = np.float32([[205, 102], [247, 105], [225, 128], [224, 147], [182, 110], [271, 115]])
    good = assess(gray, frontal, 105)
    assert good.score > 0.7
    assert assess(cv2.GaussianBlur(gray, (0, 0), 4), frontal, 105).sharpness < good.sharpness
    assert assess((gray * 0.08).astype(np.uint8), frontal, 105).exposure < 0.2
    assert assess(gray, frontal, 16).size == 0.0
    profile = frontal.copy()
    profile[2, 0] = 247  # nose tip in line with the left eye: a strong turn
    q = assess(gray, profile, 105)
    assert abs(q.yaw_deg) > 60 and q.pose < good.pose


def test_preprocess_modes(astronaut):
    rng = np.random.default_rng(0)
    face = cv2.resize(
        cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)[70:175, 174:279], (48, 48), interpolation=cv2.INTER_AREA
    )
    noisy = np.clip(face + rng.normal(0, 20, face.shape), 0, 255).astype(np.uint8)
    assert noise_sigma(noisy) > 2 * noise_sigma(face)
    assert preprocess(noisy, "none", 20, 17) is noisy
    assert noise_sigma(preprocess(noisy, "auto", 20, 17)) < 0.6 * noise_sigma(noisy)
    low = (rng.uniform(0, 1, (48, 48)) * 30 + 20).astype(np.uint8)
    assert preprocess(low, "clahe", 20, 17).std() > low.std()


def test_merged_detector_keeps_one_box_per_face():
    from emolens.vision.detect import Detection, MergedDetector

    pts = np.zeros((6, 2), np.float32)

    class Fixed:
        def __init__(self, name, faces):
            self.name, self.faces = name, faces

        def detect(self, image):
            return list(self.faces)

    tight = Detection((404, 93, 450, 138), 0.71, pts)
    loose = Detection((382, 68, 485, 171), 0.57, pts)  # the same face at another scale: IoU only 0.2
    other = Detection((100, 100, 160, 160), 0.9, pts)
    merged = MergedDetector([Fixed("a", [tight, other]), Fixed("b", [loose])]).detect(np.zeros((4, 4, 3), np.uint8))
    assert merged == [other, tight]


def test_demo_frame_with_three_faces_has_no_duplicates(detector):
    from emolens.demo import demo_frames

    frame = demo_frames()[100]
    faces = detector.detect(frame)
    centers = sorted(((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces)
    assert len(faces) >= 2
    for (x0, y0), (x1, y1) in itertools.combinations(centers, 2):
        assert abs(x0 - x1) + abs(y0 - y1) > 40  # no two boxes on one face


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (720, 1280), (303, 414), (200, 200), (96, 128)])
@pytest.mark.parametrize("size", [128, 192])
def test_letterbox_gives_the_pixels_of_padding_then_resizing(shape, size):
    rng = np.random.default_rng(size + shape[0])
    image = cv2.GaussianBlur(rng.integers(0, 256, (*shape, 3), np.uint8), (0, 0), 1.5)
    h, w = shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    assert np.array_equal(letterbox(image, size), cv2.resize(square, (size, size), interpolation=interp))


def test_nms_groups_are_the_greedy_groups_of_one_overlap_call_per_kept_face():
    def greedy(boxes, scores, iou):
        groups, remaining = [], np.argsort(-scores)
        while remaining.size:
            member = overlaps(boxes[remaining[0]], boxes[remaining]) > iou
            groups.append(remaining[member])
            remaining = remaining[~member]
        return groups

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        centres = rng.random((n, 2)).astype(np.float32)
        sizes = (rng.random((n, 2)) * 0.3 + 0.02).astype(np.float32)
        scores = rng.random(n).astype(np.float32)
        if trial % 2:  # repeated boxes and tied scores, as a region run reports them
            centres, scores = np.round(centres * 8) / 8, np.round(scores * 4) / 4
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
        got, want = nms_groups(boxes, scores, 0.3), greedy(boxes, scores, 0.3)
        assert [g.tolist() for g in got] == [g.tolist() for g in want]


def test_detector_threads_default_to_the_cores_up_to_a_cap(monkeypatch):
    from emolens.vision import detect

    assert detect.detector_threads(3) == 3  # as given
    monkeypatch.setattr(detect.os, "sched_getaffinity", lambda _pid: set(range(2)), raising=False)
    assert detect.detector_threads(0) == 2
    monkeypatch.setattr(detect.os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert detect.detector_threads(0) == detect.MAX_DETECTOR_THREADS
