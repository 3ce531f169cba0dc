import numpy as np
import pytest

from emolens.errors import ConfigError
from emolens.geometry import iou
from emolens.track import Tracker


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_ids_follow_moving_faces_and_new_faces_get_new_ids():
    t = Tracker(smoothing=0.0)
    p = np.array([[1.0], [1.0]])
    a = t.update([(0, 0, 50, 50), (200, 0, 250, 50)], p)
    b = t.update([(205, 2, 255, 52), (4, 1, 54, 51)], p)  # order swapped, both moved
    assert b == [a[1], a[0]]
    c = t.update([(4, 1, 54, 51), (205, 2, 255, 52), (400, 400, 450, 450)], np.ones((3, 1)))
    assert c[:2] == [a[0], a[1]] and c[2] not in a


def test_a_small_face_that_moves_its_own_width_a_frame_keeps_its_track():
    """A 40 px face walking past a camera sampled at 5 fps moves 43 px a frame: no overlap with
    its last box. Before the motion prediction and the distance gate, every frame was a new
    track (the trial's 2 people came out as 50 distinct faces)."""
    t = Tracker(smoothing=0.0)
    p = np.ones((2, 1))
    ids = set()
    for k in range(25):
        walker = (100 + 43 * k, 300, 140 + 43 * k, 340)
        other = (900 - 24 * k, 500 + 5 * k, 932 - 24 * k, 532 + 5 * k)  # 32 px, the other way
        ids |= set(t.update([walker, other], p))
    assert len(ids) == 2


def test_two_faces_far_apart_are_never_joined_by_the_distance_gate():
    t = Tracker(smoothing=0.0)
    (a,) = t.update([(100, 100, 140, 140)], np.ones((1, 1)))
    (b,) = t.update([(300, 100, 340, 140)], np.ones((1, 1)))  # 5 widths away: someone else
    assert a != b
    (c,) = t.update([(100, 100, 200, 200)], np.ones((1, 1)))  # 2.5x the size: not the same face
    assert c not in (a, b)


def test_smoothing_damps_flicker():
    t = Tracker(smoothing=0.6)
    labels = []
    for i in range(20):
        raw = np.array([[0.8, 0.2]]) if i % 4 != 3 else np.array([[0.3, 0.7]])  # one noisy frame in four
        (tid,) = t.update([(0, 0, 50, 50)], raw)
        labels.append(int(np.argmax(t.smoothed(tid))))
    assert labels == [0] * 20  # raw argmax flips 5 times, smoothed never


def test_tracks_expire_after_max_missed():
    t = Tracker(max_missed=2)
    (first,) = t.update([(0, 0, 50, 50)], np.ones((1, 1)))
    for _ in range(3):
        t.update([], np.zeros((0, 1)))
    assert t.active == 0
    (again,) = t.update([(0, 0, 50, 50)], np.ones((1, 1)))
    assert again != first


def test_bad_smoothing_rejected():
    with pytest.raises(ConfigError, match="smoothing"):
        Tracker(smoothing=1.0)


def test_restarted_trackers_never_reuse_track_ids():
    """A detector restarted for the same camera must not hand out ids already stored: the
    distinct-visitor count (tracks per minute) rests on them."""
    import numpy as np

    from emolens.track import unique_first_id

    boxes = [(0, 0, 10, 10), (50, 0, 60, 10), (100, 0, 110, 10)]
    feats = np.eye(3)
    first = Tracker(first_id=unique_first_id()).update(boxes, feats)
    restarted = Tracker(first_id=unique_first_id()).update(boxes, feats)
    assert len(set(first) | set(restarted)) == 6
    assert all(0 < i < 2**63 for i in first + restarted)  # fits the int64 column and proto field
    assert Tracker().update(boxes, feats) == [1, 2, 3]  # local numbering stays the default (analyze)
