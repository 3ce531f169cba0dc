"""Detector precision: things that are not faces (a cat, textures, clutter) must not come out
as confident, high-quality faces, and real faces must still pass."""

import cv2
import numpy as np
import pytest

from emolens import Analyzer, Settings
from emolens.vision.quality import assess
from emolens_tools.testframes import non_face_frames, pasted_faces
from tests.conftest import MODEL_REPO


@pytest.fixture(scope="module")
def still_analyzer():
    return Analyzer(Settings.from_env({}, inference=f"onnx://{MODEL_REPO}"))


def test_the_cat_is_not_a_usable_face(still_analyzer):
    """The reported case: scikit-image's cat photo came back as a face with quality 1.0. As the
    file a user passes (451x300), in a 640x480 frame and enlarged 2x."""
    frames = {f.name: f.image for f in non_face_frames(clutter=0)}
    for name in ("chelsea-native", "chelsea", "chelsea-zoom2"):
        faces = still_analyzer.analyze(frames[name])
        assert faces, f"the detector no longer takes {name} for a face: this test needs a new example"
        assert all(f.low_quality and f.quality < still_analyzer.settings.quality_threshold for f in faces), name


@pytest.mark.parametrize("variant", ["jpeg70", "jpeg75", "jpeg80", "jpeg90", "jpeg100", "x0.75", "x1.25", "x2"])
def test_the_cat_saved_or_scaled_as_users_do_is_not_a_usable_face(still_analyzer, variant):
    """A fresh-clone trial found the cat usable ("happy", quality 0.41) as PIL and scikit-image
    save a JPEG (quality 75), at q70-q100 and scaled 0.75-2x, though PNG and OpenCV's q95 were
    not: a third, tighter look (vision.follow.TIGHT_REGION) settles it."""
    cat = {f.name: f.image for f in non_face_frames(clutter=0)}["chelsea-native"]
    if variant.startswith("jpeg"):
        _, buf = cv2.imencode(".jpg", cat, [cv2.IMWRITE_JPEG_QUALITY, int(variant[4:])])
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    else:
        k = float(variant[1:])
        image = cv2.resize(cat, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    faces = still_analyzer.analyze(image)
    assert all(f.low_quality for f in faces), [(round(f.quality, 2), f.label) for f in faces]


def test_no_false_face_above_the_quality_threshold_on_the_non_face_set(still_analyzer):
    false = [(f.name, face) for f in non_face_frames() for face in still_analyzer.analyze(f.image)]
    usable = [(name, round(face.quality, 2)) for name, face in false if not face.low_quality]
    assert usable == []
    assert len(false) <= 12  # 8 measured on these 74 frames; each of them flagged, as checked above


def test_real_faces_keep_their_quality(still_analyzer, face_frames):
    for condition in ("plain", "side_lit"):
        (face,) = still_analyzer.analyze(face_frames[condition])
        assert face.quality > 0.6 and not face.low_quality, condition


def test_faceness_scales_the_quality_by_the_detectors_confidence(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)[70:175, 174:279]
    landmarks = np.float32([[205, 102], [247, 105], [225, 128], [224, 147], [182, 110], [271, 115]])
    sure = assess(gray, landmarks, 105, confidence=0.9)
    assert sure.faceness == 1.0 and sure.score == assess(gray, landmarks, 105).score
    unsure = assess(gray, landmarks, 105, confidence=0.5)
    assert unsure.faceness < 0.35 and unsure.score < 0.35  # a sharp, frontal, well-lit non-face
    assert assess(gray, landmarks, 105, confidence=0.3).score == 0.0


def test_pasted_real_faces_are_found_and_usable(still_analyzer, data_dir):
    """60 FER2013 test faces pasted at 192 px over clutter: faceness must not cost real faces."""
    found = usable = 0
    faces = list(pasted_faces("emotion", 60, data_dir=data_dir))
    for p in faces:
        hits = [
            f
            for f in still_analyzer.analyze(p.image)
            if f.box[0] <= p.centre[0] <= f.box[2] and f.box[1] <= p.centre[1] <= f.box[3]
        ]
        found += bool(hits)
        usable += any(not f.low_quality for f in hits)
    assert found >= 0.93 * len(faces)
    assert usable >= 0.85 * len(faces)


def test_stills_read_faceness_more_strictly_than_followed_video(still_analyzer):
    """A still has one look at each face (STILL_FACENESS_RAMP); video keeps the gentler ramp
    that held the interval's statistics within 2% (FACENESS_RAMP). Same cat, same detection."""
    from emolens.vision.quality import FACENESS_RAMP, STILL_FACENESS_RAMP

    assert STILL_FACENESS_RAMP[0] > FACENESS_RAMP[0]
    cat = {f.name: f.image for f in non_face_frames(clutter=0)}["chelsea-native"]
    video = Analyzer(still_analyzer.settings, classifier=still_analyzer.classifier, track=True)
    (still,), (followed,) = still_analyzer.analyze(cat), video.analyze(cat, 0.0)
    assert still.detection_score == followed.detection_score
    assert still.quality < followed.quality
