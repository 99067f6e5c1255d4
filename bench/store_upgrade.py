"""`aigcbench store upgrade`: migrate a store of an older layout, after a backup.

Only this migrates a store: every other command refuses an older layout with
a hint to run it (`store_safety.classify`), so a store is never rewritten
behind its owner's back, and never without a copy of what it was.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from .errors import UserError
from .store import Store, _lock_server, _shape, resolve_store_url
from .store_layout import STORE_LAYOUT, backfill, records, upgrade
from .store_safety import BUSY_TIMEOUT_S, State, classify, write_new_file


@dataclasses.dataclass(frozen=True)
class Upgrade:
    """What `upgrade_store` did: the layouts before and after, and where the backup went (None: nothing to do)."""

    store: str
    from_layout: int
    to_layout: int
    records: int
    backup: Path | None


def upgrade_store(value: str | None = None) -> Upgrade:
    """Migrate a store of an older layout to this aigcbench's, after writing a backup of it.

    The migration is one write transaction: all of it, or the store as it was.
    The backup is taken inside it, so it is exactly the store before the
    upgrade: for SQLite a copy of the database next to it
    (``NAME.layout1-backup.db``, through SQLite's backup API); for a server
    database every record as JSON lines (what `aigcbench import` reads back)
    in the current folder. A store already of this layout is left alone.
    """
    if not Store.exists(value):
        raise UserError(f"no store at {resolve_store_url(value)!r}: nothing to upgrade")
    store, where = Store._connect(value, upgrading=True)
    try:
        with store._writer.begin() as conn:
            _lock_server(conn)
            shape = _shape(conn)
            state = classify(where, shape, upgrading=True)
            if state is State.BLANK:
                raise UserError(f"store {where!r} is empty: nothing to upgrade")
            layout = int(shape.meta.get("store_layout", 1))
            count = conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one()
            if state is State.CURRENT:
                return Upgrade(store.url, layout, layout, count, None)
            backup = _backup(conn, where, layout)
            try:
                upgrade(conn)
                backfill(conn)
            except BaseException:
                backup.unlink()  # the store stays as it was (rolled back): its copy is not needed
                raise
        return Upgrade(store.url, layout, STORE_LAYOUT, count, backup)
    except sa.exc.OperationalError as exc:
        raise UserError(f"store {store.url}: {exc.orig}") from None
    finally:
        store.close()


def _backup(conn: sa.Connection, where: str, layout: int) -> Path:
    """A copy of the store as it is now, written whole before anything changes; returns its path."""
    if conn.dialect.name == "sqlite":
        path = Path(where)

        def copy(temp: Path) -> None:
            # A second connection reads beside our write transaction (it holds only the RESERVED lock so far).
            source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
            target = sqlite3.connect(temp)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()

        return write_new_file(path.with_name(f"{path.stem}.layout{layout}-backup{path.suffix or '.db'}"), copy)

    def dump(temp: Path) -> None:
        with temp.open("w", encoding="utf-8") as handle:
            for (text,) in conn.execute(sa.select(records.c.record_json).order_by(records.c.id)):
                handle.write(text + "\n")

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = conn.engine.url.database or "store"
    return write_new_file(Path.cwd() / f"aigcbench-{name}-layout{layout}-backup-{stamp}.jsonl", dump)
