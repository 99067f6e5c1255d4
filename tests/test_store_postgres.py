"""The store on PostgreSQL: the same code as SQLite, on a real server started here.

A throwaway server (initdb + pg_ctl, run as the `postgres` user when running
as root) with the psycopg driver; skipped where either is missing. It listens
on a Unix socket (user `postgres`, trusted) and on TCP 127.0.0.1 with
password authentication (user `team`), as a team's server would.

What is checked: records round-trip whole; a `--where` selection runs as SQL
on the server; eight writer processes lose nothing; `report` reads the server;
a store that cannot be reached is one line naming host and port, never the
password; a record the server did not take is spooled and sent later
(`store flush`, or the next command that opens the store); racing creators
serialise on an advisory lock; a store this aigcbench must not use is refused
untouched; `store upgrade` migrates an older layout after a JSON lines backup.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.record import SCHEMA_VERSION
from aigcbench.bench.store import Store, spool_of
from aigcbench.bench.store_layout import STORE_LAYOUT
from aigcbench.reports.select import parse_where
from tests.records import synthetic_record

TEAM, PASSWORD = "team", "s3cret-Pw"
AIGCBENCH = [sys.executable, "-c", "from aigcbench.bench.cli import app; app()"]


class Server:
    """A throwaway PostgreSQL server; calling it makes a fresh database and returns its Unix-socket URL."""

    def __init__(self, base: Path, pg_ctl: str, as_owner: list[str], psycopg) -> None:
        self.base, self.port = base, _free_port()
        self._pg_ctl, self._as_owner, self._psycopg = pg_ctl, as_owner, psycopg
        self._names = iter(range(1000))

    def __call__(self) -> str:
        return f"postgresql+psycopg://postgres@/{self._create(owner='postgres')}?host={self.base}&port={self.port}"

    def tcp(self, *, password: str = PASSWORD, scheme: str = "postgresql", database: str | None = None) -> str:
        """A fresh database owned by `team`, as a plain TCP URL with a password (`database`: that name instead)."""
        name = database or self._create(owner=TEAM)
        return f"{scheme}://{TEAM}:{password}@127.0.0.1:{self.port}/{name}"

    def sql(self, *statements: str, dbname: str = "postgres") -> None:
        with self._psycopg.connect(host=str(self.base), port=self.port, user="postgres", dbname=dbname,
                                   autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def start(self) -> None:
        self._ctl("-l", str(self.base / "log"), "start", "-o",
                  f"-k {self.base} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def _create(self, owner: str) -> str:
        name = f"store_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} OWNER {owner}")
        return name

    def _ctl(self, *args: str) -> None:
        subprocess.run(self._as_owner + [self._pg_ctl, "-D", str(self.base / "data"), "-w", *args],
                       check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    """A throwaway PostgreSQL server for this module (see `Server`).

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
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
    run(as_owner + [initdb, "-D", str(base / "data"), "--auth-local=trust", "--auth-host=scram-sha-256",
                    "-U", "postgres", "--no-sync"])
    server = Server(base, pg_ctl, as_owner, psycopg)
    server.start()
    try:
        server.sql(f"CREATE ROLE {TEAM} LOGIN PASSWORD '{PASSWORD}'")
        yield server
    finally:
        subprocess.run(as_owner + [pg_ctl, "-D", str(base / "data"), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess (its own error handling included)."""
    return subprocess.run(AIGCBENCH + list(args), capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _server_state(url: str) -> dict[str, list[tuple]]:
    """Every table's rows and the columns of each table: what 'untouched' means for a server database."""
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


# A writer process: a fresh interpreter importing only the store, appending records it reads from a
# JSON lines file one at a time. (A spawned copy of this module would import pytest, the CLI and
# scipy first: several times the cost of the appends it makes.)
WRITER = """
import json, sys
from aigcbench.bench.record import Record
from aigcbench.bench.store import Store
with Store.open(sys.argv[1]) as store, open(sys.argv[2]) as lines:
    for line in lines:
        store.append(Record.from_dict(json.loads(line)))
"""


def _writer_records(prefix: str, count: int) -> list:
    base = synthetic_record(labels={"writer": prefix})
    return [dataclasses.replace(base, run_id=f"{prefix}-{i:03d}") for i in range(count)]


def _write_at_once(url: str, prefixes: list[str], count: int, folder: Path) -> list[str]:
    """One writer process per prefix, all started at once, each appending `count` records; the stderr of each that failed."""
    for prefix in prefixes:
        (folder / f"{prefix}.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n"
                                                        for r in _writer_records(prefix, count)))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(folder / f"{prefix}.jsonl")],
                                stderr=subprocess.PIPE, text=True) for prefix in prefixes]
    failed = []
    for writer in writers:
        _, err = writer.communicate(timeout=180)
        if writer.returncode != 0:
            failed.append(err)
    return failed


def test_postgres_store_is_created_once_by_racing_processes_and_keeps_records(postgres, tmp_path):
    url = postgres()
    assert _write_at_once(url, ["a", "b"], 20, tmp_path) == []  # both initialise the same empty database at once
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


def _varied_records() -> list:
    """Records unlike each other in every selected column, label and status."""
    return [
        synthetic_record(workload="dcgan", backend="pytorch", labels={"branch": "main", "commit": "a1"}),
        synthetic_record((0.02, 0.021, 0.03), workload="vae", backend="onnxruntime", precision="fp16", batch_size=4,
                         labels={"branch": "main"}, cold_start={"build": 1.5, "total": 2.0}),
        synthetic_record(workload="vae", backend="openvino", labels={"branch": "dev"}),
        synthetic_record(workload="ddpm", status="failed", reason="worker crashed (signal 9)", steps=2),
    ]


def test_records_round_trip_whole_through_a_plain_postgresql_url(postgres):
    url = postgres.tcp()  # postgresql:// with no driver named: psycopg 3, the one aigcbench[team] installs
    written = _varied_records()
    with Store.open(url) as store:
        assert store.append(written[0]) is True
        assert store.append_many(written[1:]) == 3
        assert store.url == url.replace(PASSWORD, "***")
    with Store.open(url.replace("postgresql://", "postgres://")) as store:  # the alias some hosts hand out
        assert [r.to_dict() for r in store.records()] == [r.to_dict() for r in written]
        assert [r.to_dict() for r in store.select(parse_where([]))] == [r.to_dict() for r in written]


def test_a_where_selection_runs_as_sql_on_the_server(postgres):
    url = postgres.tcp()
    written = _varied_records()
    statements: list[tuple[str, object]] = []
    with Store.open(url) as store:
        store.append_many(written)
        sa.event.listen(store._engine, "before_cursor_execute",
                        lambda _c, _cur, statement, parameters, _ctx, _many: statements.append((statement, parameters)))
        found = store.select(parse_where(["workload=vae", "branch=main"]), samples=False)
    assert [r.run_id for r in found] == [written[1].run_id]
    assert found[0].samples == {}  # summaries only: the sample arrays stayed on the server
    [(sql, parameters)] = [(sql, p) for sql, p in statements if "FROM records" in sql]
    assert "records.workload IN" in sql and "record_labels.key =" in sql and "record_labels.value IN" in sql
    assert {"vae", "branch", "main"} <= set(map(str, dict(parameters).values()))


def test_eight_writer_processes_lose_nothing_and_duplicate_nothing(postgres, tmp_path):
    url = postgres.tcp()  # over TCP with a password, as a team's machines write
    names = [f"w{n}" for n in range(8)]
    assert _write_at_once(url, names, 10, tmp_path) == []
    with Store.open(url) as store:
        run_ids = [r.run_id for r in store.records()]
    assert sorted(run_ids) == sorted(f"{name}-{i:03d}" for name in names for i in range(10))


def test_report_reads_a_postgres_store_with_and_without_a_selection(postgres, tmp_path):
    url = postgres.tcp()
    with Store.open(url) as store:
        store.append_many(_varied_records())
    done = cli("report", "--store", url, "-o", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "r.html").read_text()
    assert "dcgan" in html and "vae" in html and PASSWORD not in html + done.stdout + done.stderr
    # $AIGCBENCH_STORE names the store as --store does; --where is pushed down to the server.
    done = cli("report", "--where", "workload=vae", "-o", str(tmp_path / "vae.md"), env={"AIGCBENCH_STORE": url})
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "vae.md").read_text()
    assert "vae" in markdown and "dcgan" not in markdown


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a host whose network swallows packets."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.parametrize(("case", "expected"), [
    ("nothing listens", "Connection refused"),
    ("wrong password", 'password authentication failed for user "team"'),
    ("unknown database", 'database "no_such_db" does not exist'),
    ("no answer", "timeout expired"),
])
def test_a_store_that_cannot_be_reached_is_one_line_naming_host_and_port_never_the_password(
        postgres, silent_port, case, expected):
    port = {"nothing listens": _free_port(), "no answer": silent_port}.get(case, postgres.port)
    url = {
        "wrong password": postgres.tcp(password="not-" + PASSWORD, database="postgres"),
        "unknown database": postgres.tcp(database="no_such_db"),
    }.get(case, f"postgresql://{TEAM}:{PASSWORD}@127.0.0.1:{port}/postgres")
    if case == "no answer":
        url += "?connect_timeout=1"  # the URL's own libpq options win over aigcbench's 10 s default
    result = CliRunner().invoke(app, ["store", "flush", "--store", url])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert f"cannot connect to 127.0.0.1:{port}: " in line and expected in line, line
    assert f"{TEAM}:***@127.0.0.1" in line and PASSWORD not in result.output + result.stderr


def test_run_refuses_a_store_it_cannot_reach_before_measuring(postgres, tmp_path):
    url = postgres.tcp(password="not-" + PASSWORD)
    done = cli("run", "-w", "dcgan", "-b", "pytorch", "--size", "tiny", "--store", url, "--json", str(tmp_path / "r.json"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"cannot connect to 127.0.0.1:{postgres.port}" in done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr + done.stdout
    assert not (tmp_path / "r.json").exists()  # nothing was measured


def _spool_lines(url: str) -> list[dict]:
    path = spool_of(url)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_record_the_server_did_not_take_is_spooled_and_flushed_later(postgres, capsys, tmp_path):
    url = postgres.tcp()
    first, second = synthetic_record(labels={"n": "1"}), synthetic_record(labels={"n": "2"})
    store = Store.open(url)
    try:
        postgres.stop()
        try:
            assert store.append(first) is False  # spooled, not lost
            down = cli("store", "flush", "--store", url)  # a flush that cannot reach the server takes nothing
        finally:
            postgres.start()
        [said] = capsys.readouterr().err.strip().splitlines()
        assert f"store {url.replace(PASSWORD, '***')} did not answer" in said and first.run_id[:12] in said
        assert "aigcbench store flush" in said and str(spool_of(url)) in said and PASSWORD not in said
        assert down.returncode == 2 and f"127.0.0.1:{postgres.port}" in down.stderr
        [line] = _spool_lines(url)
        assert line["record"] == first.to_dict() and PASSWORD not in json.dumps(line) + spool_of(url).name

        sent = cli("store", "flush", "--store", url)
        assert sent.returncode == 0, sent.stderr
        assert "sent 1 spooled record to store" in sent.stdout and not spool_of(url).exists()
        again = cli("store", "flush", "--store", url)
        assert again.returncode == 0 and "nothing spooled" in again.stdout

        postgres.stop()  # once more: now the next command that opens the store sends it
        try:
            assert store.append(second) is False
        finally:
            postgres.start()
    finally:
        store.close()
    done = cli("export", "--where", "n=1,2", "-o", str(tmp_path / "both.jsonl"), env={"AIGCBENCH_STORE": url})
    assert done.returncode == 0 and "sent 1 spooled record to store" in done.stderr, done.stderr
    exported = [json.loads(line)["run_id"] for line in (tmp_path / "both.jsonl").read_text().splitlines()]
    assert exported == [first.run_id, second.run_id] and not spool_of(url).exists()
    with Store.open(url) as reopened:
        assert [r.to_dict() for r in reopened.records()] == [first.to_dict(), second.to_dict()]


def test_a_flush_the_server_cuts_off_midway_takes_nothing_from_the_spool(postgres):
    from sqlalchemy.engine import make_url

    from aigcbench.bench import store_spool
    from aigcbench.bench.store_server import spool_key, with_default_driver

    url = postgres.tcp()
    Store.open(url).close()
    key = spool_key(with_default_driver(make_url(url)))
    spooled = [synthetic_record(run_id=f"cut-{i}") for i in range(3)]
    for record in spooled:
        store_spool.keep(key, record, store="the test's store", why="it was down")
    before = spool_of(url).read_bytes()
    # The server drops the connection as the second record arrives, inside the flush's one transaction.
    database = url.rsplit("/", 1)[1]
    postgres.sql("CREATE FUNCTION cut() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "IF NEW.run_id = 'cut-1' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
                 "RETURN NEW; END $$",
                 "CREATE TRIGGER cut BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION cut()", dbname=database)
    with Store.open(url, send_spooled=False) as store:
        with pytest.raises(UserError, match="stopped answering while its spool was sent.*the spool is as it was"):
            store.send_spooled()
    assert spool_of(url).read_bytes() == before
    postgres.sql("DROP TRIGGER cut ON records", dbname=database)
    with Store.open(url, send_spooled=False) as store:
        assert store.count() == 0  # the cut transaction left nothing half-sent
        sent = store.send_spooled()
        assert (sent.sent, sent.already, sent.kept) == (3, 0, 0) and store.count() == 3
    assert not spool_of(url).exists()
