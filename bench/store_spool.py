"""The local spool: where a measured record waits when the team's store stops answering.

A record is evidence that cost minutes of measuring, and a network failure
while it is being stored must not throw it away. `Store.append` on a server
database that fails to answer hands the record to `keep`, which appends it to
a JSON lines file of this machine, one file per store, and says so on stderr.
`send` delivers what a file holds: `aigcbench store flush` calls it, and so
does every `Store.open` of that store, so the next command sends it anyway::

    keep(key, record, store=shown, why=reason)   # the server did not answer: one line on stderr
    send(key, store.append_many)                 # later: Sent(sent=1, already=0, kept=0, path=...)

Where: `$AIGCBENCH_SPOOL`, else `$XDG_DATA_HOME/aigcbench/spool`, else
`~/.local/share/aigcbench/spool` -- data, not cache: a cache folder is
something a user may delete. A file is named by its store's URL (without the
password, which is never written anywhere) through a hash, and each line is
``{"store": URL, "record": {...}}``, so a file says whose it is.

Crash safety: one record is one line, written by a single append and fsynced
before `keep` returns. A line cut short by a crash is kept aside, never sent
and never joined to the next line. `send` holds the file's lock while it
delivers and removes only after the store committed: a flush that fails midway
leaves every line where it was, and a flush cut short after the commit leaves
lines the next one finds already stored (skipped by run_id).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from .errors import UserError
from .record import Record

ENV_VAR = "AIGCBENCH_SPOOL"


@dataclasses.dataclass(frozen=True)
class Sent:
    """What `send` did: records new to the store, ones it already held, and lines left in the file unread."""

    sent: int
    already: int
    kept: int
    path: Path


def spool_dir() -> Path:
    """The folder of spool files (see the module docstring for how it is chosen)."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "aigcbench" / "spool"


def spool_file(key: str) -> Path:
    """The spool file of the store whose password-less URL is `key`.

    Readable where it can be (``127.0.0.1-5432-team-<hash>.jsonl``); the hash
    of the whole URL keeps two stores on one server apart.
    """
    url = make_url(key)
    readable = "-".join(str(part) for part in (url.host, url.port, url.database) if part)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable)[:80] or "store"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return spool_dir() / f"{readable}-{digest}.jsonl"


def keep(key: str, record: Record, *, store: str, why: str) -> Path:
    """Append `record` to the spool of store `key`, durably (fsynced), and say so; returns the file.

    `store` is the store as it may be printed (password masked) and `why`
    the reason it did not take the record. Raises `UserError` when the spool
    cannot be written either: the caller has nowhere left to put the record,
    and the user must know.
    """
    path = spool_file(key)
    line = json.dumps({"store": key, "record": record.to_dict()}, allow_nan=False, separators=(",", ":"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:  # until the lock is held on the file that is at `path` (see `send`'s replace)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if _is_at(fd, path):
                    size = os.fstat(fd).st_size
                    # A line a crash cut short stays alone on its line, not glued to this one.
                    torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
                    data = (("\n" if torn else "") + line + "\n").encode("utf-8")
                    while data:  # os.write may write less than it was given: write the rest
                        data = data[os.write(fd, data):]
                    os.fsync(fd)
                    break
            finally:
                os.close(fd)  # releases the lock
        _sync_dir(path.parent)  # the file's name is as durable as its contents
    except OSError as exc:
        raise UserError(f"store {store} did not answer ({why}) and run {record.run_id} could not be spooled "
                        f"to {path} either: {exc}") from None
    say(f"store {store} did not answer ({why}); run {record.run_id[:12]} is kept in the spool {path}: "
        "`aigcbench store flush` with this store sends it, as does the next command that opens it")
    return path


def send(key: str, deliver: Callable[[list[Record]], int]) -> Sent | None:
    """Deliver the spool of store `key` with `deliver` (`Store.append_many`); None when nothing is spooled.

    `deliver` returns how many records were new; it must be all or nothing.
    If it raises, the file is left as it was and the error propagates. After
    it returns, the delivered lines are removed (the file too when it holds
    nothing else); lines that are not records this aigcbench reads stay.
    """
    with _locked(spool_file(key)) as handle:
        if handle is None:
            return None
        records, kept = _parse(handle.read().decode("utf-8", errors="replace"), key)
        if not records and not kept:
            Path(handle.name).unlink()
            return None
        new = deliver(records) if records else 0
        _rewrite(Path(handle.name), kept)
    return Sent(new, len(records) - new, len(kept), Path(handle.name))


def spooled_elsewhere(exclude: Path | None) -> dict[str, int]:
    """Every spool file but `exclude`: how many lines each holds, by its store's password-less URL."""
    found: dict[str, int] = {}
    folder = spool_dir()
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        lines = [line for line in path.read_text("utf-8", errors="replace").splitlines() if line.strip()]
        if not lines or path == exclude:
            continue
        try:
            owner = str(json.loads(lines[0])["store"])
        except (ValueError, KeyError, TypeError):
            owner = str(path)
        found[owner] = found.get(owner, 0) + len(lines)
    return found


def say(message: str) -> None:
    """One line on stderr: the spool is never silent."""
    print(f"aigcbench: {message}", file=sys.stderr, flush=True)


def tell(sent: Sent | None, store: str) -> None:
    """Say on stderr what `send` delivered to `store`, if it delivered anything."""
    if sent is not None and (sent.sent or sent.already):
        say(describe(sent, store))


def describe(sent: Sent, store: str) -> str:
    """One line: what `send` did."""
    text = f"sent {sent.sent} spooled record{'s' * (sent.sent != 1)} to store {store}"
    if sent.already:
        text += f" ({sent.already} already there)"
    if sent.kept:
        text += f"; {sent.kept} line(s) of {sent.path} are not records this aigcbench reads and stay there"
    elif sent.sent or sent.already:
        text += f" (from {sent.path})"
    return text


def _parse(text: str, key: str) -> tuple[list[Record], list[str]]:
    """The records the lines hold, and the lines that are not one (cut short, another schema, another store)."""
    records: list[Record] = []
    kept: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if entry["store"] != key:
                raise ValueError("another store's line")
            records.append(Record.from_dict(entry["record"]))
        except (ValueError, KeyError, TypeError, UserError):
            kept.append(line)
    return records, kept


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[object | None]:
    """The file at `path` opened for reading under its exclusive lock; None when there is none."""
    while True:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            yield None
            return
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            if _is_at(handle.fileno(), path):
                yield handle
                return


def _rewrite(path: Path, kept: list[str]) -> None:
    """Leave only `kept` at `path`: a new file put in place whole, or no file. Called under the old file's lock."""
    if not kept:
        path.unlink()
    else:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in kept))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)  # a writer waiting on the old file's lock sees it moved and reopens
    _sync_dir(path.parent)


def _is_at(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path` (a `send` may have replaced or removed it meanwhile)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
