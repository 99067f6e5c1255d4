"""How a store uses a SQLite file: created whole, refused untouched, written under BEGIN IMMEDIATE.

The embedded store is one file. `prepare_sqlite_file` decides (read-only)
whether this command may open it and creates a missing one whole
(`store_safety`); `take_over_sqlite_begin` makes every write transaction take
the file's write lock up front, so many sweep workers appending to one file
wait their turn instead of failing with "database is locked".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .errors import UserError
from .record import SCHEMA_VERSION
from .store_layout import initialise as _create_tables
from .store_safety import BUSY_TIMEOUT_S, classify, create_sqlite, remove_abandoned, sqlite_shape

WRITE = "aigcbench_write"  # execution option: this transaction will write


def sqlite_file(url: sa.URL) -> Path | None:
    """The file behind a SQLite URL; None for other databases, in-memory and `uri=true` URLs."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") or "uri" in url.query:
        return None
    return Path(url.database).absolute()


def sqlite_engine(url: sa.URL, display: str) -> Engine:
    """An engine on the SQLite file `url` (already prepared), its writes taking the lock at BEGIN."""
    try:
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise UserError(f"store {display}: {exc}") from None
    take_over_sqlite_begin(engine)
    return engine


def prepare_sqlite_file(path: Path, *, upgrading: bool) -> None:
    """Refuse a file this command must not open (never writing to it); create a missing store whole."""
    shape = sqlite_shape(path)
    if shape is None:
        create_sqlite(path, _build_sqlite)
        shape = sqlite_shape(path)  # ours, or the one a racing process linked in first
        if shape is None:
            raise UserError(f"store {str(path)!r} was removed while it was being created")
    classify(str(path), shape, upgrading=upgrading)
    remove_abandoned(path)  # only now that the folder is known to hold our store


def _build_sqlite(temp: Path) -> None:
    """Every table and meta entry of a new store, written into the empty file `temp` in one transaction.

    No journal and no syncing while it is built: `temp` is nobody's store
    until `create_sqlite` has flushed it whole and linked it into place.
    """

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(temp)
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        return conn

    engine = sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)
    take_over_sqlite_begin(engine)  # one BEGIN ... COMMIT around the DDL, not one implicit commit per table
    try:
        with engine.begin() as conn:
            _create_tables(conn, SCHEMA_VERSION)
    finally:
        engine.dispose()


def take_over_sqlite_begin(engine: Engine) -> None:
    """Make SQLAlchemy, not the sqlite3 module, issue BEGIN (the recipe in SQLAlchemy's SQLite docs).

    Writes start with BEGIN IMMEDIATE, which takes the write lock up front and
    so waits in SQLite's busy handler (up to `BUSY_TIMEOUT_S`). A deferred
    transaction that reads first and then writes can instead fail at once with
    "database is locked" when another process got there first. Reads keep a
    plain BEGIN so they never block each other.
    """

    @sa.event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")
