"""The result store: round trip, filters, append-only, refusals, concurrent writers."""

from __future__ import annotations

import dataclasses
import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest

from aigcbench.bench.errors import UserError
from aigcbench.bench.record import SCHEMA_VERSION, Record
from aigcbench.bench.store import Store, resolve_store_url


def make_record(**overrides) -> Record:
    fields = dict(
        status="ok",
        workload={"name": "dcgan", "size": "tiny", "unit": "image", "params": 3_576_704, "flops_per_item": 4.4e8},
        backend={"name": "pytorch", "version": "2.13.0", "device": "cpu", "precision": "fp32", "options": {}},
        scenario={"name": "latency", "batch_size": 1},
        environment={"hardware_key": "test-cpu-2c", "cpu": "test", "gpus": [], "memory_bytes": 2**34, "packages": {}},
        metrics={"latency_s": {"p50": 0.0031, "p99": 0.0042}, "throughput_items_per_s": 310.0},
        samples={"latency_s": [0.0030, 0.0031, 0.0042]},
        warnings=("IQR/median 0.12 > 0.1: unstable",),
        labels={"branch": "main"},
        git_commit="5362ba8",
    )
    fields.update(overrides)
    return Record(**fields)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in `folder` with its bytes: catches both edits and new journal files."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_round_trip_keeps_every_field(tmp_path):
    original = make_record(reason=None, config={"steps": 10}, metadata={"threads": 2})
    with Store.open(str(tmp_path / "s.db")) as store:
        store.append(original)
        assert store.count() == 1
    with Store.open(str(tmp_path / "s.db")) as reopened:  # persisted, not just cached
        (back,) = reopened.records()
    assert back.to_dict() == original.to_dict()


def test_filters_and_insertion_order(tmp_path):
    a = make_record(labels={"branch": "main", "commit": "aaa"})
    b = make_record(workload={"name": "ddpm", "size": "tiny"}, labels={"branch": "main", "commit": "bbb"})
    c = make_record(status="failed", reason="out of memory", labels={"branch": "dev"})
    d = make_record(backend={"name": "onnxruntime", "device": "cpu", "precision": "fp32"},
                    environment={"hardware_key": "l4"}, labels={"branch": "dev", "commit": "aaa"})
    with Store.open(str(tmp_path / "s.db")) as store:
        for r in (a, b, c, d):
            store.append(r)

        def ids(**filters):
            return [r.run_id for r in store.records(**filters)]

        assert ids() == [a.run_id, b.run_id, c.run_id, d.run_id]
        assert ids(workload="dcgan") == [a.run_id, c.run_id, d.run_id]
        assert ids(status="failed") == [c.run_id]
        assert ids(backend="onnxruntime") == [d.run_id]
        assert ids(hardware_key="test-cpu-2c") == [a.run_id, b.run_id, c.run_id]
        assert ids(labels={"branch": "main"}) == [a.run_id, b.run_id]
        assert ids(labels={"branch": "dev", "commit": "aaa"}) == [d.run_id]  # all pairs must match
        assert ids(labels={"commit": "aaa"}, workload="dcgan", status="ok") == [a.run_id, d.run_id]
        assert ids(labels={"branch": "nope"}) == []


def test_duplicate_run_id_is_refused_and_changes_nothing(tmp_path):
    first = make_record()
    impostor = dataclasses.replace(first, metrics={"throughput_items_per_s": 1.0}, labels={"branch": "x"})
    with Store.open(str(tmp_path / "s.db")) as store:
        store.append(first)
        with pytest.raises(UserError, match=first.run_id):
            store.append(impostor)
        assert store.count() == 1
        assert [r.to_dict() for r in store.records()] == [first.to_dict()]
        store.append(make_record())  # the store is still usable afterwards
        assert store.count() == 2


def test_store_has_no_update_or_delete_api():
    public = {name for name in dir(Store) if not name.startswith("_")}
    assert public == {"open", "exists", "append", "append_many", "records", "select", "samples_of",
                      "label_keys", "holdings", "count", "close", "url", "send_spooled"}


def test_exists_never_creates_a_store(tmp_path):
    path = tmp_path / "later.db"
    assert not Store.exists(str(path)) and not path.exists()
    Store.open(str(path)).close()
    assert Store.exists(str(path))
    assert Store.exists("postgresql://db.example/aigcbench")  # a server is asked by `open`, not here


def test_text_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n")
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=r"notes\.db' is not an aigcbench store; refusing to use it"):
        Store.open(str(path))
    assert snapshot(tmp_path) == before


def test_someone_elses_sqlite_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    conn.close()
    before = snapshot(tmp_path)
    for value in (str(path), f"sqlite:///{path}"):
        with pytest.raises(UserError, match=r"app\.db' is not an aigcbench store; refusing to use it"):
            Store.open(value)
    assert snapshot(tmp_path) == before


def test_wal_database_whose_tables_are_only_in_the_wal_is_refused(tmp_path):
    # A read-only peek at the main file cannot see tables still in the WAL; the
    # store must not mistake such a database for an empty one and initialise it.
    path = tmp_path / "wal.db"
    owner = sqlite3.connect(path)
    try:
        owner.execute("PRAGMA journal_mode=WAL")
        owner.execute("CREATE TABLE users (name TEXT)")
        owner.commit()
        before = snapshot(tmp_path)
        with pytest.raises(UserError, match="is not an aigcbench store"):
            Store.open(str(path))
        assert snapshot(tmp_path) == before
        assert owner.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
    finally:
        owner.close()


def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "new.db"
    path.touch()
    with Store.open(str(path)) as store:
        store.append(make_record())
        assert store.count() == 1
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


def test_store_written_by_a_newer_aigcbench_is_refused(tmp_path):
    path = tmp_path / "s.db"
    Store.open(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE aigcbench_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    before = snapshot(tmp_path)
    with pytest.raises(UserError) as info:
        Store.open(str(path))
    message = str(info.value)
    assert f"schema_version {SCHEMA_VERSION + 1}" in message
    assert f"reads schema_version {SCHEMA_VERSION}" in message
    assert "\n" not in message
    assert snapshot(tmp_path) == before


def test_database_claiming_another_application_is_refused(tmp_path):
    path = tmp_path / "s.db"
    Store.open(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE aigcbench_meta SET value = 'otherbench' WHERE key = 'application'")
    conn.close()
    with pytest.raises(UserError, match="is not an aigcbench store"):
        Store.open(str(path))


def test_missing_folder_is_refused_by_name(tmp_path):
    folder = tmp_path / "no" / "such"
    with pytest.raises(UserError, match=re.escape(f"folder {str(folder)!r} does not exist")):
        Store.open(str(folder / "s.db"))
    assert not (tmp_path / "no").exists()


def test_resolve_store_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIGCBENCH_STORE", raising=False)
    assert resolve_store_url(None) == f"sqlite:///{tmp_path / 'aigcbench.db'}"
    assert resolve_store_url("runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    assert resolve_store_url("/abs/runs.db") == "sqlite:////abs/runs.db"

    monkeypatch.setenv("AIGCBENCH_STORE", "postgresql://bench@db.example/results")
    assert resolve_store_url(None) == "postgresql://bench@db.example/results"
    assert resolve_store_url("mine.db") == f"sqlite:///{tmp_path / 'mine.db'}"  # explicit value wins

    monkeypatch.setenv("AIGCBENCH_STORE", "team.db")
    assert resolve_store_url(None) == f"sqlite:///{tmp_path / 'team.db'}"


def test_url_property_hides_the_password(tmp_path):
    with Store.open(str(tmp_path / "s.db")) as store:
        assert store.url == f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(UserError) as info:  # no such driver here: still one line, no password
        Store.open("nosuchdialect://bench:s3cret@host/db")
    assert "s3cret" not in str(info.value)


def _append_many(url: str, prefix: str, count: int, start: multiprocessing.synchronize.Barrier) -> None:
    start.wait(timeout=60)  # both processes open and append at the same moment
    with Store.open(url) as store:
        for i in range(count):
            store.append(make_record(run_id=f"{prefix}-{i:03d}", labels={"writer": prefix}))


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    url = str(tmp_path / "shared.db")  # not created yet: the two processes also race to initialise it
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    workers = [ctx.Process(target=_append_many, args=(url, name, 100, start)) for name in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    for w in workers:
        if w.is_alive():
            w.kill()
    assert [w.exitcode for w in workers] == [0, 0]
    with Store.open(url) as store:
        assert store.count() == 200
        run_ids = {r.run_id for r in store.records()}
        assert len(store.records(labels={"writer": "a"})) == 100
    assert run_ids == {f"{p}-{i:03d}" for p in "ab" for i in range(100)}


def _old_layout_store(path: Path, records: list[Record]) -> None:
    """A store as the previous aigcbench wrote it: no summary column, no labels table, no store_layout."""
    import json

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE aigcbench_meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)")
        conn.executemany("INSERT INTO aigcbench_meta VALUES (?, ?)",
                         [("application", "aigcbench"), ("schema_version", str(SCHEMA_VERSION))])
        conn.execute(
            "CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id VARCHAR(64) NOT NULL UNIQUE, "
            "created_at VARCHAR(40), status VARCHAR(16), workload VARCHAR(128), size VARCHAR(32), "
            "backend VARCHAR(64), device VARCHAR(64), precision VARCHAR(16), scenario VARCHAR(32), "
            "batch_size INTEGER, hardware_key VARCHAR(128), git_commit VARCHAR(64), "
            "labels_json TEXT NOT NULL, record_json TEXT NOT NULL)"
        )
        for r in records:
            d = r.to_dict()
            conn.execute(
                "INSERT INTO records (run_id, created_at, status, workload, size, backend, device, precision, "
                "scenario, batch_size, hardware_key, git_commit, labels_json, record_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (d["run_id"], d["created_at"], d["status"], d["workload"]["name"], d["workload"].get("size"),
                 d["backend"]["name"], d["backend"].get("device"), d["backend"].get("precision"),
                 d["scenario"]["name"], d["scenario"]["batch_size"], d["environment"]["hardware_key"],
                 d["git_commit"], json.dumps(d["labels"]), json.dumps(d)),
            )
    conn.close()


def test_store_of_the_previous_layout_is_refused_until_store_upgrade_migrates_it(tmp_path):
    from aigcbench.bench.store_upgrade import upgrade_store
    from aigcbench.reports.select import parse_where

    path = tmp_path / "old.db"
    old = [make_record(labels={"branch": "main", "commit": "a"}), make_record(labels={"branch": "dev"}),
           make_record(labels={})]
    _old_layout_store(path, old)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="store layout 1, older than this aigcbench's 2: run `aigcbench store upgrade`"):
        Store.open(str(path))
    assert snapshot(tmp_path) == before  # opening never migrates

    done = upgrade_store(str(path))
    assert (done.from_layout, done.to_layout, done.records) == (1, 2, 3)
    assert done.backup == tmp_path / "old.layout1-backup.db" and done.backup.is_file()
    with sqlite3.connect(done.backup) as conn:  # the backup is the store as it was
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (3,)
        assert "store_layout" not in dict(conn.execute("SELECT key, value FROM aigcbench_meta"))
    conn.close()
    with Store.open(str(path)) as store:
        assert [r.to_dict() for r in store.records()] == [r.to_dict() for r in old]  # nothing lost
        assert store.label_keys() == {"branch", "commit"}
        light = store.select(parse_where(["branch=main"]), samples=False)
        assert [r.run_id for r in light] == [old[0].run_id] and light[0].samples == {}
        assert store.samples_of([old[1].run_id]) == {old[1].run_id: dict(old[1].samples)}
        store.append(make_record(labels={"branch": "main"}))
        assert len(store.records(labels={"branch": "main"})) == 2
    with sqlite3.connect(path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM aigcbench_meta"))
    conn.close()
    assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["store_layout"] == "2"
    again = upgrade_store(str(path))  # a second upgrade finds it done and writes no backup
    assert again.backup is None and again.records == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db", "old.layout1-backup.db"]


def test_rows_an_older_writer_appends_later_are_backfilled_at_open(tmp_path):
    import json

    path = tmp_path / "s.db"
    Store.open(str(path)).close()
    late = make_record(labels={"writer": "old"})
    with sqlite3.connect(path) as conn:  # what the previous aigcbench's append writes: no summary, no labels
        conn.execute("INSERT INTO records (run_id, labels_json, record_json, status) VALUES (?, ?, ?, 'ok')",
                     (late.run_id, json.dumps(dict(late.labels)), json.dumps(late.to_dict())))
    conn.close()
    with Store.open(str(path)) as store:
        assert store.label_keys() == {"writer"}
        from aigcbench.reports.select import parse_where
        (back,) = store.select(parse_where(["writer=old"]), samples=False)
        assert back.to_dict() == {**late.to_dict(), "samples": {}}


def test_append_many_skips_stored_runs_and_is_all_or_nothing(tmp_path):
    first, second, third = make_record(), make_record(), make_record()
    with Store.open(str(tmp_path / "s.db")) as store:
        store.append(first)
        assert store.append_many([first, second, second, third]) == 2  # stored and repeated runs skipped
        assert [r.run_id for r in store.records()] == [first.run_id, second.run_id, third.run_id]
        assert store.append_many([first, second]) == 0
        broken = dataclasses.replace(make_record(), metrics={"x": float("nan")})  # not storable JSON
        with pytest.raises(ValueError):
            store.append_many([make_record(), broken])
        assert store.count() == 3
        with pytest.raises(UserError, match=first.run_id):
            store.append(first)  # `append` still refuses a duplicate
