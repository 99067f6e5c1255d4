"""The --where grammar, and Store.select agreeing with Selection.matches (SQL and Python filter alike)."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from aigcbench.bench.store import Store
from aigcbench.reports.select import WhereError, filter_records, parse_where

from .records import synthetic_record

NOW = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.timezone.utc)


def test_alternatives_and_repeated_keys_are_or_ed_within_a_key():
    selection = parse_where(["backend=openvino,onnxruntime", "backend=pytorch", "branch=main", "batch=1,8"])
    assert selection.columns["backend"] == ("openvino", "onnxruntime", "pytorch")
    assert selection.columns["batch_size"] == (1, 8)
    assert selection.labels == {"branch": ("main",)}
    assert parse_where(["hardware=l4"]).columns == {"hardware_key": ("l4",)}
    assert parse_where([]).empty


def test_since_until_take_iso_times_and_ages():
    assert parse_where(["since=2026-11-01"]).since == "2026-11-01T00:00:00+00:00"
    assert parse_where(["until=2026-11-01T12:00+02:00"]).until == "2026-11-01T10:00:00+00:00"
    assert parse_where(["since=7d"], now=NOW).since == "2026-11-03T12:00:00+00:00"
    assert parse_where(["since=12h"], now=NOW).since == "2026-11-10T00:00:00+00:00"
    assert parse_where(["until=2w"], now=NOW).until == "2026-10-27T12:00:00+00:00"


@pytest.mark.parametrize(("item", "key"), [
    ("batch=0", "batch"), ("batch=two", "batch"), ("status=great", "status"), ("since=yesterday", "since"),
    ("until=2026-13-01", "until"), ("since=1d,2d", "since"), ("workload=", "workload"),
    ("backend=a,,b", "backend"), ("no-equals-sign", "no-equals-sign"), ("=x", "=x"),
])
def test_malformed_items_name_their_key(item, key):
    with pytest.raises(WhereError) as info:
        parse_where([item], now=NOW)
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_unknown_label_key_is_refused_with_a_suggestion():
    with pytest.raises(WhereError) as info:
        parse_where(["brnach=main"]).check_labels({"branch", "commit"})
    assert info.value.key == "brnach"
    assert "did you mean 'branch'" in str(info.value)
    parse_where(["branch=main"]).check_labels({"branch"})  # a known label passes


def mixed_records():
    """Records differing in every selectable field, with overlapping labels."""
    day = dt.timedelta(days=1)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    return [
        synthetic_record(workload="dcgan", backend="pytorch", labels={"branch": "main", "commit": "a1"},
                         created_at=start),
        synthetic_record(workload="dcgan", backend="onnxruntime", labels={"branch": "main", "commit": "b2"},
                         created_at=start + day),
        synthetic_record(workload="ddpm", backend="pytorch", batch_size=8, scenario="throughput",
                         labels={"branch": "dev", "commit": "b2"}, created_at=start + 2 * day),
        synthetic_record(workload="vae", backend="openvino", hardware_key="l4-8c", precision="fp16",
                         labels={"branch": "dev"}, created_at=start + 3 * day),
        synthetic_record(workload="vae", status="failed", labels={}, created_at=start + 4 * day),
        synthetic_record(workload="dcgan", status="invalid", device="cuda", labels={"commit": "a1", "ci": "yes"},
                         created_at=start + 5 * day),
    ]


SELECTIONS = [
    [], ["workload=dcgan"], ["backend=pytorch,openvino"], ["workload=dcgan", "backend=pytorch"],
    ["branch=main"], ["branch=main,dev"], ["commit=b2", "branch=dev"], ["commit=a1", "workload=dcgan"],
    ["ci=yes"], ["batch=8"], ["hardware=l4-8c"], ["precision=fp16"], ["device=cuda"], ["scenario=throughput"],
    ["status=failed,invalid"], ["since=2026-11-03"], ["until=2026-11-03"], ["since=2026-11-02", "until=2026-11-05"],
    ["branch=dev", "since=2026-11-04"], ["workload=nosuch"],
]


@pytest.fixture
def filled_store(tmp_path):
    records = mixed_records()
    with Store.open(str(tmp_path / "s.db")) as store:
        assert store.append_many(records) == len(records)
        yield store, records


@pytest.mark.parametrize("where", SELECTIONS, ids=lambda w: " ".join(w) or "all")
def test_store_select_agrees_with_matches(filled_store, where):
    store, records = filled_store
    selection = parse_where(where)
    expected = [r.run_id for r in records if selection.matches(r)]
    assert [r.run_id for r in store.select(selection)] == expected
    assert [r.run_id for r in store.select(selection, samples=False)] == expected
    assert [r.run_id for r in filter_records(records, selection)] == expected


def test_selections_are_not_all_trivial():
    # The agreement test means something only if selections pick different, non-empty subsets.
    records = mixed_records()
    picked = {tuple(r.run_id for r in records if parse_where(w).matches(r)) for w in SELECTIONS}
    assert len(picked) >= 12


def test_without_samples_then_samples_of(filled_store):
    store, records = filled_store
    light = store.select(parse_where(["workload=dcgan"]), samples=False)
    assert light and all(r.samples == {} for r in light)
    by_id = {r.run_id: r for r in records}
    for r in light:  # everything but the samples is the record as stored
        assert r.to_dict() == {**by_id[r.run_id].to_dict(), "samples": {}}
    wanted = [light[0].run_id, light[-1].run_id, "no-such-run"]
    assert store.samples_of(wanted) == {i: dict(by_id[i].samples) for i in wanted[:2]}
    assert store.samples_of([]) == {}


def test_samples_of_many_runs_crosses_the_variable_limit(tmp_path):
    records = [synthetic_record([0.001 * (i + 1)], run_id=f"r{i:05d}") for i in range(1200)]
    with Store.open(str(tmp_path / "s.db")) as store:
        store.append_many(records)
        samples = store.samples_of([r.run_id for r in records])
    assert samples == {r.run_id: {"latency_s": list(r.samples["latency_s"])} for r in records}


def test_label_filters_run_in_sql_on_the_labels_table(filled_store, tmp_path):
    store, records = filled_store
    assert store.label_keys() == {"branch", "commit", "ci"}
    with sqlite3.connect(tmp_path / "s.db") as conn:
        rows = conn.execute("SELECT run_id, key, value FROM record_labels").fetchall()
        plan = " ".join(str(row) for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT run_id FROM record_labels WHERE key = 'branch' AND value IN ('main')"))
    conn.close()
    assert sorted(rows) == sorted((r.run_id, k, v) for r in records for k, v in r.labels.items())
    assert "ix_record_labels_key_value" in plan  # a label selection is an index lookup, not a scan
    assert store.holdings()["labels"] == ["branch", "ci", "commit"]
