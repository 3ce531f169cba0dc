"""The store's tables, as the migrations build them (``tests/unit/test_migrations.py`` compares
the two). Time columns hold naive UTC.

Raw material: ``minute_buckets`` (one row per camera-minute; on PostgreSQL partitioned by day,
:mod:`emolens.store.partitions`), with ``frames_seen_blocks`` (a bitmap of the frames accepted,
:mod:`emolens.store.seen`) and ``bucket_tracks``, which make a redelivered frame or a re-seen track
count once. Answers: ``rollup_hourly`` and
``rollup_daily`` (one row per camera and hour or day, distinct visitors counted through
``rollup_hourly_tracks`` / ``rollup_daily_tracks``), ``visitor_timelines`` (one row per anonymous
track) and ``privacy_settings`` (the k of the k-safe views ``analytics_*``, docs/analytics.md).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

from emolens.observations import MAX_ID_LENGTH
from emolens.results import EMOTIONS

metadata = MetaData()

cameras = Table(
    "cameras",
    metadata,
    Column("camera_id", String(MAX_ID_LENGTH), primary_key=True),
    Column("zone", String(MAX_ID_LENGTH), nullable=False, default=""),
    Column("site", String(MAX_ID_LENGTH), nullable=False, default=""),
)

minute_buckets = Table(
    "minute_buckets",
    metadata,
    Column("camera_id", String(MAX_ID_LENGTH), ForeignKey("cameras.camera_id"), primary_key=True),
    Column("minute", DateTime(timezone=False), primary_key=True, index=True),
    Column("frames", Integer, nullable=False, default=0),
    Column("faces", Integer, nullable=False, default=0),
    Column("tracks", Integer, nullable=False, default=0),
    Column("low_quality", Integer, nullable=False, default=0),
    Column("smiles", Integer, nullable=False, default=0),
    Column("smile_sum", Float, nullable=False, default=0.0),
    Column("quality_sum", Float, nullable=False, default=0.0),
    *[Column(f"n_{e}", Integer, nullable=False, default=0) for e in EMOTIONS],
    *[Column(f"p_{e}", Float, nullable=False, default=0.0) for e in EMOTIONS],
)

frames_seen_blocks = Table(
    "frames_seen_blocks",
    metadata,
    Column("camera_id", String(MAX_ID_LENGTH), primary_key=True),
    Column("source_id", BigInteger, primary_key=True, autoincrement=False),  # frame_seq >> 40
    Column("block", BigInteger, primary_key=True, autoincrement=False),  # position // 1024
    Column("bits", LargeBinary(128), nullable=False),  # bit i: frame block * 1024 + i was accepted
    Column("seen_at", DateTime(timezone=False), nullable=False, index=True),  # naive UTC, last bit set
)

bucket_tracks = Table(
    "bucket_tracks",
    metadata,
    Column("camera_id", String(MAX_ID_LENGTH), primary_key=True),
    Column("minute", DateTime(timezone=False), primary_key=True),
    Column("track_id", BigInteger, primary_key=True, autoincrement=False),
)


def _rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("camera_id", String(MAX_ID_LENGTH), ForeignKey("cameras.camera_id"), primary_key=True),
        Column("period_start", DateTime(timezone=False), primary_key=True),
        Column("frames", BigInteger, nullable=False),
        Column("faces", BigInteger, nullable=False),
        # distinct tracks seen in the period (a track seen in 30 of its minutes counts once)
        Column("visitors", BigInteger, nullable=False),
        Column("low_quality", BigInteger, nullable=False),
        Column("smiles", BigInteger, nullable=False),
        Column("smile_sum", Float, nullable=False),
        Column("quality_sum", Float, nullable=False),
        # sum over the period's visitors of (last - first sighting within the period), seconds
        Column("dwell_s_sum", Float, nullable=False),
        *[Column(f"n_{e}", BigInteger, nullable=False) for e in EMOTIONS],
        *[Column(f"p_{e}", Float, nullable=False) for e in EMOTIONS],
        Index(f"ix_{name}_period_start", "period_start"),
    )


def _period_tracks(name: str) -> Table:
    """Which tracks a camera saw in each period, and when first and last within it."""
    return Table(
        f"{name}_tracks",
        metadata,
        Column("camera_id", String(MAX_ID_LENGTH), primary_key=True),
        Column("period_start", DateTime(timezone=False), primary_key=True),
        Column("track_id", BigInteger, primary_key=True, autoincrement=False),
        Column("first_seen", DateTime(timezone=False), nullable=False),
        Column("last_seen", DateTime(timezone=False), nullable=False),
        Index(f"ix_{name}_tracks_period_start", "period_start"),
    )


rollup_hourly = _rollup("rollup_hourly")
rollup_daily = _rollup("rollup_daily")
rollup_hourly_tracks = _period_tracks("rollup_hourly")
rollup_daily_tracks = _period_tracks("rollup_daily")

visitor_timelines = Table(
    "visitor_timelines",
    metadata,
    Column("camera_id", String(MAX_ID_LENGTH), ForeignKey("cameras.camera_id"), primary_key=True),
    Column("track_id", BigInteger, primary_key=True, autoincrement=False),  # anonymous, per camera
    Column("first_seen", DateTime(timezone=False), nullable=False),
    Column("last_seen", DateTime(timezone=False), nullable=False, index=True),
    Column("faces", Integer, nullable=False),
    Column("smiles", Integer, nullable=False),
    Column("smile_sum", Float, nullable=False),
    *[Column(f"n_{e}", Integer, nullable=False) for e in EMOTIONS],
)

privacy_settings = Table(
    "privacy_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("k", Integer, nullable=False),
    CheckConstraint("id = 1", name="ck_privacy_settings_one_row"),
    CheckConstraint("k >= 1", name="ck_privacy_settings_k"),
)

# The k-safe views (migration 0003), the only relations the analyst role may read.
K_SAFE_VIEWS = (
    "analytics_hourly",
    "analytics_daily",
    "analytics_hourly_zone",
    "analytics_daily_zone",
    "analytics_hourly_site",
    "analytics_daily_site",
)
ANALYST_ROLE = "emolens_analyst"
