"""Who may call the partner gateway, what each caller may see, and how much each may ask.

- **Who**: a bearer token (``authorization: bearer <token>``) from a tokens file
  (``EMOLENS_TOKENS_FILE``). Only SHA-256 digests of the tokens are kept in memory, compared in
  constant time; a token is never logged, and never taken from a command line. A token may have
  an expiry (``expires``); the file is read again when it changes (looked at every
  ``TOKENS_CHECK_S``), so a token removed from it stops working within seconds, without a
  restart. Every refused attempt is logged with the caller's address.
- **What**: each token carries a :class:`Scope`: everything, or a list of sites and/or camera ids.
  The servicer asks :meth:`Access.client` for the caller and checks each name it is given.
- **How much**: a token bucket per token holder (``EMOLENS_RATE_LIMIT`` calls/s, bursts of
  ``EMOLENS_RATE_BURST``) and a cap on concurrent streams, per client and in total
  (``EMOLENS_MAX_STREAMS_PER_CLIENT``, ``EMOLENS_MAX_STREAMS``), so streams never hold every
  worker thread; and a budget of decoded pixels in flight, in total and per client
  (``EMOLENS_MAX_PIXELS_IN_FLIGHT``, ``EMOLENS_MAX_PIXELS_IN_FLIGHT_PER_CLIENT``), taken from an
  image's header before it is decoded, so concurrent large images cannot push the gateway out of
  memory: an image waits up to ``PIXEL_WAIT_S`` for room, then is refused (RESOURCE_EXHAUSTED).

:class:`AccessInterceptor` admits every call of the server it is given to (the health service
excepted: Kubernetes probes carry no token) before a servicer method runs; its refusals are
``EmolensError``s, which ``grpc_errors.ErrorInterceptor`` (outside it) turns into status codes.

A tokens file (YAML, or JSON, which YAML reads too)::

    clients:
      - name: mall-a-analytics        # shows in the gateway's log; limits are per name
        token: "2f1c...e9"            # or  sha256: <64 hex digits of the token's SHA-256>
        sites: [mall-a]
        cameras: [mall-b-entrance]    # sites and/or cameras
        expires: 2027-01-31T00:00:00Z # optional: refused from then on (a date: 00:00 UTC of it)
      - name: operations
        sha256: "5e88...42"
        all: true                     # every site and camera

>>> tokens = Tokens.parse({"clients": [{"name": "ops", "token": "0123456789abcdef", "all": True}]}, "inline")
>>> tokens.find("0123456789abcdef").name, tokens.find("wrong")
('ops', None)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml

from emolens import logs
from emolens.errors import ConfigError, PermissionDenied, ResourceExhausted, Unauthenticated
from emolens.services.grpc_errors import rewrapped
from emolens.settings import Settings, parse_time
from emolens.store import Camera

log = logging.getLogger(__name__)
T = TypeVar("T")

# Shorter tokens can be guessed; `openssl rand -hex 32` makes a good one.
MIN_TOKEN_LENGTH = 16
# Methods any caller may reach without a token: Kubernetes' gRPC probes cannot send one.
OPEN_METHODS = ("/grpc.health.v1.Health/",)
# How long an image waits for room in the pixel budget before it is refused, and how many may
# wait at once: a waiting call holds a worker thread, and health needs free ones.
PIXEL_WAIT_S = 2.0
# How often the tokens file's modification time is looked at: the most a revoked token lives on.
TOKENS_CHECK_S = 2.0


@dataclass(frozen=True)
class Scope:
    """What a token may see: everything, or the cameras of some sites plus some cameras by id.

    >>> Scope(sites=frozenset({"mall-a"})).sees(Camera("cam-1", site="mall-a"))
    True
    >>> Scope(cameras=frozenset({"cam-9"})).sees(Camera("cam-1", site="mall-a"))
    False
    """

    everything: bool = False
    sites: frozenset[str] = frozenset()
    cameras: frozenset[str] = frozenset()

    def sees(self, camera: Camera) -> bool:
        return self.everything or camera.camera_id in self.cameras or (bool(camera.site) and camera.site in self.sites)

    def check_camera(self, camera_id: str, known: dict[str, Camera]) -> None:
        """PermissionDenied unless the camera is in scope. An unknown id is judged like an
        existing camera of another site, and told the same words, so nothing can be probed."""
        if not self.sees(known.get(camera_id) or Camera(camera_id)):
            raise PermissionDenied(f"camera {camera_id!r} is outside this token's scope")

    def visible(self, known: dict[str, Camera]) -> set[str] | None:
        """The camera ids of ``known`` in scope; None for a token that sees everything."""
        return None if self.everything else {c for c, camera in known.items() if self.sees(camera)}

    def check_filters(self, known: dict[str, Camera], site: str, zone: str) -> None:
        """A site or zone filter must name one the token can see some camera of (or, for a
        site, one its scope names); any other is PermissionDenied, whether it exists or not."""
        seen = self.visible(known)
        if seen is None:
            return
        if site and site not in self.sites and not any(known[c].site == site for c in seen):
            raise PermissionDenied(f"site {site!r} is outside this token's scope")
        if zone and not any(known[c].zone == zone and (not site or known[c].site == site) for c in seen):
            raise PermissionDenied(f"zone {zone!r} is outside this token's scope")


EVERYTHING = Scope(everything=True)


@dataclass(frozen=True)
class Client:
    """An admitted caller: its name (logs and limits are per name), scope, and whether the rate
    limit applies (not to local callers of a gateway without tokens: a script on the laptop
    analysing a folder of photos is not a partner to pace)."""

    name: str
    scope: Scope
    rate_limited: bool = True
    expires: datetime | None = None  # aware; None = never

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(UTC)) >= self.expires


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Tokens:
    """The bearer tokens a gateway accepts, as SHA-256 digests, each with its client."""

    def __init__(self, entries: Sequence[tuple[bytes, Client]]) -> None:
        self._entries = tuple(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, token: str) -> Client | None:
        """The client holding ``token``, or None. Every digest is compared, in constant time,
        so the answer takes as long for a near miss as for a far one."""
        digest = _digest(token)
        found = None
        for known, client in self._entries:
            if hmac.compare_digest(digest, known):
                found = client
        return found

    @classmethod
    def load(cls, path: str | Path) -> Tokens:
        """Read a tokens file; a ConfigError names the file and the entry, never a token."""
        try:
            document = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"tokens file {path}: cannot read it ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"tokens file {path}: not YAML or JSON") from exc
        return cls.parse(document, str(path))

    @classmethod
    def parse(cls, document: Any, origin: str) -> Tokens:
        entries = document.get("clients") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"tokens file {origin}: expected a non-empty list under 'clients'")
        parsed: list[tuple[bytes, Client]] = []
        for i, entry in enumerate(entries):
            parsed.append(_entry(entry, f"tokens file {origin}, client #{i + 1}"))
        digests = [d for d, _ in parsed]
        if len(set(digests)) != len(digests):
            raise ConfigError(f"tokens file {origin}: the same token is given to two clients")
        return cls(parsed)


def _entry(entry: Any, where: str) -> tuple[bytes, Client]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with name, token (or sha256) and a scope")
    unknown = set(entry) - {"name", "token", "sha256", "all", "sites", "cameras", "expires"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: needs a name")
    where = f"{where} ({name})"
    token, sha = entry.get("token"), entry.get("sha256")
    if (token is None) == (sha is None):
        raise ConfigError(f"{where}: give exactly one of token and sha256")
    if token is not None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH or len(token.split()) != 1:
            raise ConfigError(
                f"{where}: the token must be a string of at least {MIN_TOKEN_LENGTH} characters without spaces"
            )
        digest = _digest(token)
    else:
        try:
            digest = bytes.fromhex(str(sha))
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise ConfigError(f"{where}: sha256 must be 64 hex digits")
    lists = {}
    for key in ("sites", "cameras"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: {key} must be a list of names")
        lists[key] = frozenset(value)
    everything = entry.get("all", False)
    if everything not in (True, False) or everything == bool(lists["sites"] or lists["cameras"]):
        raise ConfigError(f"{where}: give either all: true, or sites and/or cameras")
    scope = EVERYTHING if everything else Scope(sites=lists["sites"], cameras=lists["cameras"])
    return digest, Client(name, scope, expires=_expiry(entry.get("expires"), where))


def _expiry(value: Any, where: str) -> datetime | None:
    """``expires``: an ISO time (UTC unless it names a zone) or a date (00:00 UTC of it); YAML
    gives those as datetime or date already, JSON as a string."""
    if value is None:
        return None
    if isinstance(value, str):  # the one time parser (a date is 00:00 of it, UTC unless zoned)
        return parse_time(f"{where}: expires", value)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ConfigError(f"{where}: expires must be an ISO time such as 2027-01-31T00:00:00Z, or a date")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The token of the one ``authorization: bearer <token>`` header, or None.

    >>> bearer_token([("authorization", "Bearer abc")]), bearer_token([("authorization", "Basic abc")])
    ('abc', None)
    """
    values = [v for k, v in metadata if k.lower() == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class TokenBucket:
    """``rate`` calls per second on average, ``burst`` at once.

    >>> bucket = TokenBucket(rate=1.0, burst=2, now=lambda: 0.0)
    >>> [bucket.take() for _ in range(3)]
    [True, True, False]
    """

    def __init__(self, rate: float, burst: int, now: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._now = rate, burst, now
        self._tokens, self._at = float(burst), now()

    def take(self) -> bool:
        now = self._now()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Limits:
    """Per-client request rate and concurrent streams (per client and in total); thread-safe.
    Rates are kept per token name, so the table is as large as the tokens file."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_streams: int,
        max_streams_per_client: int,
        max_pixels: int = 0,
        max_pixels_per_client: int = 0,
        max_pixel_waiters: int = 4,
        pixel_wait_s: float = PIXEL_WAIT_S,
    ) -> None:
        self.rate, self.burst = rate, burst
        self.max_streams, self.max_streams_per_client = max_streams, max_streams_per_client
        self.max_pixels, self.max_pixels_per_client = max_pixels, max_pixels_per_client  # 0: no budget
        self.max_pixel_waiters, self.pixel_wait_s = max_pixel_waiters, pixel_wait_s
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # signalled when pixels are given back
        self._buckets: dict[str, TokenBucket] = {}
        self._streams: dict[str, int] = {}
        self._pixels: dict[str, int] = {}
        self._pixel_waiters = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.rate_limit,
            settings.rate_burst,
            settings.max_streams,
            settings.max_streams_per_client,
            settings.max_pixels_in_flight,
            settings.max_pixels_in_flight_per_client,
            max_pixel_waiters=max(1, settings.gateway_workers // 2),
        )

    @contextmanager
    def pixels(self, client: str, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget (in total and the client's) while the block decodes and
        analyses an image. Waits up to ``pixel_wait_s`` for room, with at most
        ``max_pixel_waiters`` calls waiting; otherwise ResourceExhausted. An image larger than
        the whole budget is admitted alone (Settings keeps the budgets >= max_pixels).

        >>> limits = Limits(0, 1, 1, 1, max_pixels=100, max_pixels_per_client=60, pixel_wait_s=0)
        >>> with limits.pixels("a", 60), limits.pixels("b", 40):
        ...     limits.pixels_in_flight()
        100
        """
        if not self.max_pixels or pixels <= 0:
            yield
            return
        deadline = time.monotonic() + self.pixel_wait_s
        with self._room:
            while not self._fits(client, pixels):
                left = deadline - time.monotonic()
                if left <= 0 or self._pixel_waiters >= self.max_pixel_waiters:
                    mine = self._pixels.get(client, 0)
                    whose = "this client's" if mine + pixels > self.max_pixels_per_client > 0 else "the gateway's"
                    raise ResourceExhausted(
                        f"{whose} budget of decoded pixels in flight is taken by other images "
                        "(EMOLENS_MAX_PIXELS_IN_FLIGHT); retry shortly"
                    )
                self._pixel_waiters += 1
                try:
                    self._room.wait(left)
                finally:
                    self._pixel_waiters -= 1
            self._pixels[client] = self._pixels.get(client, 0) + pixels
        try:
            yield
        finally:
            with self._room:
                left_over = self._pixels[client] - pixels
                if left_over:
                    self._pixels[client] = left_over
                else:
                    del self._pixels[client]
                self._room.notify_all()

    def _fits(self, client: str, pixels: int) -> bool:
        total, mine = sum(self._pixels.values()), self._pixels.get(client, 0)
        if not total:
            return True  # alone, whatever its size
        if total + pixels > self.max_pixels:
            return False
        return not (self.max_pixels_per_client and mine and mine + pixels > self.max_pixels_per_client)

    def pixels_in_flight(self) -> int:
        with self._lock:
            return sum(self._pixels.values())

    def take(self, client: str) -> None:
        """One call's worth of the client's rate; ResourceExhausted when it has none left."""
        if not self.rate:
            return
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = TokenBucket(self.rate, self.burst)
            ok = bucket.take()
        if not ok:
            raise ResourceExhausted(
                f"rate limit: more than {self.rate:g} calls per second (bursts of {self.burst}); slow down and retry"
            )

    def open_stream(self, client: str) -> Callable[[], None]:
        """Hold a stream slot; returns its release (safe to call more than once)."""
        with self._lock:
            mine, total = self._streams.get(client, 0), sum(self._streams.values())
            if mine >= self.max_streams_per_client:
                raise ResourceExhausted(f"this client already has {mine} open streams (the limit); close one and retry")
            if total >= self.max_streams:
                raise ResourceExhausted("the gateway has as many open streams as it serves; retry later")
            self._streams[client] = mine + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                left = self._streams[client] - 1
                if left:
                    self._streams[client] = left
                else:
                    del self._streams[client]

        return release

    def open_streams(self) -> int:
        with self._lock:
            return sum(self._streams.values())


def _peer_host(peer: str) -> str:
    """``ipv4:10.0.0.7:5123`` -> ``10.0.0.7``; ``ipv6:[::1]:5123`` -> ``::1``."""
    _, _, address = peer.partition(":")
    host = address.rpartition(":")[0] if address.count(":") and not address.startswith("/") else address
    return host.strip("[]") or peer


class Access:
    """The gateway's door: tokens (None = authentication off) and limits. With ``tokens_file``
    the tokens are read again when the file changes (checked at most every ``TOKENS_CHECK_S``);
    a file that no longer reads keeps the tokens in use, with an error in the log."""

    def __init__(self, tokens: Tokens | None, limits: Limits, tokens_file: str | Path | None = None) -> None:
        self.tokens, self.limits = tokens, limits
        self.tokens_file = Path(tokens_file) if tokens_file else None
        self._file_state = self._stat()
        self._checked_at = time.monotonic()
        self._reload_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        tokens = Tokens.load(settings.tokens_file) if settings.tokens_file else None
        return cls(tokens, Limits.from_settings(settings), settings.tokens_file or None)

    def _stat(self) -> tuple[int, int, int] | None:
        if self.tokens_file is None:
            return None
        try:
            st = os.stat(self.tokens_file)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def reload_if_changed(self, now: float | None = None) -> None:
        """Read the tokens file again if it changed since it was read (a stat every
        ``TOKENS_CHECK_S`` at most; callers do not wait on each other)."""
        now = time.monotonic() if now is None else now
        if self.tokens_file is None or now - self._checked_at < TOKENS_CHECK_S:
            return
        if not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._checked_at = now
            state = self._stat()
            if state == self._file_state:
                return
            self._file_state = state
            try:
                tokens = Tokens.load(self.tokens_file)
            except ConfigError as exc:
                logs.event(log.error, "tokens_reload_failed", reason=str(exc), kept=len(self.tokens or ()))
                return
            self.tokens = tokens
            logs.event(log.info, "tokens_reloaded", tokens=len(tokens))
        finally:
            self._reload_lock.release()

    def client(self, context: grpc.ServicerContext) -> Client:
        """The caller of this call: Unauthenticated without a known, unexpired token. With
        authentication off (loopback only), every caller sees everything, is not rate limited,
        and is told apart by its address for the stream caps."""
        if self.tokens is None:
            return Client(f"peer {_peer_host(context.peer())}", EVERYTHING, rate_limited=False)
        self.reload_if_changed()
        token = bearer_token(context.invocation_metadata())
        if token is None:
            raise _refused(
                context, Unauthenticated("this call needs a token: send the header 'authorization: bearer <token>'")
            )
        client = self.tokens.find(token)
        if client is None:
            raise _refused(context, Unauthenticated("the token is not valid"))
        if client.expired():
            raise _refused(context, Unauthenticated("the token has expired"), client.name)
        return client


def _refused(context: grpc.ServicerContext, exc: Exception, client: str = "") -> Exception:
    """``exc``, after logging the refusal with the caller's address (never the token)."""
    logs.event(log.warning, "access_refused", peer=_peer_host(context.peer()), client=client or "-", reason=str(exc))
    return exc


def _limited(context: grpc.ServicerContext, client: Client, take: Callable[[], T]) -> T:
    """``take()``, logging a refusal (ResourceExhausted) with the caller's address."""
    try:
        return take()
    except ResourceExhausted as exc:
        raise _refused(context, exc, client.name) from None


def _guard_unary(behaviour: Callable[..., Any], access: Access, method: str) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        client = access.client(context)
        if client.rate_limited:
            _limited(context, client, lambda: access.limits.take(client.name))
        logs.event(log.debug, "rpc_admitted", method=method, client=client.name)
        return behaviour(request, context)

    return handler


def _guard_streaming(behaviour: Callable[..., Iterator[Any]], access: Access, method: str) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        client = access.client(context)
        if client.rate_limited:
            _limited(context, client, lambda: access.limits.take(client.name))
        release = _limited(context, client, lambda: access.limits.open_stream(client.name))
        context.add_callback(release)  # however the call ends: the client may just go away
        logs.event(log.debug, "rpc_admitted", method=method, client=client.name)
        try:
            yield from behaviour(request, context)
        finally:
            release()

    return handler


class AccessInterceptor(grpc.ServerInterceptor):
    """Admits each call (token, rate, stream slot) before its method runs. Give it after the
    error interceptor, so its refusals become status codes: ``grpc.server(..., interceptors=
    [ErrorInterceptor(), AccessInterceptor(access)])``."""

    def __init__(self, access: Access, open_methods: Collection[str] = OPEN_METHODS) -> None:
        self.access, self.open_methods = access, tuple(open_methods)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self.open_methods):
            return handler
        changes = rewrapped(
            handler,
            lambda b: _guard_unary(b, self.access, method),
            lambda b: _guard_streaming(b, self.access, method),
        )
        replaced: grpc.RpcMethodHandler = handler._replace(**changes)  # grpc's handlers are namedtuples
        return replaced


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as given to ``--host``) only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("[::1]"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
