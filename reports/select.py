"""Which records a reading command works on: the `--where KEY=VALUE` grammar, and cell keys.

One grammar for every reading command (report, compare, history, export,
plan --validate)::

    --where workload=ddpm --where backend=openvino,onnxruntime --where branch=main --where since=7d

* keys: `workload`, `size`, `backend`, `precision`, `device`, `hardware`,
  `scenario`, `batch`, `status`, `since`, `until`, or any label (`commit`,
  `branch`, ...); a key that is none of these and no stored record's label is refused;
* `VALUE` may list alternatives separated by commas (`backend=openvino,onnxruntime`);
  the same key given twice adds alternatives; different keys must all match;
* `since` / `until` take an ISO date or time (`2026-11-01`, `2026-11-01T12:00`,
  UTC unless an offset is given) or an age (`30m`, `12h`, `7d`, `2w`): records
  created at or after `since` and strictly before `until`.

A `Selection` is frozen and pure: the store turns it into SQL on its indexed
columns (`Store.select`), and `matches` applies the same rule to records read
from a JSON file, so both sources filter alike.

A record's *cell key* is its config without labels plus its `hardware_key`:
two records with the same cell key measured the same thing (DESIGN.md).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from ..bench.errors import UserError
from ..bench.record import STATUSES, Record
from ..workloads.params import variant

# --where key -> the store column it is pushed down to.
COLUMN_KEYS: Mapping[str, str] = MappingProxyType({
    "workload": "workload",
    "size": "size",
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "hardware": "hardware_key",
    "scenario": "scenario",
    "batch": "batch_size",
    "status": "status",
})
TIME_KEYS: tuple[str, ...] = ("since", "until")
BUILTIN_KEYS: tuple[str, ...] = (*COLUMN_KEYS, *TIME_KEYS)

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class WhereError(UserError):
    """A refused `--where` item; `key` is the offending key (data, not text to parse)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Selection:
    """Conjunction of per-key alternatives. Empty means every record.

    `columns` maps a store column (`workload`, `hardware_key`, `batch_size`...)
    to its accepted values; `labels` a label key to its accepted values;
    `since`/`until` are ISO timestamps in UTC (`created_at` compares as text).
    """

    columns: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @property
    def empty(self) -> bool:
        return not (self.columns or self.labels or self.since or self.until)

    def matches(self, record: Record) -> bool:
        """The same rule the store applies in SQL, for records that come from a file."""
        row = record_columns(record)
        if any(row.get(column) not in wanted for column, wanted in self.columns.items()):
            return False
        if any(record.labels.get(key) not in wanted for key, wanted in self.labels.items()):
            return False
        created = normalise_timestamp(record.created_at)
        if self.since is not None and created < self.since:
            return False
        return not (self.until is not None and created >= self.until)

    def check_labels(self, known: Iterable[str]) -> None:
        """Refuse a label key no record carries: almost always a typo of a built-in key or a label."""
        known = set(known)
        for key in self.labels:
            if key not in known:
                raise WhereError(key, _unknown_key_message(key, known))

    def describe(self) -> str:
        """The selection as the user would write it back, for messages and report headers."""
        inverse = {column: key for key, column in COLUMN_KEYS.items()}
        parts = [f"{inverse[c]}={','.join(map(str, v))}" for c, v in self.columns.items()]
        parts += [f"{k}={','.join(v)}" for k, v in self.labels.items()]
        parts += [f"{k}={v}" for k, v in (("since", self.since), ("until", self.until)) if v is not None]
        return " ".join(parts) or "all records"


def parse_where(items: Sequence[str], flag: str = "--where", *, now: _dt.datetime | None = None) -> Selection:
    """Parse repeated `KEY=VALUE` items into a `Selection`; a `WhereError` (exit 2) names the bad one."""
    columns: dict[str, list[Any]] = {}
    labels: dict[str, list[str]] = {}
    times: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.match(key):
            raise WhereError(key or item, f"{flag} {item!r}: expected KEY=VALUE (KEY made of letters, digits, _ . -)")
        alternatives = [v.strip() for v in value.split(",")]
        if not value or any(not v for v in alternatives):
            raise WhereError(key, f"{flag} {item!r}: empty value")
        if key in TIME_KEYS:
            if len(alternatives) > 1 or key in times:
                raise WhereError(key, f"{flag} {item!r}: {key} takes one time")
            times[key] = parse_time(value, f"{flag} {key}", now=now)
        elif key in COLUMN_KEYS:
            columns.setdefault(COLUMN_KEYS[key], []).extend(_column_value(key, v, flag) for v in alternatives)
        else:
            labels.setdefault(key, []).extend(alternatives)
    return Selection(
        columns={c: tuple(dict.fromkeys(v)) for c, v in columns.items()},
        labels={k: tuple(dict.fromkeys(v)) for k, v in labels.items()},
        since=times.get("since"),
        until=times.get("until"),
    )


def _column_value(key: str, value: str, flag: str) -> Any:
    if key == "batch":
        if not value.isdigit() or int(value) < 1:
            raise WhereError(key, f"{flag} batch={value!r}: expected a positive integer")
        return int(value)
    if key == "status" and value not in STATUSES:
        raise WhereError(key, f"{flag} status={value!r}: choose from {', '.join(STATUSES)}")
    return value


def parse_time(value: str, what: str, *, now: _dt.datetime | None = None) -> str:
    """An ISO date/time or an age (`7d`) as a UTC ISO timestamp comparable with `created_at`."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    age = _AGE.match(value)
    if age:
        moment = now - _dt.timedelta(seconds=float(age.group(1)) * _AGE_SECONDS[age.group(2)])
    else:
        try:
            moment = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise WhereError(
                what.split()[-1], f"{what} {value!r}: expected an ISO date or time (2026-11-01, 2026-11-01T12:00) "
                "or an age (30m, 12h, 7d, 2w)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")


def normalise_timestamp(value: str) -> str:
    """A stored `created_at` in the same UTC form as `parse_time` (records are written that way already)."""
    try:
        moment = _dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")


def _unknown_key_message(key: str, labels: set[str]) -> str:
    import difflib

    candidates = [*BUILTIN_KEYS, *sorted(labels)]
    close = difflib.get_close_matches(key, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    known = ", ".join(sorted(labels)) or "none"
    return (
        f"--where {key!r}: unknown key{hint}; built-in keys: {', '.join(BUILTIN_KEYS)}; "
        f"labels in these records: {known}"
    )


def record_columns(record: Record) -> dict[str, Any]:
    """The values a record has in the store's indexed columns (what `Selection.columns` names)."""
    return {
        "workload": record.workload.get("name"),
        "size": record.workload.get("size"),
        "backend": record.backend.get("name"),
        "precision": record.backend.get("precision"),
        "device": record.backend.get("device"),
        "hardware_key": record.environment.get("hardware_key"),
        "scenario": record.scenario.get("name"),
        "batch_size": record.scenario.get("batch_size"),
        "status": record.status,
    }


def filter_records(records: Iterable[Record], selection: Selection) -> list[Record]:
    """Records of a file that match `selection`, refusing label keys none of them carries."""
    records = list(records)
    selection.check_labels({key for r in records for key in r.labels})
    return [r for r in records if selection.matches(r)]


# ----------------------------------------------------------------------------- cells

def cell_config(record: Record) -> dict[str, Any]:
    """What defines the measurement: the config without labels (falls back to the record's own fields)."""
    config = dict(record.config or {})
    config.pop("labels", None)
    if not config:  # records from elsewhere (pytest-benchmark) may carry no run config
        config = {k: v for k, v in record_columns(record).items() if k not in ("status", "hardware_key")}
    return config


def cell_key(record: Record) -> str:
    """Digest of the config without labels plus the hardware key: equal keys measured the same thing."""
    payload = {"config": cell_config(record), "hardware_key": record.environment.get("hardware_key")}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def group_by_cell(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records by cell key, in first-seen order (reruns of one configuration land together)."""
    cells: dict[str, list[Record]] = {}
    for record in records:
        cells.setdefault(cell_key(record), []).append(record)
    return cells


def cell_label(record: Record) -> str:
    """workload size · backend device precision · scenario bN · hardware, as one short string."""
    w, b, s, c = record.workload, record.backend, record.scenario, record.config or {}
    return (
        f"{w.get('name')} {w.get('size')}{variant(c.get('mode'), c.get('params'))} · "
        f"{b.get('name')} {b.get('device')} {b.get('precision')} · "
        f"{s.get('name')} b{s.get('batch_size')} · {record.environment.get('hardware_key')}"
    )
