"""Schema migrations (Alembic), run programmatically: ``emolens db upgrade --db URL``.

The store upgrades its database to the newest revision when it opens, so the embedded shape
needs no extra step; the platform runs the same upgrade once, as a Helm hook job.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


# pg_advisory_xact_lock key ("emolens" in ASCII): one upgrade at a time per database
UPGRADE_LOCK = 0x656D6F6C656E73


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``. On PostgreSQL, processes that open a new database at
    once (an ingest declaring its camera while the aggregator starts) take turns: the second
    finds the schema made, where both creating it failed with UniqueViolation."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Back to ``revision`` (the data kept where the schema allows: see each revision)."""
    with engine.begin() as conn:
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
