from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from emolens.cli import main
from emolens.store import SqlStore
from emolens.store.migrate import current_revision, downgrade, head_revision, upgrade
from emolens.store.sql import metadata
from tests.redelivery import frame, seen_frames


def schema_diff(engine):
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def test_migrations_build_exactly_the_models_schema(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    assert current_revision(store.engine) == head_revision() == "0004"
    assert schema_diff(store.engine) == []


def test_db_command(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["db", "current", "--db", url]) == 2  # a reader makes no database
    assert "no such database" in capsys.readouterr().err and not (tmp_path / "c.db").exists()
    (tmp_path / "c.db").write_bytes(b"")
    assert main(["db", "current", "--db", url]) == 0
    assert "revision None" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", url]) == 0
    assert "revision 0004" in capsys.readouterr().out
    assert main(["db", "current", "--db", url]) == 0
    assert "revision 0004" in capsys.readouterr().out


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
    assert current_revision(store.engine) == "0004" and schema_diff(store.engine) == []
    with store.engine.connect() as conn:
        stamps = conn.execute(text("SELECT seen_at FROM frames_seen_blocks")).scalars().all()
        assert conn.execute(text("SELECT count(*) FROM bucket_tracks")).scalar() == 1
    assert seen_frames(store) == [("cam-f", 0), ("cam-f", 1), ("cam-g", 5)]  # 0004 made bitmaps of them
    assert len(stamps) == 2 and all(before <= datetime.fromisoformat(t) <= after for t in stamps)
    assert store.prune_seen(timedelta(days=7)) == 0
    assert store.apply([frame("cam-f", 0), frame("cam-f", 2)]) == [frame("cam-f", 2)]
    assert store.prune_seen(timedelta(0)) == 2  # blocks
    store.close()


def test_0004_turns_the_rows_into_bitmaps_and_back(tmp_path):
    """Every frame of ``frames_seen`` is one bit of a block, whose time is its newest frame's;
    downgrade gives the same rows back (stamped with their block's time)."""
    url = f"sqlite:///{tmp_path / 'rows.db'}"
    engine = create_engine(url)
    upgrade(engine, "0003")
    src = 3 << 40
    rows = [
        ("cam-a", 0, "2026-03-01 10:00:00"),
        ("cam-a", 1023, "2026-03-01 10:03:00"),  # same block, newer
        ("cam-a", 1024, "2026-03-01 10:04:00"),
        ("cam-a", src + 7, "2026-03-02 00:00:00"),
        ("cam-b", 7, "2026-03-03 00:00:00"),
    ]
    with engine.begin() as conn:
        for c, s, t in rows:
            conn.execute(text("INSERT INTO frames_seen VALUES (:c, :s, :t)"), {"c": c, "s": s, "t": t})
    upgrade(engine)
    store = SqlStore(url)
    assert seen_frames(store) == [(c, s) for c, s, _ in rows]
    with store.engine.connect() as conn:
        blocks = conn.execute(
            text("SELECT camera_id, source_id, block, seen_at FROM frames_seen_blocks ORDER BY 1, 2, 3")
        ).all()
    assert [(c, src_, b, t[:19]) for c, src_, b, t in blocks] == [
        ("cam-a", 0, 0, "2026-03-01 10:03:00"),
        ("cam-a", 0, 1, "2026-03-01 10:04:00"),
        ("cam-a", 3, 0, "2026-03-02 00:00:00"),
        ("cam-b", 0, 0, "2026-03-03 00:00:00"),
    ]
    assert store.apply([frame("cam-a", 1023), frame("cam-a", 1022)]) == [frame("cam-a", 1022)]
    store.close()
    downgrade(engine, "0003")
    with engine.connect() as conn:
        back = conn.execute(text("SELECT camera_id, frame_seq, seen_at FROM frames_seen ORDER BY 1, 2")).all()
    assert [(c, s) for c, s, _ in back] == [(c, s) for c, s, _ in rows[:1]] + [("cam-a", 1022)] + [
        (c, s) for c, s, _ in rows[1:]
    ]
    assert {(s, t[:19]) for _, s, t in back if s in (1024, 7)} == {
        (1024, "2026-03-01 10:04:00"),
        (7, "2026-03-03 00:00:00"),
    }
    assert current_revision(engine) == "0003"
    engine.dispose()


def test_the_analytics_guide_describes_the_schema_of_the_head_revision():
    """docs/analytics.md heads its schema table with the revision it describes: the latest one
    (it said 0003 while describing 0004's frames_seen_blocks)."""
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text()
    (named,) = re.findall(r"^## Schema \(as of migration `(\d+)`", guide, re.M)
    assert named == head_revision()
    assert "`frames_seen_blocks`" in guide
