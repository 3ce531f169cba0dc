"""One settings object for every command and service, built from ``EMOLENS_*`` environment
variables and CLI flags (flags win). The names match the Helm chart's values."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from emolens.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    inference: str = "onnx://"  # onnx://PATH | triton://HOST:PORT; onnx:// alone = the models in the package
    detector: str = "auto"  # blazeface | blazeface-full | blazeface-short | haar | auto
    min_detection_score: float = 0.5
    quality_threshold: float = 0.35
    smoothing: float = 0.6  # weight of the past in per-track smoothing
    preprocess: str = "none"  # none | auto | clahe (see docs/model-card.md)
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = its default
    db: str = "sqlite:///emolens.db"
    bus: str = "memory://"
    live: str = "memory://"
    fps: float = 5.0  # frames per second sampled from a source
    k_anonymity: int = 5  # buckets with fewer distinct faces are suppressed in reports
    max_pixels: int = 40_000_000  # larger images are refused
    health_port: int = 0  # gRPC health server of the bus services (0 = none)

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {self.smoothing}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """``EMOLENS_<FIELD>`` variables, then non-None ``overrides`` on top."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"EMOLENS_{f.name.upper()}")
            if raw is None:
                continue
            kind: Callable[[str], Any] = type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise ConfigError(
                    f"EMOLENS_{f.name.upper()}={raw!r} is not a valid {type(f.default).__name__}"
                ) from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @staticmethod
    def env_names() -> list[str]:
        return [f"EMOLENS_{f.name.upper()}" for f in fields(Settings)]


def parse_start(text: str | None) -> datetime | None:
    """``--start``: an ISO time; without a zone it is UTC."""
    if not text:
        return None
    try:
        start = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"--start {text!r} is not an ISO time such as 2026-01-01T12:00:00") from exc
    return start if start.tzinfo else start.replace(tzinfo=UTC)
