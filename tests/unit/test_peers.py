"""The peer bench (emolens bench --only peers): its scoring rule, and the fer worker's protocol
when the peer venv is installed (`emolens dev peers`)."""

import numpy as np
import pytest

from emolens_tools.bench import _face_scores
from emolens_tools.peers import FerPeer, PeerError, peers_dir


def test_a_face_is_found_when_a_box_holds_its_centre_and_scored_by_its_top_emotion():
    truth = [(100.0, 100.0, 3), (300.0, 200.0, 4), (500.0, 400.0, 0)]
    found = [
        [((50, 50, 150, 150), 3)],  # found, right
        [((0, 0, 40, 40), 4), ((250, 150, 350, 250), 6)],  # found by the second box, wrong
        [],  # missed
    ]
    assert _face_scores(found, truth) == {"found": 2 / 3, "accuracy": 1 / 3, "accuracy_on_found": 0.5}


def test_a_missing_peer_venv_is_a_clear_error(tmp_path):
    with pytest.raises(PeerError, match="emolens dev peers"):
        FerPeer(tmp_path / "nope")


@pytest.mark.skipif(not (peers_dir() / "fer" / "bin" / "python").exists(), reason="no fer venv: emolens dev peers")
def test_fer_worker_answers_over_its_protocol(astronaut, tmp_path):
    import cv2

    frame = cv2.resize(astronaut, (640, 480))
    npz = tmp_path / "frames.npz"
    np.savez(npz, frames=np.stack([frame, np.zeros_like(frame)]))
    with FerPeer(peers_dir() / "fer") as peer:
        answer = peer.faces(npz)
    with_face, blank = answer["faces"]
    assert blank == [] and len(with_face) == 1
    x0, y0, x1, y1 = with_face[0]["box"]
    assert x0 < 280 < x1 and y0 < 110 < y1  # the astronaut's face
    assert set(with_face[0]["emotions"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
