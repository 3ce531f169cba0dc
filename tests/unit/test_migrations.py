from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from emolens.cli import main
from emolens.store import SqlStore
from emolens.store.migrate import current_revision, head_revision, upgrade
from emolens.store.sql import metadata
from tests.redelivery import frame


def schema_diff(engine):
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def test_migrations_build_exactly_the_models_schema(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    assert current_revision(store.engine) == head_revision() == "0003"
    assert schema_diff(store.engine) == []


def test_db_command(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["db", "current", "--db", url]) == 2  # a reader makes no database
    assert "no such database" in capsys.readouterr().err and not (tmp_path / "c.db").exists()
    (tmp_path / "c.db").write_bytes(b"")
    assert main(["db", "current", "--db", url]) == 0
    assert "revision None" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", url]) == 0
    assert "revision 0003" in capsys.readouterr().out
    assert main(["db", "current", "--db", url]) == 0
    assert "revision 0003" in capsys.readouterr().out


def test_0002_keeps_what_a_0001_database_had_seen(tmp_path):
    """A database of the first schema, with frames and tracks in it, upgraded by opening it:
    every row stays, stamped with the migration's time, so the window starts from then and
    those frames are still skipped when they come again."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    upgrade(old, "0001")
    with old.begin() as conn:
        conn.execute(text("INSERT INTO frames_seen VALUES ('cam-f', 0), ('cam-f', 1), ('cam-g', 5)"))
        conn.execute(text("INSERT INTO bucket_tracks VALUES ('cam-f', '2026-03-04 10:00:00.000000', 1)"))
    old.dispose()
    before = datetime.now(UTC).replace(tzinfo=None)
    store = SqlStore(url)
    after = datetime.now(UTC).replace(tzinfo=None)
    assert current_revision(store.engine) == "0003" and schema_diff(store.engine) == []
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT camera_id, frame_seq, seen_at FROM frames_seen ORDER BY 1, 2")).all()
        assert conn.execute(text("SELECT count(*) FROM bucket_tracks")).scalar() == 1
    assert [(c, s) for c, s, _ in rows] == [("cam-f", 0), ("cam-f", 1), ("cam-g", 5)]
    assert all(before <= datetime.fromisoformat(t) <= after for _, _, t in rows)
    assert store.prune_seen(timedelta(days=7)) == 0
    assert store.apply([frame("cam-f", 0), frame("cam-f", 2)]) == [frame("cam-f", 2)]
    with store.engine.begin() as conn:  # the previous release's insert, during a rolling upgrade
        conn.execute(text("INSERT INTO frames_seen (camera_id, frame_seq) VALUES ('cam-f', 3)"))
    assert store.prune_seen(timedelta(days=7)) == 0
    assert store.prune_seen(timedelta(0)) == 5
    store.close()
