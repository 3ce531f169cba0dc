"""Per-minute aggregates in SQL, chosen from a URL: ``sqlite:///FILE`` (embedded default)
or ``postgresql+psycopg://USER@HOST:PORT/DB`` (platform)."""

from emolens.store.base import (
    Bucket,
    Camera,
    Folded,
    Policy,
    Removed,
    Sighting,
    StatsFilter,
    StatsRow,
    Store,
    fold,
    fold_frames,
)
from emolens.store.sql import SqlStore

__all__ = [
    "Bucket",
    "Camera",
    "Folded",
    "Policy",
    "Removed",
    "Sighting",
    "SqlStore",
    "StatsFilter",
    "StatsRow",
    "Store",
    "fold",
    "fold_frames",
    "make_store",
]


def make_store(url: str) -> Store:
    return SqlStore(url)
