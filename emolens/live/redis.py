"""Live counters in Redis (``redis://HOST:PORT/DB``): the distributed shape's live state."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from emolens.errors import DeadlineExceeded, MissingExtra, Unavailable
from emolens.live.base import LiveCounters, deltas
from emolens.observations import FrameObservations, Totals
from emolens.results import EMOTIONS


class RedisLiveState:
    """One hash per camera (``emolens:live:<camera>``), updated with HINCRBY in a pipeline.

    A marker key, written by :meth:`reset`, tells a Redis that lost its data (restarted without
    persistence, or flushed) from one that merely has not seen a camera yet.
    """

    PREFIX = "emolens:live:"
    MARKER = "emolens:meta:live-seeded"

    def __init__(self, url: str, timeout_s: float | None = None) -> None:
        """``timeout_s``: how long one command may take (connecting included), tried once,
        for readers that must not wait for a frozen Redis (the gateway); without it, redis-py's
        defaults (no timeout, retries with backoff) for the aggregator's writes."""
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise MissingExtra("redis://", "redis", exc.name) from exc

        if timeout_s is None:
            self._r = redis.Redis.from_url(url, decode_responses=True)
        else:
            self._r = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
        self._errors = redis.exceptions

    @contextmanager
    def _outage(self) -> Iterator[None]:
        """Redis down is ``Unavailable``, a Redis too slow ``DeadlineExceeded`` (no host in either)."""
        try:
            yield
        except self._errors.TimeoutError as exc:
            raise DeadlineExceeded("redis did not answer in time") from exc
        except self._errors.ConnectionError as exc:
            raise Unavailable("redis is unavailable") from exc

    def add(self, frames: Sequence[FrameObservations]) -> None:
        with self._outage():
            self._add(frames)

    def _add(self, frames: Sequence[FrameObservations]) -> None:
        now = datetime.now(UTC).isoformat()
        pipe = self._r.pipeline(transaction=True)
        for cam, d in deltas(frames).items():
            key = self.PREFIX + cam
            pipe.hincrby(key, "frames", d.frames)
            pipe.hincrby(key, "faces", d.faces)
            pipe.hincrby(key, "smiles", d.smiles)
            for e in EMOTIONS:
                if d.emotions[e]:
                    pipe.hincrby(key, f"e:{e}", d.emotions[e])
            pipe.hset(key, "updated_at", now)
        pipe.execute()

    def lost(self) -> bool:
        with self._outage():
            return not self._r.exists(self.MARKER)

    def reset(self, totals: Mapping[str, Totals]) -> None:
        now = datetime.now(UTC).isoformat()
        with self._outage():
            pipe = self._r.pipeline(transaction=True)
            for key in self._r.scan_iter(self.PREFIX + "*"):
                pipe.delete(key)
            for cam, t in totals.items():
                fields = {
                    "frames": t.frames,
                    "faces": t.faces,
                    "smiles": t.smiles,
                    "updated_at": now,
                }
                fields.update({f"e:{e}": n for e, n in t.emotions.items()})
                pipe.hset(self.PREFIX + cam, mapping=fields)  # type: ignore[arg-type]  # dict is invariant
            pipe.set(self.MARKER, now)
            pipe.execute()

    def get(self, camera_id: str) -> LiveCounters:
        with self._outage():
            raw: dict[str, str] = self._r.hgetall(self.PREFIX + camera_id)  # type: ignore[assignment]
        if not raw:
            return LiveCounters(camera_id)
        return LiveCounters(
            camera_id,
            int(raw.get("frames", 0)),
            int(raw.get("faces", 0)),
            int(raw.get("smiles", 0)),
            {e: int(raw.get(f"e:{e}", 0)) for e in EMOTIONS},
            datetime.fromisoformat(raw["updated_at"]) if "updated_at" in raw else None,
        )

    def cameras(self) -> list[str]:
        with self._outage():
            return sorted(k[len(self.PREFIX) :] for k in self._r.scan_iter(self.PREFIX + "*"))
