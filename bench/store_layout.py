"""The store's tables, how a record maps to their rows, and upgrading a store of an older layout.

Layout 1 (the first aigcbench) kept each record whole in `records.record_json`
beside indexed copies of the fields reports select on. Layout 2 adds:

* `records.summary_json`, the record without its samples, so a listing over a
  large store never parses sample arrays (`Store.select(samples=False)`);
* `record_labels`, one row per (record, label), so label selections and
  `label_keys` are indexed SQL in both SQLite and PostgreSQL (whose JSON
  operators differ).

Only `aigcbench store upgrade` migrates a layout-1 store (`upgrade`, then
`backfill` from `record_json`), in one write transaction after a backup: whole
or not at all. Every other command refuses an older layout with that hint,
rather than rewriting a store behind its owner's back. The records' own
`schema_version` is unaffected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .errors import UserError
from .record import Record

META_TABLE = "aigcbench_meta"
APPLICATION = "aigcbench"  # aigcbench_meta's "application": whose store this is

metadata = sa.MetaData()

meta = sa.Table(
    META_TABLE,
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Column order matters to SQLite: a row is one record, and reaching a column
# stored after a large value means walking that value's overflow pages. The
# small columns (and `summary_json`, what listings read) come before `record_json`.
records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(40), index=True),
    sa.Column("status", sa.String(16), index=True),
    sa.Column("workload", sa.String(128), index=True),
    sa.Column("size", sa.String(32), index=True),
    sa.Column("backend", sa.String(64), index=True),
    sa.Column("device", sa.String(64), index=True),
    sa.Column("precision", sa.String(16), index=True),
    sa.Column("scenario", sa.String(32), index=True),
    sa.Column("batch_size", sa.Integer, index=True),
    sa.Column("hardware_key", sa.String(128), index=True),
    sa.Column("git_commit", sa.String(64), index=True),
    sa.Column("labels_json", sa.Text, nullable=False),
    # The record without its samples (`samples` is {}): `select(samples=False)` reads only this.
    # Nullable because stores upgraded in place gain it by ALTER TABLE (see `upgrade`).
    sa.Column("summary_json", sa.Text, nullable=True),
    sa.Column("record_json", sa.Text, nullable=False),
)
# Rows still lacking a summary: those an older aigcbench appended. A partial
# index keeps finding them at open cheap however large the store is.
unsummarised = sa.Index(
    "ix_records_unsummarised", records.c.id,
    sqlite_where=records.c.summary_json.is_(None), postgresql_where=records.c.summary_json.is_(None),
)

# One row per (record, label): label selections and `label_keys` become indexed SQL
# instead of parsing every document (JSON operators differ between SQLite and PostgreSQL).
labels = sa.Table(
    "record_labels",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("records.run_id"), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Index("ix_record_labels_key_value", "key", "value"),
)

# The tables' shape, apart from the records' own schema_version: 2 added
# `summary_json` and `record_labels`. An older store is migrated by `aigcbench store upgrade`.
STORE_LAYOUT = 2
# Rows per statement when backfilling, and values per IN list (SQLite's bound-variable limit).
CHUNK = 500


def required_tables(layout: int) -> dict[str, frozenset[str]]:
    """The tables (and their columns) a store of `layout` must have: what tells complete from damaged."""
    tables = {table.name: frozenset(table.c.keys()) for table in metadata.sorted_tables}
    if layout < 2:
        del tables[labels.name]
        tables[records.name] -= {"summary_json"}
    return tables


def initialise(conn: sa.Connection, schema_version: int) -> None:
    """Create every table of the current layout and the meta entries that name it, in `conn`'s transaction."""
    metadata.create_all(conn)
    conn.execute(meta.insert(), [
        {"key": "application", "value": APPLICATION},
        {"key": "schema_version", "value": str(schema_version)},
        {"key": "store_layout", "value": str(STORE_LAYOUT)},
    ])


def rows(record: Record) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A record's `records` row and its `record_labels` rows."""
    data = record.to_dict()
    workload, backend = data["workload"], data["backend"]
    scenario, environment = data["scenario"], data["environment"]
    row = {
        "run_id": data["run_id"],
        "created_at": data["created_at"],
        "status": data["status"],
        "workload": workload.get("name"),
        "size": workload.get("size"),
        "backend": backend.get("name"),
        "device": backend.get("device"),
        "precision": backend.get("precision"),
        "scenario": scenario.get("name"),
        "batch_size": scenario.get("batch_size"),
        "hardware_key": environment.get("hardware_key"),
        "git_commit": data["git_commit"],
        "labels_json": json.dumps(data["labels"], sort_keys=True),
        "summary_json": dumps({**data, "samples": {}}),
        "record_json": dumps(data),
    }
    return row, label_rows(data["run_id"], data["labels"])


def label_rows(run_id: str, pairs: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"run_id": run_id, "key": key, "value": str(value)} for key, value in pairs.items()]


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def upgrade(conn: sa.Connection) -> None:
    """Give a store written by an older aigcbench what this one reads; `backfill` then fills it.

    Runs inside `store upgrade`'s write transaction, so the upgrade happens whole or not at all.
    """
    columns = {column["name"] for column in sa.inspect(conn).get_columns("records")}
    if "summary_json" not in columns:
        conn.execute(sa.text("ALTER TABLE records ADD COLUMN summary_json TEXT"))
    unsummarised.create(conn, checkfirst=True)
    labels.create(conn, checkfirst=True)
    conn.execute(meta.insert(), [{"key": "store_layout", "value": str(STORE_LAYOUT)}])


def backfill(conn: sa.Connection) -> None:
    """Write the summary and label rows of records that lack them, from their `record_json`.

    After an upgrade that is every record; later, only those an older aigcbench
    appended to this store (found through the partial index, so this is cheap).
    """
    pending = conn.execute(sa.select(records.c.id).where(records.c.summary_json.is_(None))).scalars().all()
    for chunk in chunks(pending):
        found = conn.execute(sa.select(records.c.id, records.c.record_json).where(records.c.id.in_(chunk)))
        updates, new_labels = [], []
        for row_id, text in found:
            data = _document(row_id, text)
            updates.append({"row_id": row_id, "summary": dumps({**data, "samples": {}})})
            new_labels += label_rows(data["run_id"], data.get("labels") or {})
        conn.execute(
            records.update().where(records.c.id == sa.bindparam("row_id"))
            .values(summary_json=sa.bindparam("summary")),
            updates,
        )
        run_ids = list({label["run_id"] for label in new_labels})
        if run_ids:  # an older writer never writes label rows; clear any left by a partial earlier attempt
            conn.execute(labels.delete().where(labels.c.run_id.in_(run_ids)))
            conn.execute(labels.insert(), new_labels)


def _document(row_id: int, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        # A hand-edited or damaged row: one line naming it (the transaction leaves the store as it was).
        raise UserError(f"row {row_id} of the records table is not a readable record; the store was left as it was")
    return data
