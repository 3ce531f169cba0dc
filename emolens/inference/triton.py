"""Remote inference on NVIDIA Triton over gRPC (dynamic batching happens server-side).

Every call has a deadline (``timeout_s``, the URL's ``?timeout=``, 10 s by default: a loaded
server may take that long). UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED are retried
with exponential backoff; once the retries are spent an outage (or an overloaded server) is
raised as ``Unavailable`` and a missed deadline as ``DeadlineExceeded``. An inference left
unanswered for ``probe_s`` (``?probe=``, 1 s) makes the client ask the server's liveness; a
server that does not answer that either (frozen, or gone without closing its connections) is
``Unavailable`` at once, so the detector reports the outage within about two seconds instead of
after every deadline. Any other status is the server refusing what we sent, i.e. the model
contract is broken: ``ModelError`` at once.

Nothing is fetched when the client is made: the models' configs are read on first use, so a
service can start while Triton is still coming up and answers UNAVAILABLE until it is there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from emolens import logs
from emolens.contract import INPUT_NAME, MODELS, OUTPUT_NAME, ModelInfo, model_info, parse_config_json
from emolens.errors import DeadlineExceeded, MissingExtra, ModelError, Unavailable
from emolens.retry import Backoff

log = logging.getLogger(__name__)

_DEADLINE = "StatusCode.DEADLINE_EXCEEDED"
# RESOURCE_EXHAUSTED is Triton's full queue: the server is there but cannot serve now.
_OUTAGE = ("StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED")


class TritonClassifier:
    def __init__(
        self, url: str, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2, probe_s: float = 1.0
    ) -> None:
        try:
            import tritonclient.grpc as grpcclient
        except ImportError as exc:
            raise MissingExtra("triton://", "triton", exc.name) from exc
        self._grpc = grpcclient
        self.url, self.timeout_s, self.retries, self.backoff_s = url, timeout_s, retries, backoff_s
        self.probe_s = probe_s  # how long a call goes unanswered before health is asked
        self.client = grpcclient.InferenceServerClient(url)  # connects on the first call, not here
        self._info: dict[str, ModelInfo] = {}
        self._info_lock = threading.Lock()

    def _backoff(self) -> Backoff:
        """The waits between tries: ``backoff_s``, doubled each time, no jitter (a call's
        retries are few and its deadline bounds them)."""
        return Backoff(initial_s=self.backoff_s, factor=2.0, maximum_s=float("inf"), jitter=0.0)

    def request(self, x: np.ndarray) -> tuple[list[Any], list[Any]]:
        """The inputs and requested outputs of one inference of ``x`` under the contract's
        tensor names, for callers that send through :attr:`client` themselves (``emolens
        bench`` keeps many requests in flight with ``async_infer``)."""
        x = np.ascontiguousarray(x, np.float32)
        inp = self._grpc.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return [inp], [self._grpc.InferRequestedOutput(OUTPUT_NAME)]

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        backoff = self._backoff()
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except InferenceServerException as exc:
                status = str(exc.status())
                refusal = exc.message() if status != _DEADLINE and status not in _OUTAGE else None
                self._retry_or_raise(what, {status}, refusal, attempt, backoff, exc, probe=True)
        raise AssertionError("unreachable")

    def _retry_or_raise(
        self,
        what: str,
        statuses: set[str],
        refusal: str | None,
        attempt: int,
        backoff: Backoff,
        cause: BaseException | None = None,
        probe: bool = False,
    ) -> None:
        """The one retry policy of both calls, after a failed attempt: a refusal (``refusal``,
        the server's message) is our mistake (ModelError); an outage or a deadline is waited out
        by ``backoff`` and tried again, ``retries`` times, then raised as Unavailable or
        DeadlineExceeded. ``probe``: a deadline alone asks the liveness probe first, so a server
        that answers nothing surfaces as an outage at once."""
        if refusal is not None:
            raise ModelError(f"triton at {self.url}: {what}: {refusal}") from cause
        if probe and statuses == {_DEADLINE} and not self._live():
            raise Unavailable(f"triton at {self.url}: {what}: no answer, nor to a liveness probe") from cause
        if attempt == self.retries:
            tries = self.retries + 1
            if statuses == {_DEADLINE}:
                raise DeadlineExceeded(
                    f"triton at {self.url}: {what}: no answer within {self.timeout_s} s ({tries} tries)"
                ) from cause
            raise Unavailable(
                f"triton at {self.url}: {what}: {', '.join(sorted(statuses))} after {tries} tries"
            ) from cause
        delay = backoff.next_delay()
        logs.event(
            log.warning, "triton_retry", what=what, attempt=attempt + 1, status=",".join(sorted(statuses)),
            delay_s=round(delay, 2),
        )  # fmt: skip
        time.sleep(delay)

    @staticmethod
    def _check(model: str) -> None:
        # Triton answers UNAVAILABLE for a model it does not serve; asking for a model outside
        # the contract is our mistake, not an outage.
        if model not in MODELS:
            raise ModelError(f"unknown model {model!r}: the contract has {', '.join(MODELS)}")

    def info(self, model: str) -> ModelInfo:
        """Input size, labels and crop box of ``model``, read from the server once."""
        self._check(model)
        with self._info_lock:
            if model not in self._info:
                fetch = partial(self.client.get_model_config, model, as_json=True, client_timeout=self.timeout_s)
                config = self._call(f"config of {model}", fetch)
                self._info[model] = model_info(parse_config_json(config["config"], model), model)
            return self._info[model]

    def predict(self, model: str, images: np.ndarray) -> np.ndarray:
        self._check(model)
        if len(images) == 0:
            return np.zeros((0, len(self.info(model).labels)), np.float32)
        return self.predict_many({model: images})[model]

    def predict_many(self, batches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send one request per model at once (async) and wait for all: the smile and emotion
        calls of a frame overlap instead of queueing behind each other. Requests refused as an
        outage are sent again with backoff (``retries`` times); a server that stops answering
        is found by :meth:`_wait`'s health probe within about ``probe_s``, not ``timeout_s``."""
        for model in batches:
            self._check(model)
        out = {m: np.zeros((0, len(self.info(m).labels)), np.float32) for m, x in batches.items() if len(x) == 0}
        todo = {m: x for m, x in batches.items() if len(x)}
        backoff = self._backoff()
        for attempt in range(self.retries + 1):
            failed: dict[str, Any] = {}
            for model, result in self._infer(todo).items():
                if hasattr(result, "as_numpy"):
                    out[model] = np.asarray(result.as_numpy(OUTPUT_NAME), np.float32)
                else:
                    failed[model] = result
            if not failed:
                return out
            what = f"infer {', '.join(failed)}"
            statuses = {str(e.status()) for e in failed.values()}
            refusal = next((e for e in failed.values() if str(e.status()) not in (_DEADLINE, *_OUTAGE)), None)
            self._retry_or_raise(what, statuses, None if refusal is None else refusal.message(), attempt, backoff)
            todo = {m: todo[m] for m in failed}
        raise AssertionError("unreachable")

    def _infer(self, batches: dict[str, np.ndarray]) -> dict[str, Any]:
        """One async request per model; each model's result, or the error it got."""
        done = threading.Event()
        results: dict[str, Any] = {}
        lock = threading.Lock()

        def callback(model: str, result: Any, error: Any) -> None:
            with lock:
                results[model] = error if error is not None else result
                if len(results) == len(batches):
                    done.set()

        for model, x in batches.items():
            inputs, outputs = self.request(x)
            self.client.async_infer(
                model, inputs, partial(callback, model), outputs=outputs, client_timeout=self.timeout_s
            )
        self._wait(done, f"infer {', '.join(batches)}")
        with lock:
            return dict(results)

    def _live(self) -> bool:
        """Whether the server answers a liveness probe within ``probe_s``."""
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self.client.is_server_live(client_timeout=self.probe_s))
        except InferenceServerException:
            return False

    def _wait(self, done: threading.Event, what: str) -> None:
        """Wait for ``done`` up to ``timeout_s`` (plus a second for the client's own deadline to
        fire), asking the server's liveness every ``probe_s`` meanwhile: a busy server answers
        it at once and is waited for, a frozen (SIGSTOP, a hung node) or vanished one does not,
        and that is an outage to report now (``Unavailable``), not after the full deadline and
        every retry of it (before: 51 s with the default 10 s deadline)."""
        deadline = time.monotonic() + self.timeout_s + 1
        while not done.wait(max(min(self.probe_s, deadline - time.monotonic()), 0)):
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"triton at {self.url}: {what}: no answer within {self.timeout_s} s")
            if not self._live() and not done.is_set():
                raise Unavailable(
                    f"triton at {self.url}: {what}: no answer, and no answer to a liveness probe within "
                    f"{self.probe_s:g} s (frozen or gone)"
                )

    def statistics(self, model: str) -> dict[str, Any]:
        """Triton's own inference statistics for ``model`` (batch sizes it executed, counts)."""
        fetch = partial(self.client.get_inference_statistics, model, as_json=True, client_timeout=self.timeout_s)
        stats = self._call(f"statistics of {model}", fetch)
        return dict(json.loads(json.dumps(stats)))
