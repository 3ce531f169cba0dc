"""Statistics at city scale: per-minute data partitioned by day on PostgreSQL, hourly and daily
rollups with distinct visitors, visitor timelines, the k-safe views analysts read and the
read-only role that may read only them (docs/analytics.md).

Revision ID: 0003
Revises: 0002

Same migration on both databases. On SQLite ``minute_buckets`` and ``bucket_tracks`` stay plain
tables; on PostgreSQL they become tables partitioned by ``RANGE (minute)`` with one partition a
day (``minute_buckets_p20260301``), made on demand by the store, so that retention drops whole
partitions instead of deleting rows. Existing rows are copied into the partitions.
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
ID = 128  # MAX_ID_LENGTH when this revision was written
DEFAULT_K = 5
ANALYST_ROLE = "emolens_analyst"
PARTITIONED = ("minute_buckets", "bucket_tracks")
K_SAFE_VIEWS = (
    "analytics_hourly",
    "analytics_daily",
    "analytics_hourly_zone",
    "analytics_daily_zone",
    "analytics_hourly_site",
    "analytics_daily_site",
)


def _minute_columns() -> list[sa.Column]:
    return [
        sa.Column("camera_id", sa.String(ID), sa.ForeignKey("cameras.camera_id"), primary_key=True),
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
    ]


def _track_columns() -> list[sa.Column]:
    return [
        sa.Column("camera_id", sa.String(ID), primary_key=True),
        sa.Column("minute", sa.DateTime(timezone=False), primary_key=True),
        sa.Column("track_id", sa.BigInteger, primary_key=True, autoincrement=False),
    ]


def _rollup(name: str) -> None:
    op.create_table(
        name,
        sa.Column("camera_id", sa.String(ID), sa.ForeignKey("cameras.camera_id"), primary_key=True),
        sa.Column("period_start", sa.DateTime(timezone=False), primary_key=True),
        sa.Column("frames", sa.BigInteger, nullable=False),
        sa.Column("faces", sa.BigInteger, nullable=False),
        sa.Column("visitors", sa.BigInteger, nullable=False),
        sa.Column("low_quality", sa.BigInteger, nullable=False),
        sa.Column("smiles", sa.BigInteger, nullable=False),
        sa.Column("smile_sum", sa.Float, nullable=False),
        sa.Column("quality_sum", sa.Float, nullable=False),
        sa.Column("dwell_s_sum", sa.Float, nullable=False),
        *[sa.Column(f"n_{e}", sa.BigInteger, nullable=False) for e in EMOTIONS],
        *[sa.Column(f"p_{e}", sa.Float, nullable=False) for e in EMOTIONS],
    )
    op.create_index(f"ix_{name}_period_start", name, ["period_start"])
    op.create_table(
        f"{name}_tracks",
        sa.Column("camera_id", sa.String(ID), primary_key=True),
        sa.Column("period_start", sa.DateTime(timezone=False), primary_key=True),
        sa.Column("track_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("first_seen", sa.DateTime(timezone=False), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_index(f"ix_{name}_tracks_period_start", f"{name}_tracks", ["period_start"])


def _ratio(num: str, den: str) -> str:
    return f"CAST({num} AS DOUBLE PRECISION) / NULLIF({den}, 0)"


def _measures(prefix: str = "") -> str:
    """The k-safe views' figures, from summed columns (``prefix`` = ``SUM(`` ... for groups)."""

    def col(c: str) -> str:
        return f"SUM(r.{c})" if prefix else f"r.{c}"

    parts = [
        f"{col('faces')} AS faces",
        f"{col('visitors')} AS visitors",
        f"{col('smiles')} AS smiles",
        f"{_ratio(col('smiles'), col('faces'))} AS smile_rate",
        f"{_ratio(col('quality_sum'), col('faces'))} AS mean_quality",
        f"{_ratio(col('dwell_s_sum'), col('visitors'))} AS mean_dwell_s",
        *[f"{col(f'n_{e}')} AS n_{e}" for e in EMOTIONS],
    ]
    return ",\n       ".join(parts)


K = "(SELECT k FROM privacy_settings WHERE id = 1)"


def _views() -> None:
    for grain in ("hourly", "daily"):
        rollup = f"rollup_{grain}"
        op.execute(
            f"""CREATE VIEW analytics_{grain} AS
SELECT c.site, c.zone, r.camera_id, r.period_start,
       {_measures()}
FROM {rollup} r JOIN cameras c ON c.camera_id = r.camera_id
WHERE r.visitors >= {K}"""
        )
        op.execute(
            f"""CREATE VIEW analytics_{grain}_zone AS
SELECT c.site, c.zone, r.period_start, COUNT(*) AS cameras,
       {_measures("SUM(")}
FROM {rollup} r JOIN cameras c ON c.camera_id = r.camera_id
GROUP BY c.site, c.zone, r.period_start
HAVING SUM(r.visitors) >= {K}"""
        )
        op.execute(
            f"""CREATE VIEW analytics_{grain}_site AS
SELECT c.site, r.period_start, COUNT(*) AS cameras,
       {_measures("SUM(")}
FROM {rollup} r JOIN cameras c ON c.camera_id = r.camera_id
GROUP BY c.site, r.period_start
HAVING SUM(r.visitors) >= {K}"""
        )


def _analyst_role() -> None:
    """A role that can read the k-safe views and nothing else. Views run with their owner's
    rights, so the role needs no grant on any table. Roles belong to the whole server: made
    once, and only when the migrating user may make roles (otherwise a notice, and
    docs/analytics.md shows the statements a superuser runs)."""
    op.execute(
        f"""DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ANALYST_ROLE}') THEN
    BEGIN
      CREATE ROLE {ANALYST_ROLE} NOLOGIN;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE NOTICE 'cannot create role {ANALYST_ROLE}: ask a superuser (docs/analytics.md)';
    END;
  END IF;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ANALYST_ROLE}') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO {ANALYST_ROLE}', current_schema());
    EXECUTE 'GRANT SELECT ON {", ".join(K_SAFE_VIEWS)} TO {ANALYST_ROLE}';
  END IF;
END $$"""
    )


def _partition_existing(table: str, columns: list[sa.Column]) -> None:
    """Turn ``table`` into a table partitioned by day on ``minute``, keeping its rows."""
    bind = op.get_bind()
    old = f"{table}_0002"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER INDEX {table}_pkey RENAME TO {old}_pkey")
    if table == "minute_buckets":
        op.execute("DROP INDEX ix_minute_buckets_minute")
    op.create_table(table, *columns, postgresql_partition_by="RANGE (minute)")
    if table == "minute_buckets":
        op.create_index("ix_minute_buckets_minute", table, ["minute"])
    days = bind.execute(sa.text(f"SELECT DISTINCT date_trunc('day', minute) FROM {old}")).scalars().all()
    # and the coming week's: the previous release's aggregators keep inserting while the new
    # pods roll out (the Helm pre-upgrade job has already migrated), and they make no partitions
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    for day in sorted({*days, *(today + timedelta(days=d) for d in range(-1, 8))}):
        _create_partition(table, day)
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    op.execute(f"DROP TABLE {old}")


def _create_partition(table: str, day: datetime) -> None:
    # The same name and bounds as emolens.store.partitions makes on demand.
    end = day + timedelta(days=1)
    op.execute(
        f"CREATE TABLE IF NOT EXISTS {table}_p{day:%Y%m%d} PARTITION OF {table} "
        f"FOR VALUES FROM ('{day:%Y-%m-%d}') TO ('{end:%Y-%m-%d}')"
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        _partition_existing("minute_buckets", _minute_columns())
        _partition_existing("bucket_tracks", _track_columns())
    _rollup("rollup_hourly")
    _rollup("rollup_daily")
    op.create_table(
        "visitor_timelines",
        sa.Column("camera_id", sa.String(ID), sa.ForeignKey("cameras.camera_id"), primary_key=True),
        sa.Column("track_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("first_seen", sa.DateTime(timezone=False), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=False), nullable=False),
        sa.Column("faces", sa.Integer, nullable=False),
        sa.Column("smiles", sa.Integer, nullable=False),
        sa.Column("smile_sum", sa.Float, nullable=False),
        *[sa.Column(f"n_{e}", sa.Integer, nullable=False) for e in EMOTIONS],
    )
    op.create_index("ix_visitor_timelines_last_seen", "visitor_timelines", ["last_seen"])
    privacy = op.create_table(
        "privacy_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_privacy_settings_one_row"),
        sa.CheckConstraint("k >= 1", name="ck_privacy_settings_k"),
    )
    op.bulk_insert(privacy, [{"id": 1, "k": DEFAULT_K}])
    _views()
    if postgres:
        _analyst_role()


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for view in K_SAFE_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for table in (
        "privacy_settings",
        "visitor_timelines",
        "rollup_daily_tracks",
        "rollup_daily",
        "rollup_hourly_tracks",
        "rollup_hourly",
    ):
        op.drop_table(table)
    if not postgres:
        return
    # Back to plain tables, rows kept (the role stays: it belongs to the server, not the database).
    for table, columns in (("minute_buckets", _minute_columns()), ("bucket_tracks", _track_columns())):
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_0003")
        op.execute(f"ALTER INDEX {table}_pkey RENAME TO {table}_0003_pkey")
        if table == "minute_buckets":
            op.execute("DROP INDEX ix_minute_buckets_minute")
        op.create_table(table, *columns)
        if table == "minute_buckets":
            op.create_index("ix_minute_buckets_minute", table, ["minute"])
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_0003")
        op.execute(f"DROP TABLE {table}_0003 CASCADE")
