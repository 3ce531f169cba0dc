"""TritonClassifier's error kinds without a Triton: an outage, a silent server, a refusal."""

import socket

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from emolens.errors import DeadlineExceeded, ModelError, Unavailable
from emolens.inference.triton import TritonClassifier


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def black_hole():
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def test_unreachable_triton_is_unavailable_after_retries():
    clf = TritonClassifier(f"127.0.0.1:{closed_port()}", timeout_s=1, retries=1, backoff_s=0.01)  # lazy: no call
    with pytest.raises(Unavailable, match="after 2 tries"):
        clf.info("smile")
    with pytest.raises(ConnectionError):  # the builtin base callers may catch
        clf.predict("emotion", np.zeros((1, 1, 48, 48), np.float32))


def test_silent_triton_is_deadline_exceeded(black_hole):
    clf = TritonClassifier(f"127.0.0.1:{black_hole}", timeout_s=0.3, retries=1, backoff_s=0.01)
    with pytest.raises(DeadlineExceeded):
        clf.predict("smile", np.zeros((1, 1, 48, 48), np.float32))


def test_a_silent_triton_is_unavailable_after_the_liveness_probe_not_the_deadline(black_hole):
    """A server that stops answering (frozen, a hung node) is an outage reported within about
    two probes, not after the 10 s deadline and its retries; its own liveness probe goes
    unanswered too (a busy server answers that one at once)."""
    import time

    clf = TritonClassifier(f"127.0.0.1:{black_hole}", timeout_s=10, retries=3, probe_s=0.3)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="liveness probe"):
        clf.predict_many({"smile": np.zeros((1, 1, 48, 48), np.float32), "emotion": np.zeros((1, 1, 48, 48))})
    assert time.monotonic() - started < 1.5


def test_a_refused_request_is_a_contract_break_at_once():
    clf = TritonClassifier(f"127.0.0.1:{closed_port()}", retries=3)
    calls = []

    def refuse():
        calls.append(1)
        raise InferenceServerException("unexpected shape for input 'image'", status="StatusCode.INVALID_ARGUMENT")

    with pytest.raises(ModelError, match="unexpected shape"):
        clf._call("infer smile", refuse)
    assert len(calls) == 1  # not retried


def test_a_model_outside_the_contract_is_a_model_error():
    clf = TritonClassifier(f"127.0.0.1:{closed_port()}")
    with pytest.raises(ModelError, match="unknown model"):
        clf.predict("age", np.zeros((1, 1, 48, 48), np.float32))
