"""Faces at CCTV distance (issue 21): faces of 32-100 px on 720p and 1080p frames are found,
rated usable and followed, and things that are not faces stay out, at the default
``min_face_px`` (32)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from emolens import Analyzer, Settings
from emolens.vision.detect import TILE_FACE_PX, make_detector, small_face_tiles
from emolens_tools.evaluation.small_faces import match
from emolens_tools.testframes import NON_FACE_PHOTOS, SceneFace, _photo, cctv_scenes
from tests.conftest import MODEL_REPO


@pytest.fixture(scope="module")
def stills():
    return Analyzer(Settings.from_env({}, inference=f"onnx://{MODEL_REPO}"))


# ---------------------------------------------------------------- tile geometry


@pytest.mark.parametrize("frame", [(640, 480), (1280, 720), (1920, 1080), (2560, 1440)])
@pytest.mark.parametrize("min_face", [24, 32, 48])
def test_every_face_the_tiles_are_for_lies_whole_in_one_tile_at_a_size_the_detector_sees(frame, min_face):
    w, h = frame
    tiles = small_face_tiles(w, h, min_face)
    whole_frame_from = TILE_FACE_PX * max(w, h) / 192
    rng = np.random.default_rng(3)
    for width in np.geomspace(min_face, max(whole_frame_from, min_face), 8):
        if width >= whole_frame_from:
            continue
        for _ in range(200):
            cx, cy = rng.uniform(width / 2, w - width / 2), rng.uniform(width / 2, h - width / 2)
            box = (cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2)
            holders = [
                t
                for t in tiles
                if t.x0 <= box[0]
                and box[2] <= t.x1
                and t.y0 <= box[1]
                and box[3] <= t.y1
                # in this tile the detector's 192 px input shows the face at least TILE_FACE_PX wide
                and width * 192 / max(t.x1 - t.x0, t.y1 - t.y0) >= TILE_FACE_PX - 1e-6
            ]
            assert holders, (frame, min_face, round(width), box)


def test_faces_narrower_than_the_measured_limit_are_low_quality(stills, astronaut):
    """At 24 px the emotion accuracy falls more than 5 points below full size: such a face is
    found but never counted as usable, however sharp; at 32 px it is usable."""
    from emolens.vision.quality import MIN_USABLE_WIDTH

    assert 24 < MIN_USABLE_WIDTH < 32
    for width, usable in ((22, False), (32, True)):
        image, drawn = _astronaut_scene(astronaut, (1280, 720), width, 4)
        face = match(stills.analyze(image), drawn)
        assert face is not None, width
        assert (not face.low_quality) is usable, (width, face.quality)


def test_a_huge_image_gets_at_most_max_tiles_by_looking_for_larger_faces():
    """A 6,300 x 6,300 image (under the 40 MP limit) at 32 px would be 1,287 tiles, seconds of
    detection per request; a 4 MP camera keeps its 32 px (132 tiles)."""
    from emolens.vision.detect import MAX_TILES, SmallFaceDetector

    class Nothing:
        name = "nothing"

        def detect(self, image):
            return []

    detector = SmallFaceDetector(Nothing(), Nothing(), 32)
    assert len(small_face_tiles(6300, 6300, 32)) > MAX_TILES
    huge = detector.tiles(6300, 6300)
    assert 0 < len(huge) <= MAX_TILES
    assert min(t.min_face for t in huge) > 32
    assert detector.tiles(2688, 1520) == small_face_tiles(2688, 1520, 32)


def test_no_tiles_where_the_whole_frame_already_sees_the_smallest_face():
    assert small_face_tiles(640, 480, 80) == []
    assert small_face_tiles(1920, 1080, 0) == []
    assert small_face_tiles(1920, 1080, 48)  # a 48 px face is 5 px of a whole 1080p frame


# ---------------------------------------------------------------- a real photo, small, in HD frames


def _astronaut_scene(
    astronaut: np.ndarray, frame: tuple[int, int], width: float, seed: int
) -> tuple[np.ndarray, SceneFace]:
    """scikit-image's astronaut (a real head-and-shoulders photo; her face box is 105 px at
    174-279, 70-175) scaled so her face is ``width`` wide, at a random place in a flat-grey-and-
    noise frame, mirrored on odd seeds."""
    rng = np.random.default_rng(seed)
    head = astronaut[0:300, 60:400]
    if seed % 2:
        head = head[:, ::-1]
    k = width / 105
    patch = cv2.resize(head, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    w, h = frame
    image = np.clip(rng.normal(rng.uniform(60, 180), 12, (h, w, 3)), 0, 255).astype(np.uint8)
    ph, pw = patch.shape[:2]
    x, y = int(rng.uniform(0, w - pw)), int(rng.uniform(0, h - ph))
    image[y : y + ph, x : x + pw] = patch
    fx = 226.5 - 60
    cx = x + ((340 - fx) * k if seed % 2 else fx * k)
    return image, SceneFace((cx, y + 122.5 * k), width, "photo", -1)


@pytest.mark.parametrize(
    ("frame", "width"), [((1280, 720), 32), ((1280, 720), 48), ((1920, 1080), 48), ((1920, 1080), 64)]
)
def test_a_real_head_and_shoulders_photo_is_found_and_usable_at_cctv_size(stills, astronaut, frame, width):
    """Before tiles: 1 of 20 found at 32 px on 720p, 2 of 20 at 48 px on 1080p."""
    usable = 0
    for seed in range(8):
        image, drawn = _astronaut_scene(astronaut, frame, width, seed)
        face = match(stills.analyze(image), drawn)
        usable += face is not None and not face.low_quality
    assert usable >= 7, f"{usable}/8 usable"


# ---------------------------------------------------------------- the targets on the small-face set

# (frame, face width, share usable). The targets are 95% at 64 px, 85% at 48 px and 70%
# at 32 px (720p). Measured on this set: 64 px 92-97% (55/60 on 1080p, 46/49 at 640x480: 2-3
# faces found but rated low quality, FER2013 faces the detector scores 0.57-0.64, below the
# still ramp's 0.70), so 64 px is held at 0.90 here, below the 0.95 (not met on this
# set; docs/model-card.md, Small faces).
TARGETS = [
    ((1920, 1080), 64, 0.90),
    ((1920, 1080), 48, 0.85),
    ((1280, 720), 64, 0.90),
    ((1280, 720), 48, 0.85),
    ((1280, 720), 32, 0.70),
    ((640, 480), 64, 0.90),
]


@pytest.mark.parametrize(("frame", "width", "target"), TARGETS)
def test_small_faces_of_the_test_splits_are_found_and_usable(stills, data_dir, frame, width, target):
    drawn = usable = 0
    for scene in cctv_scenes(frame, width, 15, seed=31, data_dir=data_dir):
        found = stills.analyze(scene.image)
        for face in scene.faces:
            drawn += 1
            m = match(found, face)
            usable += m is not None and not m.low_quality
    assert drawn >= 15
    assert usable >= target * drawn, f"{usable}/{drawn} usable at {width} px on {frame}"


def test_whole_frame_detection_alone_misses_them(data_dir):
    """The same set with min_face_px 0 (the detector before this change): what the tiles add."""
    whole = make_detector("blazeface")
    drawn = found = 0
    for scene in cctv_scenes((1280, 720), 48, 10, seed=31, data_dir=data_dir):
        dets = whole.detect(scene.image)
        for face in scene.faces:
            drawn += 1
            found += any(abs((d.box[0] + d.box[2]) / 2 - face.centre[0]) < face.width / 2 for d in dets)
    assert found <= 0.5 * drawn


# ---------------------------------------------------------------- precision


def _non_face_hd_frames() -> list[tuple[str, np.ndarray]]:
    """Each non-face photo scaled to fill a 720p and a 1080p frame, and at its shipped size in
    the middle of one."""
    out = []
    for name in NON_FACE_PHOTOS:
        native = _photo(name, native=True)
        if native is None:
            continue
        for w, h in ((1280, 720), (1920, 1080)):
            out.append((f"{name}-fill{w}", cv2.resize(native, (w, h))))
            nh, nw = native.shape[:2]
            if nh <= h and nw <= w:
                canvas = np.full((h, w, 3), 90, np.uint8)
                canvas[(h - nh) // 2 : (h - nh) // 2 + nh, (w - nw) // 2 : (w - nw) // 2 + nw] = native
                out.append((f"{name}-in{w}", canvas))
    return out


def test_no_usable_false_face_on_non_face_photos_in_hd_frames(stills):
    """Before the wider confirmation of tile-only faces, a coin at 46 px came out usable (0.41)."""
    frames = _non_face_hd_frames()
    assert len(frames) >= 50
    usable = [(name, round(f.quality, 2)) for name, image in frames for f in stills.analyze(image) if not f.low_quality]
    assert usable == []


def _emolens(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    env = {"EMOLENS_INFERENCE": f"onnx://{MODEL_REPO}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "emolens.cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )


def test_the_cli_rates_images_as_stills(tmp_path):
    """The cat as scikit-image ships it, as a PNG and a JPEG: before, ``analyze`` rated it with
    the video ramp and tracking on, and it came out usable (quality 0.43-0.47, 'happy')."""
    cat = _photo("chelsea", native=True)
    cv2.imwrite(str(tmp_path / "cat.png"), cat)
    cv2.imwrite(str(tmp_path / "cat.jpg"), cat)
    run = _emolens("analyze", "cat.png", "cat.jpg", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    faces = [json.loads(line) for line in run.stdout.splitlines()]
    assert faces, "the detector no longer takes the cat for a face: this test needs a new example"
    assert all(f["low_quality"] for f in faces), faces
    assert all(f["track_id"] is None for f in faces)  # stills are not tracked


def test_run_on_a_video_without_faces_counts_no_usable_face(tmp_path):
    """Non-face photos in 720p frames as a clip through the embedded platform: no usable face."""
    frames = [image for name, image in _non_face_hd_frames() if image.shape[1] == 1280]
    writer = cv2.VideoWriter(str(tmp_path / "noface.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 5, (1280, 720))
    for image in frames:
        for _ in range(3):
            writer.write(image)
    writer.release()
    db = f"sqlite:///{tmp_path / 'noface.db'}"
    run = _emolens("run", "--source", "noface.mp4", "--camera-id", "c1", "--db", db, "--fps", "5", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"{3 * len(frames)} frames analysed" in run.stderr, run.stderr
    stats = _emolens("stats", "--db", db, "--k", "1", "--format", "json", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    rows = json.loads(stats.stdout)
    assert rows and all(r["camera_id"] == "c1" for r in rows)
    # a bucket with no face at all is suppressed (k = 1); any other counts its faces
    assert sum(r.get("faces", 0) - r.get("low_quality", 0) for r in rows) == 0, rows


# ---------------------------------------------------------------- video: following small faces


def test_a_small_face_is_followed_between_sweeps_without_scanning_every_tile(astronaut):
    """A 40 px face drifting across a 720p clip at 5 fps: found on the first frame, kept with one
    track id, and between the sweeps (every ``tile_interval``) only the tiles around it are scanned."""
    settings = Settings.from_env({}, inference=f"onnx://{MODEL_REPO}")
    video = Analyzer(settings, track=True)
    image, drawn = _astronaut_scene(astronaut, (1280, 720), 40, 0)
    ids = []
    for i in range(20):
        shifted = np.roll(image, 4 * i, axis=1)
        faces = video.analyze(shifted, i / 5)
        face = match(faces, SceneFace((drawn.centre[0] + 4 * i, drawn.centre[1]), drawn.width, "photo", -1))
        assert face is not None and not face.low_quality, i
        ids.append(face.track_id)
    assert len(set(ids)) == 1
    scanned = video.follower.tiles_scanned
    every = len(video.detector.tiles(1280, 720))
    sweeps = int(3.8 // settings.tile_interval) + 1  # the clip's frames run from 0 to 3.8 s
    assert scanned["sweep"] == sweeps * every
    assert 0 < scanned["targeted"] < scanned["sweep"] / 4


def test_a_small_face_walking_its_own_width_a_frame_is_one_visitor(astronaut):
    """The trial's case: a 40 px face crossing a 720p camera sampled at 5 fps moves about its
    own width a frame. Before the tracker predicted motion it got a new track on almost every
    frame (2 people, 50 'distinct faces'), which also defeats k-anonymity."""
    video = Analyzer(Settings.from_env({}, inference=f"onnx://{MODEL_REPO}"), track=True)
    image, drawn = _astronaut_scene(astronaut, (1280, 720), 40, 2)
    ids = []
    for i in range(15):
        step = 40 * i if drawn.centre[0] < 640 else -40 * i
        faces = video.analyze(np.roll(image, step, axis=1), i / 5)
        face = match(faces, SceneFace((drawn.centre[0] + step, drawn.centre[1]), drawn.width, "photo", -1))
        if face is not None:
            ids.append(face.track_id)
    assert len(ids) >= 13
    assert len(set(ids)) == 1, ids
