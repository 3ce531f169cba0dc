"""Redelivery bookkeeping as one bitmap per 1024 frames instead of one row per frame:
``frames_seen`` (camera_id, frame_seq, seen_at) becomes ``frames_seen_blocks`` (camera_id,
source_id, block, bits, seen_at) with ``frame_seq = source_id << 40 | block * 1024 + bit``
(:mod:`emolens.store.seen`). Exact, like the rows it replaces, in 1/176 of the bytes on
PostgreSQL and 1/396 on SQLite (one camera-day at 5 fps, docs/reliability.md).

Revision ID: 0004
Revises: 0003

Existing rows are copied into blocks (a block's ``seen_at`` is its newest frame's, so no frame
is forgotten earlier than before) and ``frames_seen`` is dropped; downgrade makes the rows
again. During a rolling upgrade the previous release's aggregators fail their batches (no
``frames_seen`` any more) without committing them or their offsets: the new pods take those
batches over, so nothing is counted twice or lost.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = 128  # MAX_ID_LENGTH when this revision was written
POSITION_BITS = 40
BLOCK_FRAMES = 1024
CHUNK = 10_000  # rows read or written at a time


def _blocks_table() -> sa.Table:
    return sa.Table(
        "frames_seen_blocks",
        sa.MetaData(),
        sa.Column("camera_id", sa.String(ID), primary_key=True),
        sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("block", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("bits", sa.LargeBinary(BLOCK_FRAMES // 8), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=False), nullable=False),
    )


def _frames_table() -> sa.Table:
    return sa.Table(
        "frames_seen",
        sa.MetaData(),
        sa.Column("camera_id", sa.String(ID), primary_key=True),
        sa.Column("frame_seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("seen_at", sa.DateTime(timezone=False), nullable=False),
    )


def _rows(conn: sa.Connection, query: sa.Select) -> Iterator[Any]:
    # on the statement, not the connection: Connection.execution_options changes the connection
    # itself, and the DDL after this would run as server-side cursors
    yield from conn.execute(query.execution_options(stream_results=True, yield_per=CHUNK))


def upgrade() -> None:
    conn = op.get_bind()
    blocks = _blocks_table()
    blocks.create(conn)
    op.create_index("ix_frames_seen_blocks_seen_at", "frames_seen_blocks", ["seen_at"])
    frames = _frames_table()
    if conn.dialect.name == "postgresql":
        # The previous release's aggregators may still insert while this runs: a frame inserted
        # after the copy read the table would be counted but not remembered. Hold their inserts
        # until this commits (they then fail on the dropped table and their batches are redone).
        op.execute("LOCK TABLE frames_seen IN SHARE MODE")
    # Rows come in key order, so each block is complete when the next one starts.
    key: tuple[str, int, int] | None = None
    bits = bytearray(BLOCK_FRAMES // 8)
    newest = datetime.min
    pending: list[dict[str, Any]] = []

    def flush_block() -> None:
        if key is not None:
            pending.append(
                {"camera_id": key[0], "source_id": key[1], "block": key[2], "bits": bytes(bits), "seen_at": newest}
            )

    rows = _rows(conn, sa.select(frames).order_by(frames.c.camera_id, frames.c.frame_seq))
    for camera_id, seq, seen_at in rows:
        position = seq & ((1 << POSITION_BITS) - 1)
        this = (camera_id, seq >> POSITION_BITS, position // BLOCK_FRAMES)
        if this != key:
            flush_block()
            key, bits, newest = this, bytearray(BLOCK_FRAMES // 8), seen_at
            if len(pending) >= CHUNK:
                conn.execute(blocks.insert(), pending)
                pending.clear()
        bit = position % BLOCK_FRAMES
        bits[bit >> 3] |= 1 << (bit & 7)
        newest = max(newest, seen_at)
    flush_block()
    if pending:
        conn.execute(blocks.insert(), pending)
    op.drop_index("ix_frames_seen_seen_at", "frames_seen")
    op.drop_table("frames_seen")


def downgrade() -> None:
    conn = op.get_bind()
    migrated_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    op.create_table(
        "frames_seen",
        sa.Column("camera_id", sa.String(ID), primary_key=True),
        sa.Column("frame_seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("seen_at", sa.DateTime(timezone=False), nullable=False, server_default=migrated_at),
    )
    op.create_index("ix_frames_seen_seen_at", "frames_seen", ["seen_at"])
    blocks, frames = _blocks_table(), _frames_table()
    pending: list[dict[str, Any]] = []
    for camera_id, source_id, block, bits, seen_at in list(_rows(conn, sa.select(blocks))):
        for i, byte in enumerate(bytes(bits)):
            for j in range(8):
                if byte & (1 << j):
                    seq = source_id << POSITION_BITS | block * BLOCK_FRAMES + i * 8 + j
                    pending.append({"camera_id": camera_id, "frame_seq": seq, "seen_at": seen_at})
        if len(pending) >= CHUNK:
            conn.execute(frames.insert(), pending)
            pending.clear()
    if pending:
        conn.execute(frames.insert(), pending)
    op.drop_index("ix_frames_seen_blocks_seen_at", "frames_seen_blocks")
    op.drop_table("frames_seen_blocks")
