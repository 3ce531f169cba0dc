"""SQL store on SQLAlchemy: SQLite for the embedded shape, PostgreSQL for the platform.

The tables are :mod:`emolens.store.schema`; what a batch adds to them is
:mod:`emolens.store.rollups`. ``frames_seen_blocks`` remembers which frames were accepted (a
bitmap per 1024 frames, :mod:`emolens.store.seen`) for the replay window only
(:meth:`SqlStore.prune_seen`); retention is :mod:`emolens.store.retention`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)

from emolens.errors import ConfigError, MissingExtra, NotFound, Unavailable
from emolens.observations import FrameObservations, Totals
from emolens.results import EMOTIONS
from emolens.store import partitions, retention, rollups, seen, stats
from emolens.store.base import (
    Bucket,
    By,
    Camera,
    Every,
    Folded,
    Policy,
    Removed,
    RowKey,
    StatsFilter,
    StatsRow,
    fold_frames,
)
from emolens.store.schema import bucket_tracks, cameras, frames_seen_blocks, metadata, minute_buckets

__all__ = ["SqlStore", "bucket_tracks", "cameras", "frames_seen_blocks", "metadata", "minute_buckets"]

PRUNE_BATCH = 5_000  # blocks (of 1024 frames) per DELETE: each is its own short transaction, so no lock is held long


def _row_bucket(row: Any) -> Bucket:
    m = row._mapping
    return Bucket(
        camera_id=m["camera_id"],
        minute=m["minute"],
        frames=m["frames"],
        faces=m["faces"],
        tracks=m["tracks"],
        low_quality=m["low_quality"],
        smiles=m["smiles"],
        smile_sum=m["smile_sum"],
        quality_sum=m["quality_sum"],
        counts={e: m[f"n_{e}"] for e in EMOTIONS},
        prob_sums={e: m[f"p_{e}"] for e in EMOTIONS},
    )


class SqlStore:
    """>>> store = SqlStore("sqlite://")  # in-memory SQLite
    >>> store.ensure_camera(Camera("cam-1", zone="entrance", site="mall-a"))
    >>> [c.camera_id for c in store.cameras()]
    ['cam-1']
    """

    def __init__(self, url: str, create: bool = True) -> None:
        """``create``: make the database's tables (and an SQLite file) when missing, as the
        writers do; without it (the read-only commands) a missing SQLite file is ``NotFound``
        and nothing is created."""
        self.url = url
        self._partitions: set[datetime] = set()  # days whose partitions this process made or saw
        if url.startswith("sqlite"):
            self._dialect: Any = sqlite
        elif url.startswith("postgresql"):
            self._dialect = postgresql
        else:
            raise ConfigError(
                f"unsupported database URL {_redacted(url)!r}: use sqlite:///FILE or postgresql+psycopg://..."
            )
        try:
            parsed = make_url(url)
            self.engine: Engine = create_engine(parsed, future=True)
        except ImportError as exc:  # the PostgreSQL driver is an extra
            raise MissingExtra(f"{parsed.drivername}://", "postgres", exc.name) from exc
        except NoSuchModuleError as exc:
            raise ConfigError(f"unknown database driver in {_redacted(url)!r}: use postgresql+psycopg://") from exc
        except (ArgumentError, ValueError) as exc:  # the URL does not parse (bad port, brackets, ...)
            raise ConfigError(f"the database URL is malformed ({type(exc).__name__})") from exc
        # Messages name an SQLite file (the user's own) but never a server's host or password.
        self.name = f"SQLite database {parsed.database}" if url.startswith("sqlite") else "the PostgreSQL database"
        # executemany INSERTs (the rollups' upserts) as multi-row VALUES, not one statement per row
        self.engine.dialect.use_insertmanyvalues_wo_returning = True
        if url.startswith("sqlite"):
            _check_sqlite_file(parsed.database, create)
            event.listen(self.engine, "connect", _sqlite_pragmas if create else _sqlite_reader_pragmas)
        if create:
            from emolens.store.migrate import upgrade

            with self._opening():
                upgrade(self.engine)

    @contextmanager
    def _opening(self) -> Iterator[None]:
        """An outage as in :meth:`_outage`; any other database error while opening means the
        file or database is not one emolens can use (a photo given as an SQLite file, ...)."""
        try:
            with self._outage():
                yield
        except DatabaseError as exc:
            # SQLite's reason names no host ("file is not a database"); a server's might.
            reason = str(exc.orig) if self.url.startswith("sqlite") else type(exc.orig).__name__
            raise ConfigError(f"{self.name} is not usable ({reason})") from exc

    def require_schema(self) -> None:
        """Refuse a database that holds no emolens tables (for the read-only commands, which
        would otherwise fail on the first query or report ``no data`` for a wrong database)."""
        from emolens.store.migrate import current_revision

        with self._opening():
            revision = current_revision(self.engine)
        if revision is None:
            raise NotFound(f"{self.name} holds no emolens data (`emolens db upgrade` creates the tables)")

    @contextmanager
    def _outage(self) -> Iterator[None]:
        """A database that cannot be reached (or is locked, or dropped the connection) is an
        outage: ``Unavailable``, whose message names neither the host nor the SQL."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise Unavailable(f"the {self.engine.dialect.name} database is unavailable") from exc

    def ensure_camera(self, camera: Camera) -> None:
        stmt = self._dialect.insert(cameras).values(camera_id=camera.camera_id, zone=camera.zone, site=camera.site)
        stmt = stmt.on_conflict_do_update(index_elements=["camera_id"], set_={"zone": camera.zone, "site": camera.site})
        with self._outage(), self.engine.begin() as conn:
            conn.execute(stmt)

    def register_camera(self, camera: Camera) -> Camera:
        stmt = self._dialect.insert(cameras).values(camera_id=camera.camera_id, zone=camera.zone, site=camera.site)
        # a camera with neither zone nor site was never declared (``apply`` makes such a row for
        # frames of a camera nobody declared): its first declaration registers it
        stmt = stmt.on_conflict_do_update(
            index_elements=["camera_id"],
            set_={"zone": camera.zone, "site": camera.site},
            where=(cameras.c.zone == "") & (cameras.c.site == ""),
        )
        with self._outage(), self.engine.begin() as conn:
            conn.execute(stmt)
            row = conn.execute(select(cameras).where(cameras.c.camera_id == camera.camera_id)).one()
        return Camera(row.camera_id, row.zone, row.site)

    def apply(self, frames: Sequence[FrameObservations]) -> list[FrameObservations]:
        if not frames:
            return []
        minutes = {f.minute() for f in frames}
        self._ensure_partitions(minutes)
        try:
            with self._outage(), self.engine.begin() as conn:
                return self.apply_in(conn, frames)
        except IntegrityError as exc:
            if "no partition" not in str(exc.orig):
                raise
            # retention dropped a day this process had made (a backfill older than the minute
            # retention): make it again and retry once
            self._partitions.clear()
            self._ensure_partitions(minutes)
            with self._outage(), self.engine.begin() as conn:
                return self.apply_in(conn, frames)

    def apply_in(self, conn: Connection, frames: Sequence[FrameObservations]) -> list[FrameObservations]:
        """``apply`` inside a caller's transaction (the aggregator commits offsets after it).
        On PostgreSQL the days' partitions must exist (``apply`` makes them)."""
        unique = {(f.camera_id, f.frame_seq): f for f in frames}
        self._ensure_cameras(conn, {f.camera_id for f in unique.values()})
        # Read, set and write the batch's blocks: safe because every writer of a camera holds its
        # row lock (_ensure_cameras) until commit, so no other aggregator changes these blocks in
        # between. A prune deleting one meanwhile only makes the upsert insert it again, with
        # the old bits kept: a frame is remembered longer, never forgotten early.
        keys = {(c, *seen.block_of(s)) for c, s in unique}
        blocks = self._read_blocks(conn, keys)
        new: list[FrameObservations] = []  # in delivery order
        changed: set[tuple[str, int, int]] = set()
        for (camera_id, seq), f in unique.items():
            key = (camera_id, *seen.block_of(seq))
            bits = blocks.get(key, seen.EMPTY)
            bit = seen.bit_of(seq)
            if seen.has_bit(bits, bit):
                continue
            blocks[key] = seen.set_bit(bits, bit)
            changed.add(key)
            new.append(f)
        if changed:
            now = _utcnow()
            stmt = self._dialect.insert(frames_seen_blocks)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["camera_id", "source_id", "block"],
                    set_={"bits": stmt.excluded.bits, "seen_at": stmt.excluded.seen_at},
                ),
                [
                    {"camera_id": c, "source_id": src, "block": b, "bits": blocks[(c, src, b)], "seen_at": now}
                    for c, src, b in sorted(changed)
                ],
            )
        if new:
            rollups.write(conn, self._dialect, fold_frames(new))
        return new

    def _read_blocks(self, conn: Connection, keys: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], bytes]:
        t = frames_seen_blocks
        out: dict[tuple[str, int, int], bytes] = {}
        ordered = sorted(keys)
        for i in range(0, len(ordered), 500):  # a batch of 512 frames touches a few blocks a camera
            rows = conn.execute(
                select(t.c.camera_id, t.c.source_id, t.c.block, t.c.bits).where(
                    tuple_(t.c.camera_id, t.c.source_id, t.c.block).in_(ordered[i : i + 500])
                )
            ).all()
            out.update({(r[0], r[1], r[2]): bytes(r[3]) for r in rows})
        return out

    def apply_folded(self, folded: Folded) -> None:
        """Write frames already summed per camera-minute (:func:`emolens.store.base.fold_frames`)
        through the same code as :meth:`apply`, without the per-frame redelivery check: for
        bulk loads of data that is new by construction (``scripts/generate_stats.py``)."""
        if not folded.buckets:
            return
        self._ensure_partitions({m for _, m in folded.buckets})
        with self._outage(), self.engine.begin() as conn:
            self._ensure_cameras(conn, {c for c, _ in folded.buckets})
            rollups.write(conn, self._dialect, folded)

    def _ensure_partitions(self, minutes: set[datetime]) -> None:
        """PostgreSQL: make the daily partitions these minutes fall in (and the day after each,
        so the DDL is usually done a day before the data comes), once per process."""
        if self.engine.dialect.name != "postgresql":
            return
        days = {partitions.day_of(m) for m in minutes}
        days |= {d + timedelta(days=1) for d in days if d.date() < date.max}
        missing = days - self._partitions
        if not missing:
            return
        with self._outage(), self.engine.begin() as conn:
            partitions.create(conn, missing)
        self._partitions |= missing

    def prune_seen(self, older_than: timedelta, batch: int = PRUNE_BATCH) -> int:
        """Forget the blocks of frames (1024 each) in which no frame was accepted for more than
        ``older_than``; returns how many blocks. A frame delivered again after that counts
        again: the replay window (docs/reliability.md). A block's time is its newest frame's,
        so a frame is remembered for at least the window (at 5 fps a block fills in 205 s).
        ``bucket_tracks`` is kept: a minute older than the window can still receive its first
        frames (a recording ingested with ``--start`` in the past, a consumer catching up), and
        forgetting its tracks would count a visitor twice in that minute."""
        t = frames_seen_blocks
        cutoff = _utcnow() - older_than
        expired = select(t.c.camera_id, t.c.source_id, t.c.block).where(t.c.seen_at < cutoff)
        stmt = delete(t).where(tuple_(t.c.camera_id, t.c.source_id, t.c.block).in_(expired.limit(batch)))
        removed = 0
        with self._outage():
            while True:
                with self.engine.begin() as conn:
                    n = conn.execute(stmt).rowcount
                removed += n
                if n < batch:
                    return removed

    def _ensure_cameras(self, conn: Connection, ids: set[str]) -> None:
        conn.execute(
            self._dialect.insert(cameras)
            .values([{"camera_id": c, "zone": "", "site": ""} for c in sorted(ids)])
            .on_conflict_do_nothing()
        )
        # One writer per camera at a time: the rollups read a period's tracks before adding to
        # them. Kafka gives each camera one aggregator; during a rebalance two may overlap, and
        # this row lock (taken in camera order, so two batches never deadlock) makes the second
        # wait. SQLite has one writer anyway.
        if self.engine.dialect.name == "postgresql":
            conn.execute(
                select(cameras.c.camera_id)
                .where(cameras.c.camera_id.in_(sorted(ids)))
                .order_by(cameras.c.camera_id)
                .with_for_update()
            ).all()

    def buckets(
        self,
        camera_id: str | None = None,
        zone: str | None = None,
        site: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        camera_ids: Collection[str] | None = None,
    ) -> list[Bucket]:
        q = select(minute_buckets).join(cameras, cameras.c.camera_id == minute_buckets.c.camera_id)
        if camera_id:
            q = q.where(minute_buckets.c.camera_id == camera_id)
        if camera_ids is not None:
            q = q.where(minute_buckets.c.camera_id.in_(sorted(camera_ids)))
        if zone:
            q = q.where(cameras.c.zone == zone)
        if site:
            q = q.where(cameras.c.site == site)
        if since:
            q = q.where(minute_buckets.c.minute >= since)
        if until:
            q = q.where(minute_buckets.c.minute < until)
        q = q.order_by(minute_buckets.c.camera_id, minute_buckets.c.minute)
        with self._outage(), self.engine.connect() as conn:
            return [_row_bucket(r) for r in conn.execute(q)]

    def totals(self) -> dict[str, Totals]:
        """Each camera's counts over every stored minute (what the live counters rebuild from)."""
        cols = [minute_buckets.c[c] for c in ("frames", "faces", "smiles")] + [
            minute_buckets.c[f"n_{e}"] for e in EMOTIONS
        ]
        q = select(minute_buckets.c.camera_id, *[func.sum(c) for c in cols]).group_by(minute_buckets.c.camera_id)
        with self._outage(), self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return {
            r[0]: Totals(
                r[0], int(r[1]), int(r[2]), int(r[3]), {e: int(v) for e, v in zip(EMOTIONS, r[4:], strict=True)}
            )
            for r in rows
        }

    def cameras(self) -> list[Camera]:
        with self._outage(), self.engine.connect() as conn:
            rows = conn.execute(select(cameras).order_by(cameras.c.camera_id)).all()
        return [Camera(r.camera_id, r.zone, r.site) for r in rows]

    def camera(self, camera_id: str) -> Camera | None:
        with self._outage(), self.engine.connect() as conn:
            row = conn.execute(select(cameras).where(cameras.c.camera_id == camera_id)).one_or_none()
        return None if row is None else Camera(row.camera_id, row.zone, row.site)

    def count_groups(self, by: By, where: StatsFilter) -> int:
        with self._outage(), self.engine.connect() as conn:
            return stats.count_groups(conn, by, where)

    def stats_rows(
        self,
        by: By,
        every: Every,
        since: datetime,
        until: datetime,
        where: StatsFilter,
        *,
        k: int,
        after: RowKey | None = None,
        limit: int | None = None,
    ) -> list[StatsRow]:
        with self._outage(), self.engine.connect() as conn:
            return stats.stats_rows(conn, by, every, since, until, where, k, after, limit)

    def count_suppressed(
        self, by: By, every: Every, since: datetime, until: datetime, where: StatsFilter, k: int
    ) -> int:
        with self._outage(), self.engine.connect() as conn:
            return stats.count_suppressed(conn, by, every, since, until, where, k)

    def dwell_histogram(self, since: datetime, until: datetime, edges: Sequence[float]) -> list[int] | None:
        try:
            with self.engine.connect() as conn:
                return stats.dwell_histogram(conn, since, until, edges)
        except (ProgrammingError, OperationalError) as exc:
            if stats.missing_or_denied(exc):
                return None  # a database without timelines, or a role that may not read them
            raise Unavailable(f"the {self.engine.dialect.name} database is unavailable") from exc
        except InterfaceError as exc:
            raise Unavailable(f"the {self.engine.dialect.name} database is unavailable") from exc

    def apply_retention(self, policy: Policy, now: datetime | None = None) -> list[Removed]:
        """See :mod:`emolens.store.retention`: partitions dropped whole on PostgreSQL, rows
        deleted elsewhere, then the frames' replay window pruned."""
        now = now or _utcnow()
        try:
            with self._outage():
                out = retention.delete_older(self.engine, policy, now)
        finally:
            self._partitions.clear()  # a dropped day is made again if a backfill needs it
        window = timedelta(seconds=policy.replay_window_s)
        seen_blocks = Removed("frames_seen_blocks", now - window)
        seen_blocks.rows = self.prune_seen(window)
        out.append(seen_blocks)
        return out

    def close(self) -> None:
        self.engine.dispose()


def _utcnow() -> datetime:
    """Naive UTC, as every time column of the store holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def _redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://..."


def _check_sqlite_file(database: str | None, create: bool) -> None:
    """SQLite makes a missing file on its first connection, but not a missing folder (it then
    fails with a bare 'unable to open database file'): say which, and refuse to make a file
    for a reader (``emolens stats --db sqlite:///typo.db`` would print ``no data``)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if create:
        if not path.parent.is_dir():
            raise ConfigError(f"SQLite database {path}: folder {path.parent} does not exist")
    elif not path.exists():
        raise NotFound(f"SQLite database {path}: no such database (`emolens run` or `emolens db upgrade` creates it)")
    if path.is_dir():
        raise ConfigError(f"SQLite database {path}: is a folder")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_reader_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """A reader leaves the journal mode alone: setting it writes to the file (the writers that
    made the database chose WAL, and SQLite remembers that in the file)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
