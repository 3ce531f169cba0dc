"""Cameras, per-minute buckets, and the keys that make redelivery idempotent.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("camera_id", sa.String(128), primary_key=True),
        sa.Column("zone", sa.String(128), nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
    )
    op.create_table(
        "minute_buckets",
        sa.Column("camera_id", sa.String(128), sa.ForeignKey("cameras.camera_id"), primary_key=True),
        sa.Column("minute", sa.DateTime(timezone=False), primary_key=True),
        sa.Column("frames", sa.Integer, nullable=False),
        sa.Column("faces", sa.Integer, nullable=False),
        sa.Column("tracks", sa.Integer, nullable=False),
        sa.Column("low_quality", sa.Integer, nullable=False),
        sa.Column("smiles", sa.Integer, nullable=False),
        sa.Column("smile_sum", sa.Float, nullable=False),
        sa.Column("quality_sum", sa.Float, nullable=False),
        *[sa.Column(f"n_{e}", sa.Integer, nullable=False) for e in EMOTIONS],
        *[sa.Column(f"p_{e}", sa.Float, nullable=False) for e in EMOTIONS],
    )
    op.create_table(
        "frames_seen",
        sa.Column("camera_id", sa.String(128), primary_key=True),
        sa.Column("frame_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_table(
        "bucket_tracks",
        sa.Column("camera_id", sa.String(128), primary_key=True),
        sa.Column("minute", sa.DateTime(timezone=False), primary_key=True),
        sa.Column("track_id", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_index("ix_minute_buckets_minute", "minute_buckets", ["minute"])


def downgrade() -> None:
    op.drop_index("ix_minute_buckets_minute", "minute_buckets")
    for table in ("bucket_tracks", "frames_seen", "minute_buckets", "cameras"):
        op.drop_table(table)
