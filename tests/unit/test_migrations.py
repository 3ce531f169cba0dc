from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from emolens.cli import main
from emolens.store import SqlStore
from emolens.store.migrate import current_revision, head_revision
from emolens.store.sql import metadata


def schema_diff(engine):
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def test_migrations_build_exactly_the_models_schema(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    assert current_revision(store.engine) == head_revision() == "0001"
    assert schema_diff(store.engine) == []


def test_db_command(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["db", "current", "--db", url]) == 2  # a reader makes no database
    assert "no such database" in capsys.readouterr().err and not (tmp_path / "c.db").exists()
    (tmp_path / "c.db").write_bytes(b"")
    assert main(["db", "current", "--db", url]) == 0
    assert "revision None" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", url]) == 0
    assert "revision 0001" in capsys.readouterr().out
    assert main(["db", "current", "--db", url]) == 0
    assert "revision 0001" in capsys.readouterr().out
