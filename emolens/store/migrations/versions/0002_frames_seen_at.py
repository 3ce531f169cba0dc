"""When each frame was accepted, so the redelivery bookkeeping can forget frames older than
the replay window instead of growing by one row per frame forever.

Revision ID: 0002
Revises: 0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows already there were accepted at some unknown time: they get the migration's, so the
    # first prune keeps them for one whole window. A constant default fills them without
    # rewriting the table (PostgreSQL 11+; SQLite adds the column in place). It stays the
    # column's default: the previous release's aggregators, still running while the Helm
    # pre-upgrade job has migrated and the new pods roll out, insert frames without seen_at,
    # which then carry the migration time too. This release always sets it (SqlStore.apply).
    migrated_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    op.add_column(
        "frames_seen",
        sa.Column("seen_at", sa.DateTime(timezone=False), nullable=False, server_default=migrated_at),
    )
    op.create_index("ix_frames_seen_seen_at", "frames_seen", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_frames_seen_seen_at", "frames_seen")
    with op.batch_alter_table("frames_seen") as batch:
        batch.drop_column("seen_at")
