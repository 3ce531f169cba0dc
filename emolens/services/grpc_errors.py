"""The one place where errors become gRPC status codes: a server interceptor around every
method (unary and streaming), so servicers just raise ``EmolensError`` subclasses. Being the
place where every call's status is known, it also counts and times each call by method and
code (``emolens_grpc_requests_total``, ``emolens_grpc_request_seconds``).

| raised | status | details sent to the caller |
| --- | --- | --- |
| ``InputError`` (``ImageTooLargeError`` too) | INVALID_ARGUMENT | the error's message |
| ``NotFound`` | NOT_FOUND | the error's message |
| ``Unauthenticated`` | UNAUTHENTICATED | the error's message |
| ``PermissionDenied`` | PERMISSION_DENIED | the error's message |
| ``ResourceExhausted`` | RESOURCE_EXHAUSTED | the error's message |
| ``Unavailable`` | UNAVAILABLE | its ``public`` text, else a fixed sentence |
| ``DeadlineExceeded`` | DEADLINE_EXCEEDED | its ``public`` text, else a fixed sentence |
| anything else (``ModelError``, ``ConfigError``, bugs) | INTERNAL | a fixed sentence and a reference |

The caller's own mistakes come back in words written for the caller. An outage's message is for
the operator (it may name a host and port), and an unexpected exception may carry SQL, paths or
hosts, so those are logged here, with the traceback and a reference id, and never sent.

>>> status_of(NotFound("unknown camera 'x'"))
(<StatusCode.NOT_FOUND: (5, 'not found')>, "unknown camera 'x'")
>>> status_of(Unavailable("triton at 10.0.0.7:8001: StatusCode.UNAVAILABLE after 4 tries"))[1]
'a service this call needs is unavailable; retry later'
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc

from emolens import logs, metrics
from emolens.errors import (
    DeadlineExceeded,
    EmolensError,
    InputError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

# The caller's side of the contract: their message is written for them.
_CALLER: tuple[tuple[type[EmolensError], grpc.StatusCode], ...] = (
    (InputError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
)
# Our dependencies' side: retryable by the caller, described without naming anything inside.
_OUTAGE: tuple[tuple[type[EmolensError], grpc.StatusCode, str], ...] = (
    (Unavailable, grpc.StatusCode.UNAVAILABLE, "a service this call needs is unavailable; retry later"),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED, "a service this call needs did not answer in time"),
)
INTERNAL_DETAILS = "internal error"


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the details a caller may read for ``exc`` (no logging)."""
    for kind, code in _CALLER:
        if isinstance(exc, kind):
            return code, exc.public or str(exc)
    for kind, code, generic in _OUTAGE:
        if isinstance(exc, kind):
            return code, exc.public or generic
    return grpc.StatusCode.INTERNAL, INTERNAL_DETAILS


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> NoReturn:
    code, details = status_of(exc)
    if code == grpc.StatusCode.INTERNAL:
        ref = uuid.uuid4().hex[:12]
        logs.event(log.error, "rpc_failed", method=method, code=code.name, ref=ref, exc_info=exc)
        details = f"{details} (ref {ref})"
    elif any(code == c for _, c, _ in _OUTAGE):
        logs.event(log.warning, "rpc_failed", method=method, code=code.name, error=str(exc), exc_info=exc)
    else:
        # with the caller's address: who was refused is what an operator looks for
        logs.event(log.info, "rpc_refused", method=method, code=code.name, peer=context.peer(), error=str(exc))
    context.abort(code, details)
    raise AssertionError("unreachable: abort raises")


def _aborted(exc: Exception, context: grpc.ServicerContext) -> bool:
    # context.abort() raises a bare Exception after setting the status: let that one through.
    return type(exc) is Exception and context.code() is not None


class _Unparsable:
    """What a request's bytes became when they do not parse as the method's message: grpc
    would answer INTERNAL before any interceptor ran; the handler answers INVALID_ARGUMENT."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or whatever a generated parser raises
            return _Unparsable(type(exc).__name__)

    return parse


def _checked(request: Any) -> Any:
    """``request`` itself, or its stream with every message checked as it is read."""
    if isinstance(request, _Unparsable):
        raise InputError(f"the request is not a valid message of this method ({request.reason})")
    if isinstance(request, Iterator):
        return (_checked(r) for r in request)
    return request


def _observe(method: str, code: grpc.StatusCode | None, started: float) -> None:
    """Count and time one finished call; no code set means the handler returned: OK."""
    name = (code or grpc.StatusCode.OK).name
    metrics.GRPC_REQUESTS.labels(method, name).inc()
    metrics.GRPC_SECONDS.labels(method, name).observe(time.perf_counter() - started)


def _unary(behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            return behaviour(_checked(request), context)
        except Exception as exc:
            if _aborted(exc, context):
                raise
            _abort(context, method, exc)
        finally:
            _observe(method, context.code(), started)

    return handler


def _streaming(behaviour: Callable[..., Iterator[Any]], method: str) -> Callable[..., Iterator[Any]]:
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started, cancelled = time.perf_counter(), False
        try:
            yield from behaviour(_checked(request), context)
        except GeneratorExit:  # the caller went away mid-stream
            cancelled = True
            raise
        except Exception as exc:
            if _aborted(exc, context):
                raise
            _abort(context, method, exc)
        finally:
            _observe(method, grpc.StatusCode.CANCELLED if cancelled else context.code(), started)

    return handler


Behaviour = Callable[..., Any]


def rewrapped(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[Behaviour], Behaviour],
    streaming: Callable[[Behaviour], Behaviour],
    skip_non_blocking: bool = False,
) -> dict[str, Behaviour]:
    """The behaviours of ``handler`` wrapped by ``unary`` (unary responses) or ``streaming``
    (streamed responses), as ``handler._replace(**...)`` takes them: how every interceptor of
    the gateway wraps a method, whatever its kind."""
    changes: dict[str, Behaviour] = {}
    for name, wrap in (
        ("unary_unary", unary),
        ("stream_unary", unary),
        ("unary_stream", streaming),
        ("stream_stream", streaming),
    ):
        behaviour = getattr(handler, name)
        if behaviour is None or (skip_non_blocking and getattr(behaviour, "experimental_non_blocking", False)):
            continue
        changes[name] = wrap(behaviour)
    return changes


class ErrorInterceptor(grpc.ServerInterceptor):
    """Wraps every method handler of the server it is given to: ``grpc.server(...,
    interceptors=[ErrorInterceptor()])``."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        # A non-blocking behaviour (health's Watch) answers through a callback and holds no
        # thread; wrapped, gRPC would run it as a blocking stream that holds one per watcher.
        changes = rewrapped(
            handler, lambda b: _unary(b, method), lambda b: _streaming(b, method), skip_non_blocking=True
        )
        deserializer = _lenient(handler.request_deserializer)
        if changes and deserializer is not None:
            changes["request_deserializer"] = deserializer
        # grpc's handlers are namedtuples (grpc._utilities.RpcMethodHandler)
        replaced: grpc.RpcMethodHandler = handler._replace(**changes)
        return replaced
