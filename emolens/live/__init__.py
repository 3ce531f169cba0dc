"""Live counters per camera (frames, faces, smiles, emotions since start), chosen from a URL:
``memory://`` (in-process, :mod:`emolens.live.memory`) or ``redis://HOST:PORT/DB``
(:mod:`emolens.live.redis`); the interface is :mod:`emolens.live.base`."""

from __future__ import annotations

from emolens.errors import ConfigError
from emolens.live.base import LiveCounters, LiveState, deltas
from emolens.live.memory import MemoryLiveState
from emolens.live.redis import RedisLiveState

__all__ = ["LiveCounters", "LiveState", "MemoryLiveState", "RedisLiveState", "deltas", "make_live_state"]


def make_live_state(url: str, timeout_s: float | None = None) -> LiveState:
    """The live state at ``url``; ``timeout_s`` bounds each Redis command (RedisLiveState)."""
    if url.startswith("memory://"):
        return MemoryLiveState()
    if url.startswith("redis://"):
        return RedisLiveState(url, timeout_s)
    raise ConfigError(f"unknown live-state URL {url!r}: use memory:// or redis://HOST:PORT/DB")
