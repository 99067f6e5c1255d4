"""The local spool without a server: where it lives, what a file holds, and that no line is lost.

Records are delivered into a real SQLite store (`Store.append_many`, the same
call a server store's flush makes); the PostgreSQL side, a server that stops
answering, is in tests/test_store_postgres.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.bench import store_spool
from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.store import Store, spool_of
from tests.records import synthetic_record

KEY = "postgresql+psycopg://team@db.example:5432/bench"


def test_the_spool_is_data_not_cache_and_follows_its_variables(monkeypatch, tmp_path):
    monkeypatch.delenv("AIGCBENCH_SPOOL")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert store_spool.spool_dir() == tmp_path / "home" / ".local" / "share" / "aigcbench" / "spool"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert store_spool.spool_dir() == tmp_path / "data" / "aigcbench" / "spool"
    monkeypatch.setenv("AIGCBENCH_SPOOL", str(tmp_path / "mine"))
    assert store_spool.spool_dir() == tmp_path / "mine"


def test_one_spool_file_per_store_named_without_its_password():
    same = {spool_of(url) for url in (
        "postgresql://team:hunter2@db.example:5432/bench", "postgres://team:other@db.example:5432/bench",
        "postgresql+psycopg://team@db.example:5432/bench?password=hunter2",
    )}
    assert len(same) == 1
    [path] = same
    assert path.parent == store_spool.spool_dir() and path.name.startswith("db.example-5432-bench-")
    assert "hunter2" not in str(path)
    assert spool_of("postgresql://team@db.example:5432/other") != path
    assert spool_of("results.db") is None and spool_of("sqlite:///x.db") is None  # a local file never spools


def test_kept_records_are_sent_once_and_only_what_was_sent_leaves(tmp_path, capsys):
    records = [synthetic_record(run_id=f"r{i}") for i in range(3)]
    for record in records:
        path = store_spool.keep(KEY, record, store="the store", why="connection refused")
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 3 and "the store did not answer (connection refused); run r0 is kept" in said[0]
    assert [json.loads(line) for line in path.read_text().splitlines()] == \
        [{"store": KEY, "record": r.to_dict()} for r in records]
    with path.open("a") as handle:  # what a crash mid-append leaves: a line cut short
        handle.write('{"store": "' + KEY + '", "record": {"run_id": "torn"')
    store_spool.keep(KEY, synthetic_record(run_id="r3"), store="the store", why="timeout")
    with Store.open(str(tmp_path / "s.db")) as store:
        store.append(records[0])  # already there: skipped by run_id, not refused
        sent = store_spool.send(KEY, store.append_many)
        assert (sent.sent, sent.already, sent.kept) == (3, 1, 1)
        assert sorted(r.run_id for r in store.records()) == ["r0", "r1", "r2", "r3"]
        assert path.read_text().startswith('{"store": "') and path.read_text().count("\n") == 1  # the torn line stays
        assert store_spool.send(KEY, store.append_many).sent == 0 and store.count() == 4
    assert "1 line(s)" in store_spool.describe(sent, "s") and "not records" in store_spool.describe(sent, "s")


def test_a_delivery_that_fails_leaves_the_spool_as_it_was(tmp_path):
    store_spool.keep(KEY, synthetic_record(run_id="a"), store="s", why="down")
    path = spool_of(KEY)
    before = path.read_bytes()
    with Store.open(str(tmp_path / "s.db")) as store:
        store.append(synthetic_record(run_id="x"))
    # A SQLite store that is refused when the flush opens it: nothing is taken from the spool.
    (tmp_path / "s.db").write_bytes(b"not a database, someone's notes")
    with pytest.raises(UserError, match="not an aigcbench store"):
        store_spool.send(KEY, lambda records: Store.open(str(tmp_path / "s.db")).append_many(records))
    assert path.read_bytes() == before


# A keeper: a process of its own importing only the spool (cheaper than a spawned copy of this module).
KEEPER = """
import sys
from aigcbench.bench import store_spool
from tests.records import synthetic_record
for i in range(int(sys.argv[2])):
    store_spool.keep(sys.argv[3], synthetic_record(run_id=f"{sys.argv[1]}-{i:03d}"), store="s", why="down")
"""


def test_writers_and_a_flush_racing_on_one_spool_lose_no_record(tmp_path):
    """Keepers append while flushes remove the file under them: every record ends up stored exactly once."""
    root = Path(__file__).resolve().parents[1]  # where `tests.records` imports from
    keepers = [subprocess.Popen([sys.executable, "-c", KEEPER, f"k{n}", "20", KEY], cwd=root) for n in range(3)]
    with Store.open(str(tmp_path / "s.db")) as store:
        while any(k.poll() is None for k in keepers):
            store_spool.send(KEY, store.append_many)
            time.sleep(0.02)  # let the keepers append between flushes
        store_spool.send(KEY, store.append_many)
        stored = sorted(r.run_id for r in store.records())
    assert [k.wait(timeout=120) for k in keepers] == [0, 0, 0]
    assert stored == sorted(f"k{n}-{i:03d}" for n in range(3) for i in range(20))
    assert not spool_of(KEY).exists()


def test_a_sqlite_store_has_no_spool_and_flush_says_so(tmp_path):
    store_spool.keep(KEY, synthetic_record(run_id="elsewhere"), store="s", why="down")
    db = tmp_path / "local.db"
    with Store.open(str(db)) as store:  # a local store neither reads nor sends another store's spool
        store.append(synthetic_record(run_id="here"))
        assert store.send_spooled() is None and store.count() == 1
    result = CliRunner().invoke(app, ["store", "flush", "--store", str(db)])
    assert result.exit_code == 0, result.output
    assert "is a local file: nothing is spooled for it" in result.stdout
    assert f"the spool also holds 1 record(s) for {KEY}" in result.stdout
    assert spool_of(KEY).exists()
    missing = tmp_path / "none.db"
    assert CliRunner().invoke(app, ["store", "flush", "--store", str(missing)]).exit_code == 0
    assert not missing.exists()  # flushing never creates a store
