"""The result store: an append-only table of `Record`s.

The embedded default is a SQLite file (`./aigcbench.db`); a team points
`--store` or `AIGCBENCH_STORE` at a PostgreSQL URL instead. Both go through the
same SQLAlchemy Core code, so a report reads a laptop's file and a team server
alike::

    with Store.open() as store:                  # ./aigcbench.db, or $AIGCBENCH_STORE
        store.append(record)
        ok = store.records(workload="ddpm", status="ok", labels={"branch": "main"})

Records are never updated or deleted: a result, once measured, is evidence.
Each record is kept whole as JSON (`record_json`); the columns next to it copy
the fields reports select on, labels get a table of their own, and a copy
without samples serves listings, so a whole `--where` selection runs as
indexed SQL and a report over a large store parses no sample arrays it does
not draw (tables and upgrades of older stores: `store_layout`).

A store refuses what it did not create, and what this aigcbench cannot read
or must not rewrite: someone else's file or database, an incomplete store, a
store of a newer schema or an older layout (`aigcbench store upgrade`
migrates that one, after a backup). The decision is made before anything
that could write to it is opened, and a new SQLite store appears whole or
not at all (`store_safety`, `store_sqlite`).

A server store is reached when it is opened, within a bounded time, or
refused in one line naming host and port, never the password
(`store_server`). A record it does not take because it stopped answering is
spooled on this machine and sent by `aigcbench store flush` or by the next
`Store.open` of that store (`store_spool`): a measurement is never lost to
the network.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from . import store_spool
from .errors import UserError
from .record import SCHEMA_VERSION, Record
from .store_layout import META_TABLE, STORE_LAYOUT
from .store_layout import backfill as _backfill
from .store_layout import chunks as _chunks
from .store_layout import initialise as _create_tables
from .store_layout import labels as _labels
from .store_layout import meta as _meta
from .store_layout import records as _records
from .store_layout import required_tables as _required_tables
from .store_layout import rows as _rows
from .store_safety import Shape, State, classify, sqlite_shape
from .store_server import UNANSWERED, masked, masked_text, reason, server_engine, spool_key, with_default_driver
from .store_sqlite import WRITE, prepare_sqlite_file, sqlite_engine, sqlite_file

ENV_VAR = "AIGCBENCH_STORE"
DEFAULT_PATH = "aigcbench.db"

# PostgreSQL has no database-wide write lock like SQLite's BEGIN IMMEDIATE: two
# processes creating (or upgrading) a store at once serialise on this advisory lock.
_PG_LOCK_KEY = 0x6169_6763_6265_6E63 >> 1


def resolve_store_url(value: str | None) -> str:
    """Turn `--store` (or `$AIGCBENCH_STORE`, or the default) into a SQLAlchemy URL.

    A value containing ``://`` is already a URL (``postgresql://host/db``,
    ``sqlite:////abs/path.db``); anything else is a SQLite file path, made
    absolute so the store does not depend on the directory a later command
    runs in: ``runs.db`` -> ``sqlite:////current/dir/runs.db``.
    """
    value = value or os.environ.get(ENV_VAR) or DEFAULT_PATH
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().absolute()}"


def spool_of(value: str | None) -> Path | None:
    """The spool file of the store `value` names (`store_spool`); None for a SQLite store, which never spools."""
    url, _ = _parsed(value)
    return None if url.get_backend_name() == "sqlite" else store_spool.spool_file(spool_key(url))


def _parsed(value: str | None) -> tuple[sa.URL, str]:
    """The URL `value` names, its driver filled in, and the URL as it may be printed (password masked)."""
    url = resolve_store_url(value)
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise UserError(f"store {masked_text(url)!r} is not a valid database URL: {masked_text(str(exc))}") from None
    return with_default_driver(parsed), masked(parsed)


class Store:
    """An append-only collection of records in a SQL database. Build it with `Store.open`."""

    def __init__(self, engine: Engine, display_url: str, spool_key: str | None = None) -> None:
        self._engine = engine
        # Writes take a SQLite file's lock at BEGIN (`store_sqlite.take_over_sqlite_begin`).
        self._writer = engine.execution_options(**{WRITE: True})
        self._url = display_url
        # Server stores only: where a record goes when the server stops answering (`store_spool`).
        self._spool_key = spool_key
        self._spooled = False  # this Store spooled a record: send it once the server answers again

    @classmethod
    def open(cls, value: str | None = None, *, send_spooled: bool = True) -> "Store":
        """Open (and, if it is new or empty, initialise) the store named by `value`.

        `value` is resolved by `resolve_store_url`. Raises `UserError` for a
        missing folder, for a file or database that is not an aigcbench store
        (or an incomplete one), for a store written by a newer aigcbench, for
        one of an older layout (`aigcbench store upgrade` migrates it), and for
        a server that cannot be reached (naming its host and port); any of
        those is left exactly as it was. A server store then receives the
        records this machine spooled for it (`send_spooled`), saying so on stderr.
        """
        store, where = cls._connect(value, upgrading=False)
        try:
            store._initialise(where)
            if send_spooled:
                store._send_spooled()
        except sa.exc.OperationalError as exc:
            store.close()
            raise UserError(f"store {store.url}: {reason(exc, store._engine.url)}") from None
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def _connect(cls, value: str | None, *, upgrading: bool) -> tuple["Store", str]:
        """A store on an engine, once the file (if SQLite) is known to be one this command may open."""
        parsed, display = _parsed(value)
        if parsed.get_backend_name() != "sqlite":
            return cls(server_engine(parsed, display), display, spool_key(parsed)), display
        sqlite_path = sqlite_file(parsed)
        if sqlite_path is not None:
            prepare_sqlite_file(sqlite_path, upgrading=upgrading)  # before any connection that could write
        return cls(sqlite_engine(parsed, display), display), str(sqlite_path) if sqlite_path is not None else display

    @staticmethod
    def exists(value: str | None = None) -> bool:
        """Whether `value` names a store that is already there (always True for a server database).

        Lets read-only commands (`report`, `sweep --dry-run`) avoid creating a
        SQLite store just to find it empty. A zero-byte file, or a SQLite file
        without tables, is not a store yet (`open` would initialise it); a file
        `open` would refuse counts as there, so that `open` says why.
        """
        try:
            path = sqlite_file(make_url(resolve_store_url(value)))
        except (sa.exc.ArgumentError, ValueError):
            return True  # let `open` report the bad URL
        if path is None:
            return True
        try:
            shape = sqlite_shape(path)  # read-only
        except UserError:
            return path.exists()
        return shape is not None and bool(shape.tables)

    @property
    def url(self) -> str:
        """The store's URL, with any password masked: safe to print in reports and logs."""
        return self._url

    def append(self, record: Record) -> bool:
        """Add one record in its own transaction; a run_id already stored is a `UserError`.

        Returns True once the record is stored. On a server database that
        stops answering, the record is spooled on this machine instead (one
        line on stderr says where and how it will be sent) and False is
        returned: the measurement is kept, not lost (`store_spool`). The next
        append that succeeds sends what this Store spooled before it.
        """
        row, labels = _rows(record)
        try:
            with self._writer.begin() as conn:
                conn.execute(_records.insert(), [row])
                if labels:
                    conn.execute(_labels.insert(), labels)
        except sa.exc.IntegrityError:
            # run_id is the only unique column, so this is a duplicate.
            raise UserError(f"run {record.run_id} is already in store {self._url}; records are never replaced") from None
        except UNANSWERED as exc:
            if self._spool_key is None:
                raise  # a SQLite file: nothing a local spool would do better
            store_spool.keep(self._spool_key, record, store=self._url, why=reason(exc, self._engine.url))
            self._spooled = True
            return False
        if self._spooled:  # the server answers again: send what it missed
            self._spooled = not self._send_spooled()
        return True

    def append_many(self, records: Iterable[Record]) -> int:
        """Add records in one transaction (all or nothing); returns how many were new.

        A run_id already stored (or given twice) is skipped, not refused: importing
        the same file twice adds nothing the second time.
        """
        fresh: dict[str, Record] = {}
        for record in records:
            fresh.setdefault(record.run_id, record)
        try:
            with self._writer.begin() as conn:
                for chunk in _chunks(list(fresh)):
                    held = conn.execute(sa.select(_records.c.run_id).where(_records.c.run_id.in_(chunk)))
                    for run_id in held.scalars():
                        del fresh[run_id]
                for chunk in _chunks(list(fresh.values())):
                    rows = [_rows(record) for record in chunk]
                    conn.execute(_records.insert(), [row for row, _ in rows])
                    labels = [label for _, row_labels in rows for label in row_labels]
                    if labels:
                        conn.execute(_labels.insert(), labels)
        except sa.exc.IntegrityError:
            # Only on a server database, where another writer stored one of these runs meanwhile.
            raise UserError(f"store {self._url}: another writer added some of these runs meanwhile; "
                            "nothing was added, run the command again") from None
        return len(fresh)

    def records(
        self,
        *,
        workload: str | None = None,
        backend: str | None = None,
        status: str | None = None,
        hardware_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Record]:
        """Records matching every given filter, oldest first (insertion order).

        `labels` matches records carrying all the given key=value pairs (and
        possibly more), e.g. ``labels={"branch": "main"}``.
        """
        columns = {"workload": workload, "backend": backend, "status": status, "hardware_key": hardware_key}
        query = _where(
            sa.select(_records.c.record_json),
            {column: (value,) for column, value in columns.items() if value is not None},
            {key: (value,) for key, value in (labels or {}).items()},
        )
        return self._read(query)

    def select(self, selection: Any, *, samples: bool = True) -> list[Record]:
        """Records matching a `reports.select.Selection`, oldest first; the whole selection runs in SQL.

        With `samples=False` only the stored summaries are read and the records
        come back with empty `samples`: a report over a large store loads the
        sample arrays later, just for the cells a chart draws (`samples_of`).
        """
        # A row an older aigcbench appended since this store was opened has no summary yet: read it whole.
        summary = sa.func.coalesce(_records.c.summary_json, _records.c.record_json)
        document = _records.c.record_json if samples else summary
        query = _where(sa.select(document), selection.columns, selection.labels)
        if selection.since is not None:
            query = query.where(_records.c.created_at >= selection.since)
        if selection.until is not None:
            query = query.where(_records.c.created_at < selection.until)
        return self._read(query)

    def samples_of(self, run_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The raw samples of the given runs, by run_id (what `select(samples=False)` left out)."""
        found: dict[str, dict[str, Any]] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(run_ids))):
                query = sa.select(_records.c.run_id, _records.c.record_json).where(_records.c.run_id.in_(chunk))
                found.update((run_id, json.loads(text)["samples"]) for run_id, text in conn.execute(query))
        return found

    def label_keys(self) -> set[str]:
        """Every label key some stored record carries (to refuse a mistyped `--where` key)."""
        with self._engine.connect() as conn:
            return set(conn.execute(sa.select(_labels.c.key).distinct()).scalars())

    def holdings(self) -> dict[str, Any]:
        """What the store holds, by selection key: shown when a selection matches nothing."""
        held: dict[str, Any] = {"records": self.count()}
        with self._engine.connect() as conn:
            for key, column in (("workload", "workload"), ("backend", "backend"), ("hardware", "hardware_key"),
                                ("scenario", "scenario"), ("status", "status")):
                values = conn.execute(sa.select(_records.c[column]).distinct().order_by(_records.c[column])).scalars()
                held[key] = [v for v in values if v is not None]
        held["labels"] = sorted(self.label_keys())
        return held

    def count(self) -> int:
        """How many records the store holds."""
        with self._engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(_records)).scalar_one()

    def close(self) -> None:
        """Close every pooled connection (SQLite keeps the file open until then)."""
        self._engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._url!r})"

    def send_spooled(self) -> store_spool.Sent | None:
        """Send the records this machine spooled for this store (`aigcbench store flush`); None: nothing spooled.

        All or nothing, skipping run_ids already stored; only what was sent
        leaves the spool. A server that stops answering meanwhile is a
        `UserError`, the spool left whole. A SQLite store never has a spool.
        """
        try:
            return self._deliver_spool()
        except UNANSWERED as exc:
            raise UserError(f"store {self._url} stopped answering while its spool was sent "
                            f"({reason(exc, self._engine.url)}); the spool is as it was") from None

    def _deliver_spool(self) -> store_spool.Sent | None:
        return None if self._spool_key is None else store_spool.send(self._spool_key, self.append_many)

    def _send_spooled(self) -> bool:
        """Send this store's spool, saying so on stderr; False (said too) when it could not be sent now.

        Never raises for that: the command that opened the store goes on, and
        the spool waits, whole, for the next one.
        """
        try:
            store_spool.tell(self._deliver_spool(), self._url)
        except (*UNANSWERED, UserError) as exc:
            why = reason(exc, self._engine.url) if isinstance(exc, sa.exc.DBAPIError) else str(exc)
            store_spool.say(f"store {self._url}: spooled records not sent yet ({why})")
            return False
        return True

    def _read(self, query: sa.Select) -> list[Record]:
        with self._engine.connect() as conn:
            texts = conn.execute(query.order_by(_records.c.id)).scalars().all()
        return _decode(texts)

    def _initialise(self, where: str) -> None:
        # Decide on a read first: a store that is ours and complete (nearly every
        # open) takes no write lock, so a read-only file or a busy sweep never blocks a report.
        with self._engine.connect() as conn:
            state = classify(where, _shape(conn))
            if state is State.CURRENT and not _unsummarised(conn):
                return
        # One write transaction: when two processes open a brand-new store at once,
        # the second waits for the first and then finds its tables.
        with self._writer.begin() as conn:
            _lock_server(conn)
            state = classify(where, _shape(conn))
            if state is State.BLANK:
                _create_tables(conn, SCHEMA_VERSION)
            else:
                _backfill(conn)  # rows an older aigcbench appended to this store


def _decode(texts: Sequence[str]) -> list[Record]:
    """Records from their stored JSON texts, fast enough for a whole large store.

    The texts are parsed as one JSON array (one decoder call, keys shared
    between documents), and with the cyclic garbage collector paused: building
    many small dicts otherwise triggers full collections over everything
    already built, which costs more than the parsing itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        documents = json.loads("[" + ",".join(texts) + "]")
        return [Record.from_dict(document) for document in documents]
    finally:
        if was_enabled:
            gc.enable()


def _where(query: sa.Select, columns: Mapping[str, Collection[Any]], labels: Mapping[str, Collection[str]]) -> sa.Select:
    """Add per-column and per-label alternatives: OR within a key, AND across keys."""
    for column, wanted in columns.items():
        query = query.where(_records.c[column].in_(list(wanted)))
    for key, wanted in labels.items():
        carriers = sa.select(_labels.c.run_id).where(_labels.c.key == key, _labels.c.value.in_(list(wanted)))
        query = query.where(_records.c.run_id.in_(carriers))
    return query


def _shape(conn: sa.Connection) -> Shape:
    """What `conn`'s database holds (store_safety reads SQLite files the same way, without SQLAlchemy)."""
    inspector = sa.inspect(conn)
    ours = set(_required_tables(STORE_LAYOUT))
    tables = {
        name: frozenset(c["name"] for c in inspector.get_columns(name)) if name in ours else frozenset()
        for name in inspector.get_table_names()
    }
    meta = {}
    if {"key", "value"} <= tables.get(META_TABLE, frozenset()):
        meta = {str(key): str(value) for key, value in conn.execute(sa.select(_meta.c.key, _meta.c.value))}
    return Shape(tables, meta)


def _unsummarised(conn: sa.Connection) -> bool:
    """Whether some row lacks its summary (an older aigcbench appended it): cheap, through a partial index."""
    query = sa.select(_records.c.id).where(_records.c.summary_json.is_(None)).limit(1)
    return conn.execute(query).first() is not None


def _lock_server(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def discard_if_empty(store: Store) -> None:
    """Close `store`; delete its SQLite file if it holds no record at all.

    For a store a command created for a run that was then refused: a file
    with no record in it is nothing the user has, so none is left behind. Not
    a method: a Store never deletes or updates what it holds.
    """
    empty = store.count() == 0
    store.close()
    path = sqlite_file(store._engine.url)
    if empty and path is not None:
        for leftover in (path, path.with_name(path.name + "-journal")):
            leftover.unlink(missing_ok=True)
