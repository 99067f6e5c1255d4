"""The store's safety rules on PostgreSQL: the same code as SQLite, on a real server started here.

A throwaway server (initdb + pg_ctl on a Unix socket, as the `postgres` user
when running as root) and the psycopg driver; skipped where either is missing.
Racing creators serialise on an advisory lock; a store this aigcbench must not
use is refused with every table left as it was; `store upgrade` migrates an
older layout after writing every record to a JSON lines backup.
"""

from __future__ import annotations

import functools
import glob
import json
import multiprocessing
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aigcbench.bench.errors import UserError
from aigcbench.bench.record import SCHEMA_VERSION
from aigcbench.bench.store import Store
from aigcbench.bench.store_layout import STORE_LAYOUT
from tests.records import synthetic_record


@pytest.fixture(scope="module")
def postgres() -> Iterator[Callable[[], str]]:
    """A throwaway PostgreSQL server on a Unix socket; calling the fixture's value makes a fresh database (its URL).

    Skipped without the server's programs (`initdb`, `pg_ctl`) or the psycopg driver.
    """
    psycopg = pytest.importorskip("psycopg")
    # Debian's postgresql package keeps the server programs in /usr/lib/postgresql/N/bin, off PATH.
    path = os.pathsep.join([os.environ.get("PATH", ""), *sorted(glob.glob("/usr/lib/postgresql/*/bin"))])
    initdb, pg_ctl = shutil.which("initdb", path=path), shutil.which("pg_ctl", path=path)
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server programs (initdb, pg_ctl) here")
    base = Path(tempfile.mkdtemp(prefix="aigcbench-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
    run(as_owner + [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
    run(as_owner + [pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "start",
                    "-o", f"-k {base} -c listen_addresses='' -c fsync=off"])
    names = iter(range(1000))

    def database() -> str:
        name = f"store_{next(names)}"
        with psycopg.connect(host=str(base), user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@/{name}?host={base}"

    try:
        yield database
    finally:
        subprocess.run(as_owner + [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _server_state(url: str) -> dict[str, list[tuple]]:
    """Every table's rows and the columns of each table: what 'untouched' means for a server database."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            state = {}
            for table in sorted(inspector.get_table_names()):
                columns = [c["name"] for c in inspector.get_columns(table)]
                rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
                state[table] = [tuple(columns)] + sorted(tuple(map(str, row)) for row in rows)
            return state
    finally:
        engine.dispose()


def _server_sql(url: str, *statements: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def _open_and_append(url: str, prefix: str, count: int) -> None:
    with Store.open(url) as store:
        for i in range(count):
            store.append(synthetic_record(run_id=f"{prefix}-{i:03d}", labels={"writer": prefix}))


def test_postgres_store_is_created_once_by_racing_processes_and_keeps_records(postgres):
    url = postgres()
    ctx = multiprocessing.get_context("spawn")  # both initialise the same empty database at once
    workers = [ctx.Process(target=_open_and_append, args=(url, name, 20)) for name in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    with Store.open(url) as store:
        assert store.count() == 40 and store.label_keys() == {"writer"}
        assert len(store.records(labels={"writer": "b"})) == 20


@pytest.mark.parametrize(("kind", "statements", "fragment"), [
    ("newer schema", [f"UPDATE aigcbench_meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'"],
     f"has schema_version {SCHEMA_VERSION + 1}"),
    ("newer layout", [f"UPDATE aigcbench_meta SET value = '{STORE_LAYOUT + 1}' WHERE key = 'store_layout'"],
     f"has store layout {STORE_LAYOUT + 1}"),
    ("incomplete", ["DROP TABLE record_labels"], "no table 'record_labels'"),
    ("another application", ["UPDATE aigcbench_meta SET value = 'other' WHERE key = 'application'"],
     "is not an aigcbench store"),
    ("foreign", ["DROP TABLE record_labels", "DROP TABLE records", "DROP TABLE aigcbench_meta",
                 "CREATE TABLE users (name TEXT)", "INSERT INTO users VALUES ('ada')"], "is not an aigcbench store"),
])
def test_postgres_store_this_aigcbench_must_not_use_is_refused_untouched(postgres, kind, statements, fragment):
    url = postgres()
    _open_and_append(url, "r", 2)
    _server_sql(url, *statements)
    before = _server_state(url)
    with pytest.raises(UserError, match=re.escape(fragment)):
        Store.open(url)
    assert _server_state(url) == before


def test_postgres_store_of_an_older_layout_is_upgraded_after_a_json_lines_backup(postgres, tmp_path, monkeypatch):
    from aigcbench.bench.store_upgrade import upgrade_store

    url = postgres()
    _open_and_append(url, "r", 3)
    _server_sql(url, "DROP TABLE record_labels", "DROP INDEX ix_records_unsummarised",
                "ALTER TABLE records DROP COLUMN summary_json", "DELETE FROM aigcbench_meta WHERE key = 'store_layout'")
    before = _server_state(url)
    with pytest.raises(UserError, match="run `aigcbench store upgrade`"):
        Store.open(url)
    assert _server_state(url) == before
    monkeypatch.chdir(tmp_path)
    done = upgrade_store(url)
    assert (done.from_layout, done.to_layout, done.records) == (1, 2, 3)
    assert done.backup.parent == tmp_path and done.backup.suffix == ".jsonl"
    assert [json.loads(line)["run_id"] for line in done.backup.read_text().splitlines()] == \
        [f"r-{i:03d}" for i in range(3)]
    with Store.open(url) as store:
        assert store.label_keys() == {"writer"} and store.count() == 3
    assert upgrade_store(url).backup is None
