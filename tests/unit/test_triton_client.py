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


def test_retries_wait_by_the_one_backoff_policy(caplog):
    """Both retry loops (a config read, an inference) wait ``backoff_s`` doubled each try, as
    ``retry.Backoff`` without jitter computes it."""
    from emolens.retry import Backoff

    clf = TritonClassifier(f"127.0.0.1:{closed_port()}", timeout_s=1, retries=3, backoff_s=0.01)
    want = Backoff(initial_s=0.01, maximum_s=1.0, jitter=0.0)
    expected = [f"delay_s={want.next_delay():.2f}" for _ in range(3)]
    with caplog.at_level("WARNING", logger="emolens.inference.triton"), pytest.raises(Unavailable):
        clf.info("smile")
    delays = [m.split()[-1] for m in caplog.messages if m.startswith("event=triton_retry")]
    assert delays == expected == ["delay_s=0.01", "delay_s=0.02", "delay_s=0.04"]


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
