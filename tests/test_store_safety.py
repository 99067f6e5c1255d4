"""The store is never lost or corrupted (issue 10, item 5).

* a process SIGKILLed while creating a store, or while appending, leaves a
  store that opens, passes `PRAGMA integrity_check` and holds exactly the
  appends that returned (at most the one being written more);
* every command that opens a store refuses one it must not use (newer schema
  or layout, older layout, incomplete, foreign, damaged, garbage) with exit 2
  and one line, leaving it byte-identical;
* `aigcbench store upgrade` migrates an older store after a backup.

The same rules on PostgreSQL: tests/test_store_postgres.py.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.record import SCHEMA_VERSION, write_json
from aigcbench.bench.store import Store
from aigcbench.bench.store_layout import STORE_LAYOUT
from tests.records import synthetic_record
from tests.test_cli import cli
from tests.test_store import _old_layout_store


def digest(*folders: Path) -> dict[str, str]:
    """Every file under `folders`, by path, with a hash of its bytes: catches edits, new and removed files."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        for folder in folders for path in sorted(folder.rglob("*"))
    }


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def one_line_refusal(done, fragment: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("aigcbench: error: "), done.stderr
    assert fragment in done.stderr, done.stderr


# --- stores this aigcbench must refuse, each built at `path` ----------------------------------------------------


def _ours(path: Path, *statements: str | tuple[str, ...]) -> None:
    """A real store, then changes made behind aigcbench's back (SQL, or (SQL, parameters...))."""
    Store.open(str(path)).close()
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            sql, *params = (statement,) if isinstance(statement, str) else statement
            conn.execute(sql, params)
    conn.close()


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    conn.close()


def _wal(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()  # the last connection checkpoints: the file stays in WAL mode


def _truncated(path: Path) -> None:
    with Store.open(str(path)) as store:  # enough rows that the records table spans pages past the cut
        store.append_many(synthetic_record(run_id=f"r{i}") for i in range(50))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _append(path: Path, record) -> None:
    with Store.open(str(path)) as store:
        store.append(record)


UPDATE_META = "UPDATE aigcbench_meta SET value = ? WHERE key = ?"


def _meta(key: str, value: str) -> Callable[[Path], None]:
    return lambda path: _ours(path, (UPDATE_META, value, key))



BAD_STORES: dict[str, tuple[Callable[[Path], None], str]] = {
    # name: (how to build it, what the one line says)
    "newer schema": (_meta("schema_version", str(SCHEMA_VERSION + 1)),
                     f"has schema_version {SCHEMA_VERSION + 1}; this aigcbench reads schema_version {SCHEMA_VERSION}"),
    "newer layout": (_meta("store_layout", str(STORE_LAYOUT + 1)),
                     f"has store layout {STORE_LAYOUT + 1}; this aigcbench reads store layout {STORE_LAYOUT}"),
    "older schema": (_meta("schema_version", str(SCHEMA_VERSION - 1)),
                     "cannot migrate its records"),
    "other application": (_meta("application", "otherbench"),
                          "is not an aigcbench store"),
    "foreign database": (_foreign, "is not an aigcbench store"),
    "write-ahead-log database": (_wal, "is not an aigcbench store"),
    "text file": (lambda p: p.write_text("my precious notes\n"), "is not an aigcbench store"),
    "binary garbage": (lambda p: p.write_bytes(bytes(range(256)) * 64), "is not an aigcbench store"),
    "sqlite header then garbage": (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000),
                                   "not a readable aigcbench store"),
    "truncated store": (_truncated, "not a readable aigcbench store"),
    "a folder": (lambda p: p.mkdir(), "not a regular file"),
    "meta table only": (lambda p: _ours(p, "DROP TABLE record_labels", "DROP TABLE records"),
                        "incomplete aigcbench store (no table 'records')"),
    "labels table missing": (lambda p: _ours(p, "DROP TABLE record_labels"),
                             "incomplete aigcbench store (no table 'record_labels')"),
    "meta without application": (lambda p: _ours(p, "DELETE FROM aigcbench_meta WHERE key = 'application'"),
                                 "incomplete aigcbench store (aigcbench_meta has no entry for 'application')"),
    "meta without schema_version": (lambda p: _ours(p, "DELETE FROM aigcbench_meta WHERE key = 'schema_version'"),
                                    "incomplete aigcbench store (aigcbench_meta has no entry for 'schema_version')"),
    "schema_version not a number": (_meta("schema_version", "one"),
                                    "aigcbench_meta has entry 'one' for 'schema_version'"),
    "store layout zero": (_meta("store_layout", "0"), "aigcbench_meta has entry '0' for 'store_layout'"),
    "meta of another shape": (lambda p: _ours(p, "DROP TABLE aigcbench_meta", "CREATE TABLE aigcbench_meta (k TEXT)"),
                              "aigcbench_meta has no entry for 'application'"),
    "older layout": (lambda p: _old_layout_store(p, [synthetic_record()]), "run `aigcbench store upgrade`"),
}


def test_every_bad_store_is_refused_by_open_and_left_untouched(tmp_path):
    for name, (build, fragment) in BAD_STORES.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        path = folder / "s.db"
        build(path)
        before = digest(folder)
        with pytest.raises(UserError) as info:
            Store.open(str(path))
        assert fragment in str(info.value), (name, str(info.value))
        assert "\n" not in str(info.value)
        Store.exists(str(path))  # asking is read-only too
        assert digest(folder) == before, name


# Every command that opens a store, with arguments that get it as far as opening it.
# {record}: a valid record file; {sweep}: a one-cell sweep file; {out}: a folder for outputs.
COMMANDS = {
    "run": ["run", "-w", "dcgan", "-b", "null", "--size", "tiny", "--duration", "0.05", "--warmup", "0",
            "--warmup-duration", "0", "--json", "{out}/r.json"],
    "sweep": ["sweep", "{sweep}", "--json", "{out}/s.json"],
    "sweep --dry-run": ["sweep", "{sweep}", "--dry-run"],
    "report": ["report", "-o", "{out}/report.html"],
    "compare": ["compare", "--base", "commit=a", "--new", "commit=b", "--markdown", "{out}/c.md"],
    "history": ["history", "-o", "{out}/h.html"],
    "export": ["export", "-o", "{out}/out.jsonl"],
    "import": ["import", "{record}"],
    "plan": ["plan", "--workload", "dcgan", "--demand", "10/s", "--slo-p99", "1s", "--json", "{out}/plan.json"],
    "plan --validate": ["plan", "--validate"],
    "list hardware": ["list", "hardware"],
    "calibrate": ["calibrate", "--duration", "0.01", "--json", "{out}/c.json"],
    "store upgrade": ["store", "upgrade"],
}
SWEEP = """[sweep]
name = "one"
[defaults]
size = "tiny"
duration = 0.05
warmup = 0
warmup_duration = 0
[matrix]
workload = ["dcgan"]
backend = ["null"]
"""


def _bad_store(tmp_path: Path, kind: str) -> tuple[Path, list[Path], dict[str, str], str]:
    """A bad store of `kind`, the folders to watch, the values for COMMANDS' placeholders, the expected words."""
    build, fragment = {**BAD_STORES, "zero-byte file": (Path.touch, "")}[kind]
    where, inputs, out = tmp_path / "store", tmp_path / "inputs", tmp_path / "out"
    for folder in (where, inputs, out):
        folder.mkdir()
    build(where / "s.db")
    write_json(synthetic_record(), inputs / "record.json")
    (inputs / "sweep.toml").write_text(SWEEP)
    values = {"record": str(inputs / "record.json"), "sweep": str(inputs / "sweep.toml"), "out": str(out)}
    return where / "s.db", [where, out], values, fragment


def _arguments(command: str, values: dict[str, str], store: Path) -> list[str]:
    return [arg.format(**values) for arg in COMMANDS[command]] + ["--store", str(store)]


HEAVY = ("run", "sweep", "sweep --dry-run", "plan", "plan --validate", "calibrate")  # import torch: seconds each


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow) if c in HEAVY else c for c in COMMANDS])
def test_every_command_refuses_a_newer_store_untouched(tmp_path, command):
    # Through the real entry point, one process per command, as a script would run it
    # (the heavy commands also run in-process below, in the fast suite).
    path, watched, values, fragment = _bad_store(tmp_path, "newer schema")
    before = digest(*watched)
    one_line_refusal(cli(*_arguments(command, values, path)), fragment)
    assert digest(*watched) == before


# Every kind through every command in-process (CliRunner), so that the whole table stays fast; the
# entry point's own one-line handling is the same for every UserError (the test above).
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(BAD_STORES))
def test_every_command_refuses_every_bad_store_untouched(tmp_path, kind, command):
    if (kind, command) == ("older layout", "store upgrade"):
        pytest.skip("the one command that accepts an older layout (tested below)")
    path, watched, values, fragment = _bad_store(tmp_path, kind)
    before = digest(*watched)
    result = CliRunner().invoke(app, _arguments(command, values, path), catch_exceptions=False)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aigcbench: error: ") and fragment in lines[0], result.stderr
    assert digest(*watched) == before


@pytest.mark.parametrize("command", ["report", "history", "export", "compare", "store upgrade", "list hardware",
                                     "sweep --dry-run"])
def test_a_zero_byte_file_is_left_alone_by_commands_that_only_read(tmp_path, command):
    # A zero-byte file holds nothing to lose: a writer makes it a store (below). A reader must
    # not: it says there is no store (or lists without it) and leaves the file as it is.
    path, watched, values, _ = _bad_store(tmp_path, "zero-byte file")
    result = CliRunner().invoke(app, _arguments(command, values, path), catch_exceptions=False)
    if command in ("list hardware", "sweep --dry-run"):
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.output
        assert ("no store at" if command != "store upgrade" else "nothing to upgrade") in result.stderr
    assert path.stat().st_size == 0 and [p.name for p in path.parent.iterdir()] == ["s.db"]


def test_a_zero_byte_file_becomes_a_store_for_a_writer(tmp_path):
    path, _, values, _ = _bad_store(tmp_path, "zero-byte file")
    done = cli("import", values["record"], "--store", str(path))
    assert done.returncode == 0, done.stderr
    with Store.open(str(path)) as store:
        assert store.count() == 1
    assert integrity(path) == "ok"


def test_store_upgrade_migrates_an_older_store_after_a_backup(tmp_path):
    path = tmp_path / "old.db"
    old = [synthetic_record(labels={"commit": "a"}), synthetic_record(labels={"commit": "b"})]
    _old_layout_store(path, old)
    before = path.read_bytes()
    one_line_refusal(cli("report", "--store", str(path)), "run `aigcbench store upgrade`")
    assert path.read_bytes() == before

    done = cli("store", "upgrade", "--store", str(path))
    assert done.returncode == 0, done.stderr
    backup = tmp_path / "old.layout1-backup.db"
    assert f"backup of store layout 1 written to {backup}" in done.stdout
    assert "from layout 1 to 2 (2 records)" in done.stdout
    conn = sqlite3.connect(backup)  # the backup is the store as it was: layout 1, both records
    assert conn.execute("SELECT count(*) FROM records").fetchone() == (2,)
    assert "store_layout" not in dict(conn.execute("SELECT key, value FROM aigcbench_meta"))
    conn.close()

    report = cli("report", "--store", str(path), "--where", "commit=b")
    assert report.returncode == 0, report.stderr
    again = cli("store", "upgrade", "--store", str(path))
    assert again.returncode == 0 and "already at layout 2; nothing to do" in again.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db", "old.layout1-backup.db"]


def test_a_failed_upgrade_leaves_the_store_as_it_was_and_no_backup(tmp_path):
    path = tmp_path / "old.db"
    _old_layout_store(path, [synthetic_record()])
    conn = sqlite3.connect(path)
    with conn:  # a damaged row: the backfill cannot read it, half-way through the upgrade's transaction
        conn.execute("INSERT INTO records (run_id, labels_json, record_json) VALUES ('x', '{}', 'not json')")
    conn.close()
    before = digest(tmp_path)
    one_line_refusal(cli("store", "upgrade", "--store", str(path)), "is not a readable record")
    assert digest(tmp_path) == before


# --- killed writers ---------------------------------------------------------------------------------------------


def _killed_child(work: Callable[[Callable[[str], None]], None], delay_s: float,
                  warm: Callable[[], None] = lambda: None) -> list[str]:
    """Fork a child that runs `warm()`, says "ready", then runs `work(say)`; SIGKILL it `delay_s` after
    "ready"; return what it said after. (`warm` does once what is slow only the first time, so that
    the delays spread the kills over the steps of `work`, not over one-off start-up costs.)

    A fork (not a fresh interpreter) keeps each kill to milliseconds, so many fit in a fast test.
    The parent holds no open store while forking: a child closing an inherited SQLite file
    descriptor would drop the parent's locks.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_fd)

            def say(line: str) -> None:
                os.write(write_fd, f"{line}\n".encode())

            warm()
            say("ready")
            work(say)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as lines:
        assert lines.readline() == "ready\n"
        deadline = time.monotonic() + delay_s
        while not os.waitpid(pid, os.WNOHANG)[0]:  # the child may also end (or kill itself) first
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.001)
        return lines.read().split()


def _step_s(step: Callable[[int], None]) -> float:
    """How long one `step` takes here (the median of three): kill delays are drawn in units of it."""
    times = []
    for i in range(3):
        began = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - began)
    return sorted(times)[1]


def test_a_store_killed_while_being_created_opens_whole(tmp_path):
    rng = random.Random(10)
    warm = tmp_path / "warm"
    warm.mkdir()
    step_s = _step_s(lambda i: Store.open(str(warm / f"{i}.db")).close())  # also pays the first-use costs
    for round_ in range(30):
        folder = tmp_path / f"round-{round_:02d}"
        folder.mkdir()

        def create(say: Callable[[str], None]) -> None:
            for i in range(1000):
                if i % 2:  # every other one starts as a zero-byte file: initialised in place, in one transaction
                    (folder / f"s{i}.db").touch()
                Store.open(str(folder / f"s{i}.db")).close()
                say(str(i))

        acked = len(_killed_child(create, rng.uniform(0, 2.5 * step_s),
                                  warm=lambda: Store.open(str(warm / "0.db")).close()))
        for i in range(acked + 1):  # every store the child finished, and the one it was killed in
            path = folder / f"s{i}.db"
            with Store.open(str(path)) as store:  # a complete store, or none (then created now)
                assert store.count() == 0
            assert integrity(path) == "ok"
        leftovers = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".db"))
        assert leftovers == [], leftovers  # the killed creator's temporary file was removed
        if round_ == 0:  # and through the CLI: one line, no traceback
            one_line_refusal(cli("report", "--store", str(folder / f"s{acked}.db")), "holds no records")


def test_a_killed_writer_loses_at_most_the_record_it_was_writing(tmp_path):
    # Large records: each append's commit spans many pages, so kills land inside commits too.
    samples = [0.01 + 1e-6 * k for k in range(2000)]

    def record(i: int, writer: str = "x"):
        return synthetic_record(samples, run_id=f"run-{i:06d}", labels={"i": str(i), "w": writer})

    with Store.open(str(tmp_path / "warm.db")) as scratch:
        step_s = _step_s(lambda i: scratch.append(record(i, "warm")))
    path = tmp_path / "s.db"
    Store.open(str(path)).close()
    rng = random.Random(5)
    stored = 0
    for _ in range(30):
        start, held = stored, {}

        def warm() -> None:  # open the store and build a record before the clock starts
            held["store"], held["first"] = Store.open(str(path)), record(start)

        def append(say: Callable[[str], None]) -> None:
            for i in range(start, start + 10_000):
                held["store"].append(held.pop("first") if i == start else record(i))
                say(str(i))

        acked = len(_killed_child(append, rng.uniform(0, 5 * step_s), warm=warm))
        with Store.open(str(path)) as store:  # rolls back the killed transaction, if it left a hot journal
            stored = store.count()
        assert start + acked <= stored <= start + acked + 1  # the one in flight may have committed
        assert integrity(path) == "ok"
        conn = sqlite3.connect(path)
        assert [r for (r,) in conn.execute("SELECT run_id FROM records ORDER BY id")] == \
            [f"run-{i:06d}" for i in range(stored)]
        # Each record's label rows and summary went in with it, in its one transaction.
        assert conn.execute("SELECT count(*) FROM record_labels").fetchone() == (2 * stored,)
        assert conn.execute("SELECT count(*) FROM records WHERE summary_json IS NULL").fetchone() == (0,)
        conn.close()
    with Store.open(str(path)) as store:
        assert len(store.records(labels={"w": "x"})) == stored


def _kill_mid_transaction(path: Path) -> None:
    """Leave `path` with a hot journal: a writer killed half-way through a transaction larger than its cache."""

    def write(_say: Callable[[str], None]) -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA cache_size=1")  # spill to the file before commit
        conn.execute("BEGIN IMMEDIATE")
        for i in range(3000):
            conn.execute("INSERT INTO records (run_id, labels_json, record_json) VALUES (?, '{}', ?)",
                         (f"junk-{i}", "x" * 2000))
        os.kill(os.getpid(), signal.SIGKILL)

    _killed_child(write, 5.0)
    assert (path.parent / (path.name + "-journal")).stat().st_size > 0


def test_a_hot_journal_is_rolled_back_in_our_store_and_inspected_on_a_copy_otherwise(tmp_path):
    ours = tmp_path / "ours" / "s.db"
    ours.parent.mkdir()
    _ours(ours)
    _append(ours, synthetic_record())
    _kill_mid_transaction(ours)
    with Store.open(str(ours)) as store:
        assert store.count() == 1
    assert integrity(ours) == "ok" and not (ours.parent / "s.db-journal").exists()

    newer = tmp_path / "newer" / "s.db"
    newer.parent.mkdir()
    _meta("schema_version", str(SCHEMA_VERSION + 1))(newer)
    _kill_mid_transaction(newer)
    before = digest(newer.parent)
    with pytest.raises(UserError, match=f"has schema_version {SCHEMA_VERSION + 1}"):
        Store.open(str(newer))
    assert digest(newer.parent) == before  # neither the file nor its journal was touched

