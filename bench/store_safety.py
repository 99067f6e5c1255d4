"""What a database is, decided without touching it; a new SQLite store created whole or not at all.

Every command opens a store through `Store.open`, which first decides what is
there and refuses (`StoreRefused`, exit 2) anything it must not write to,
before any connection that could write is made:

* nothing, a zero-byte file or a SQLite database without tables: `BLANK`, a
  new store is made. A zero-byte file holds nothing to lose, and it is exactly
  what an older aigcbench (or `touch`) leaves, so it is initialised (in place,
  in one SQLite transaction) rather than refused;
* an aigcbench store of this schema and layout: `CURRENT`;
* an aigcbench store of an older layout: `OLD`, which only `aigcbench store
  upgrade` accepts; every other command refuses it with that hint;
* anything else is refused and left byte-identical: a file that is not SQLite,
  someone else's database, an *incomplete* store (our meta table without the
  tables it names, or the reverse) and a store written by a newer aigcbench.

SQLite files are inspected through a ``mode=ro`` connection: it takes only a
shared lock (so it never reads a half-committed transaction) and cannot
write. The one state it cannot read is a *hot journal* (a writer killed
mid-transaction): recovering that is a write, so the file and its journal are
copied aside and the copy is recovered and inspected; the real file is
recovered by the first connection that writes, and only once it is known to
be ours.

A missing SQLite store is built in a temporary file in the same folder and
hard-linked into place only when complete, so a process killed while creating
it leaves no store at all (and a temporary file the next creation removes),
never a database without its tables; the link also never replaces a store
another process created meanwhile.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import UserError
from .record import SCHEMA_VERSION
from .store_layout import APPLICATION, META_TABLE, STORE_LAYOUT, required_tables

# How long a connection waits for another process's transaction before giving up.
# Sweeps run one worker process per cell, all appending to one file: waiting a
# while is always better than losing a measured result to "database is locked".
BUSY_TIMEOUT_S = 30

_SQLITE_MAGIC = b"SQLite format 3\x00"
_CREATING = ".creating"  # suffix of a store being built (`create_sqlite`)


class State(enum.Enum):
    BLANK = "blank"
    CURRENT = "current"
    OLD = "old"


class StoreRefused(UserError):
    """A store `Store.open` must not use; `kind` says why (foreign, damaged, incomplete, newer, older, old-layout)."""

    def __init__(self, store: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.store = store
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class Shape:
    """What a database holds, as far as telling our stores apart needs.

    `tables` maps every table name to its columns (columns are read only for
    our own tables); `meta` is the aigcbench_meta table's entries, if any.
    """

    tables: Mapping[str, frozenset[str]]
    meta: Mapping[str, str]


def classify(where: str, shape: Shape, *, upgrading: bool = False) -> State:
    """Which `State` a database is in; raises `StoreRefused` for what this aigcbench must not use.

    `upgrading` (only `aigcbench store upgrade`) accepts an older layout.
    """
    if not shape.tables:
        return State.BLANK
    if META_TABLE not in shape.tables:
        shown = ", ".join(repr(name) for name in sorted(shape.tables)[:5])
        raise StoreRefused(where, "foreign", f"{where!r} is not an aigcbench store; refusing to use it "
                                             f"(it holds other tables: {shown})")
    application = shape.meta.get("application")
    if application is not None and application != APPLICATION:
        raise StoreRefused(where, "foreign", f"{where!r} is not an aigcbench store; refusing to use it "
                                             f"(it belongs to {application!r})")
    if application is None:
        raise _incomplete(where, f"{META_TABLE} has no entry for 'application'")
    version = _number(where, shape.meta, "schema_version")
    layout = _number(where, shape.meta, "store_layout", default=1)  # layout 1 had no entry
    if layout < 1:
        raise _incomplete(where, f"{META_TABLE} has entry {shape.meta['store_layout']!r} for 'store_layout'")
    if version > SCHEMA_VERSION or layout > STORE_LAYOUT:
        what = (f"schema_version {version}; this aigcbench reads schema_version {SCHEMA_VERSION}"
                if version > SCHEMA_VERSION else
                f"store layout {layout}; this aigcbench reads store layout {STORE_LAYOUT}")
        raise StoreRefused(where, "newer", f"store {where!r} has {what} (upgrade aigcbench to use it)")
    if version < SCHEMA_VERSION:
        raise StoreRefused(where, "older", f"store {where!r} has schema_version {version}; this aigcbench reads "
                                           f"schema_version {SCHEMA_VERSION} and cannot migrate its records")
    _check_complete(where, shape, layout)
    if layout == STORE_LAYOUT:
        return State.CURRENT
    if not upgrading:
        raise StoreRefused(where, "old-layout", f"store {where!r} has store layout {layout}, older than this "
                                                f"aigcbench's {STORE_LAYOUT}: run `aigcbench store upgrade` "
                                                "(with the same --store) to migrate it; it writes a backup first")
    return State.OLD


def _number(where: str, meta: Mapping[str, str], key: str, default: int | None = None) -> int:
    value = meta.get(key)
    if value is None and default is not None:
        return default
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        found = "no entry" if value is None else f"entry {value!r}"
        raise _incomplete(where, f"{META_TABLE} has {found} for {key!r}") from None


def _check_complete(where: str, shape: Shape, layout: int) -> None:
    for table, columns in required_tables(layout).items():
        held = shape.tables.get(table)
        if held is None:
            raise _incomplete(where, f"no table {table!r}")
        if columns - held:
            raise _incomplete(where, f"table {table!r} lacks {', '.join(sorted(columns - held))}")


def _incomplete(where: str, lacking: str) -> StoreRefused:
    return StoreRefused(where, "incomplete", f"{where!r} is an incomplete aigcbench store ({lacking}), perhaps "
                                             "left by a process killed while creating it; refusing to use it: "
                                             "move it aside, or restore it from a backup")


# --- SQLite files -----------------------------------------------------------------------------------------------


def sqlite_shape(path: Path) -> Shape | None:
    """The shape of the SQLite file at `path` (None when there is none), read without writing anything.

    Raises `StoreRefused` for what is not a SQLite database this module can read
    (a folder, a text file, a WAL-mode or damaged database).
    """
    if not path.parent.is_dir():
        raise UserError(f"store {str(path)!r}: folder {str(path.parent)!r} does not exist")
    where = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreRefused(where, "foreign", f"store {where!r} cannot be read: {exc.strerror}") from None
    if not path.is_file():
        raise StoreRefused(where, "foreign", f"{where!r} is not an aigcbench store; refusing to use it "
                                             "(not a regular file)")
    if size == 0:
        return Shape({}, {})
    header = _header(path)
    if not header.startswith(_SQLITE_MAGIC):
        raise StoreRefused(where, "foreign", f"{where!r} is not an aigcbench store; refusing to use it "
                                             "(not a SQLite database)")
    if header[18:20] == b"\x02\x02":
        # Reading a WAL database may create its -wal and -shm files; ours never use WAL.
        raise StoreRefused(where, "foreign", f"{where!r} is not an aigcbench store; refusing to use it "
                                             "(a write-ahead-log database, which aigcbench stores never are)")
    try:
        return _read_only_shape(path)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_ROLLBACK":
            return _recovered_copy_shape(path)
        raise StoreRefused(where, "damaged", f"{where!r} is not a readable aigcbench store ({exc}); "
                                             "refusing to use it") from None


def _header(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(100)
    except OSError as exc:
        raise StoreRefused(str(path), "foreign", f"store {str(path)!r} cannot be read: {exc.strerror}") from None


def _read_only_shape(path: Path) -> Shape:
    probe = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        return _shape(probe)
    finally:
        probe.close()


def _recovered_copy_shape(path: Path) -> Shape:
    """The shape `path` will have once its hot journal is rolled back, found on a copy (the file is not touched)."""
    journal = path.with_name(path.name + "-journal")
    with tempfile.TemporaryDirectory(prefix="aigcbench-inspect-") as folder:
        copy = Path(folder) / "store.db"
        shutil.copyfile(path, copy)
        if journal.exists():
            shutil.copyfile(journal, Path(folder) / "store.db-journal")
        try:
            conn = sqlite3.connect(copy)  # read-write: the first read rolls the copy's journal back
            try:
                return _shape(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise StoreRefused(str(path), "damaged", f"{str(path)!r} is not a readable aigcbench store "
                                                     f"({exc}); refusing to use it") from None


def _shape(conn: sqlite3.Connection) -> Shape:
    names = [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")]
    ours = set(required_tables(STORE_LAYOUT))
    tables = {
        name: frozenset(column for (column,) in conn.execute("SELECT name FROM pragma_table_info(?)", (name,)))
        if name in ours else frozenset()
        for name in names
    }
    meta: dict[str, str] = {}
    if {"key", "value"} <= tables.get(META_TABLE, frozenset()):
        meta = {str(key): str(value) for key, value in conn.execute(f"SELECT key, value FROM {META_TABLE}")}
    return Shape(tables, meta)


def create_sqlite(path: Path, build: Callable[[Path], None]) -> bool:
    """Create the store at `path` whole, or not at all; False when another process created one first.

    `build(temp)` writes the complete store into the (empty) file `temp`,
    which is then flushed to disk and hard-linked to `path`: a link never
    replaces an existing file, so a racing creator's store is kept, and a
    process killed before the link leaves no store behind.
    """
    remove_abandoned(path)
    return _publish(build, [path]) is not None


def remove_abandoned(path: Path) -> None:
    """Remove temporary stores left next to `path` by creators that were killed (their process is gone)."""
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        core = name[len(prefix):].removesuffix("-journal")
        if not (name.startswith(prefix) and core.endswith(_CREATING)):
            continue
        pid = core.split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            (path.parent / name).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(target: Path, write: Callable[[Path], None]) -> Path:
    """Write a new file by `write(temp)` and link it in as `target`, or as `target.1`, `target.2`... when
    that name is taken: never replaces a file, never leaves half a file. Returns the path written."""
    chosen = _publish(write, [target] + [target.with_name(f"{target.name}.{n}") for n in range(1, 1000)])
    if chosen is None:
        raise UserError(f"cannot write next to {str(target)!r}: {target.name}.1 to .999 are all taken")
    return chosen


def _publish(write: Callable[[Path], None], names: list[Path]) -> Path | None:
    """Write a temporary file beside `names[0]`, flush it, and link it in under the first free name."""
    first = names[0]
    temp = first.with_name(f".{first.name}.{os.getpid()}.{secrets.token_hex(4)}{_CREATING}")
    # O_EXCL with mode 0o666: the umask decides the file's permissions, as for any new file.
    os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(temp)
        _fsync(temp)
        for name in names:
            try:
                os.link(temp, name)
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: a rename, with a short race against a creator
                if name.exists():
                    continue
                os.rename(temp, name)
            _fsync(first.parent)
            return name
        return None
    finally:
        for leftover in (temp, temp.with_name(temp.name + "-journal")):
            leftover.unlink(missing_ok=True)
