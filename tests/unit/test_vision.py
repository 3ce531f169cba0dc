import itertools

import cv2
import numpy as np
import pytest

from emolens.vision.align import align_face, similarity_to_template
from emolens.vision.detect import BlazeFaceDetector, HaarFaceDetector, TiledDetector, make_detector
from emolens.vision.preprocess import noise_sigma, preprocess
from emolens.vision.quality import assess

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


def test_similarity_recovers_rotation_scale_shift():
    tpl = np.float32([[15, 20], [33, 19], [24, 29], [25, 37]])
    angle = np.deg2rad(25)
    rot = 3.0 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = (tpl @ rot.T + [200, 80]).astype(np.float32)
    m = similarity_to_template(src, tpl)
    mapped = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(mapped, tpl, atol=1e-3)


def test_align_puts_landmarks_on_the_template():
    tpl = np.float32([[15, 20], [33, 19], [24, 29], [25, 37]])
    img = np.zeros((300, 300), np.uint8)
    angle = np.deg2rad(-15)
    rot = 3.5 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = np.vstack([tpl @ rot.T + [60, 90], [[0, 0], [0, 0]]]).astype(np.float32)
    for x, y in pts[:4]:
        cv2.circle(img, (int(x), int(y)), 4, 255, -1)
    crop = align_face(img, pts, tpl, 48)
    assert crop.shape == (48, 48)
    for x, y in tpl:
        assert crop[round(y), round(x)] > 100


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
