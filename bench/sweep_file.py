"""Sweep files: many measurement cells described in one TOML file, checked before anything runs.

`aigcbench sweep FILE.toml` runs every cell of the file in its own worker
process. The file is read and validated in full first: a mistake in cell 40
is reported before cell 1 spends a minute measuring, in one line that names
the file, the line (and column when known) and the key at fault::

    sweeps/x.toml:12: matrix.backend: unknown backend 'tensorrtt'; choose from: ...
    sweeps/x.toml:3:9: invalid TOML: Expected '=' after a key in a key/value pair

The format
----------
::

    [sweep]
    name = "cpu-matrix"        # optional; default: the file's name without .toml
    description = "..."        # optional
    timeout = 600              # per-cell worker timeout (default 1800 s): seconds,
                               # or a duration string such as "90s", "10m", "1h"

    [defaults]                 # applied to every cell
    size = "tiny"
    duration = 2
    labels = { suite = "nightly" }

    [matrix]                   # every value a non-empty list; the cells are the
    workload = ["dcgan", "vae"]      # cross product, in the order the keys are
    backend = ["pytorch", "onnxruntime"]  # written, the last key varying fastest
    batch_size = [1, 4]

    [[exclude]]                # drop the matrix cells that match every key given;
    backend = "onnxruntime"    # a list means "any of"
    batch_size = [4]

    [[override]]               # cells matching every key of `where` get `set` merged in
    where = { workload = "ddpm" }
    set = { steps = 4, timeout = "30s", options = { fault = "hang" } }

    [[cell]]                   # an extra, explicit cell: defaults, then its own keys,
    workload = "ddpm"          # then the overrides that match it
    backend = "pytorch"

Keys. A cell takes the options of `aigcbench run`, spelled with underscores
(`batch_size`, `min_iterations`, `slo_p99`, `find_max_rate`, ...; see
`bench.config.OPTION_KEYS`), plus `timeout`: the seconds its worker may run
before it is stopped and the cell recorded as failed. `[defaults]`,
`[matrix]`, `[[cell]]`, `set` and `where`/`[[exclude]]` all take these keys;
anything else is refused, as is any top-level table other than the six above.

Merging. `options` (backend options, as `--option KEY=VALUE`) and `labels`
(as `--label KEY=VALUE`) are tables whose values are strings, numbers or
booleans; they merge key by key — defaults, then the matrix (or the explicit
cell), then the overrides, later wins. Every other key is replaced whole.

Matching. `[[exclude]]` and `where` compare the values as written in the file
(defaults plus the cell's own keys; overrides do not see each other's `set`):
`precision = "fp32"` does not match a cell that leaves precision to its
default, and a table such as `options = { fault = "hang" }` matches a cell
whose options include those pairs. An exclude or override that matches no
cell is refused: it is almost always a typo.

Order and identity. Matrix cells come first, in expansion order, then the
explicit cells in file order. A cell's origin names where it came from:
`matrix #3` (its position in the full cross product, so excluding other
cells never renumbers it) or `cell #1 (line 40)`. Two cells with the same
configuration and timeout are refused, and so is a sweep with no cell.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..workloads import registry as workload_registry
from .config import OPTION_KEYS, RunConfig
from .errors import UserError
from .quantities import parse_duration

DEFAULT_TIMEOUT_S = 1800.0
TABLES = ("sweep", "defaults", "matrix", "exclude", "override", "cell")
SWEEP_KEYS = ("name", "description", "timeout")
CELL_KEYS = (*OPTION_KEYS, "timeout")
MERGED_KEYS = ("options", "labels")  # tables that merge key by key instead of being replaced


@dataclass(frozen=True)
class SweepCell:
    """One cell to run: its validated config, its worker timeout, and where the file defined it."""

    config: RunConfig
    timeout_s: float
    origin: str  # "matrix #3", "cell #1 (line 40)"


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep file: every cell is known to build a `RunConfig`."""

    name: str
    description: str | None
    path: Path
    cells: tuple[SweepCell, ...]


def load_sweep(path: Path | str) -> SweepPlan:
    """Read, expand and validate a sweep file; a bad file raises a one-line `UserError`."""
    path = Path(path)
    text = _read(path)
    data = _parse(path, text)
    file = _File(path, _Locator(text))
    _check_tables(file, data)
    name, description, sweep_timeout = _sweep_settings(file, data.get("sweep", {}))
    defaults = _cell_values(file, _Place("defaults"), data.get("defaults", {}))
    matrix = _matrix(file, data.get("matrix"))
    excludes = [_criteria(file, _Place("exclude", i), t) for i, t in enumerate(_array(file, data, "exclude"), 1)]
    overrides = [_override(file, _Place("override", i), t) for i, t in enumerate(_array(file, data, "override"), 1)]
    explicit = [_cell_values(file, _Place("cell", i), t) for i, t in enumerate(_array(file, data, "cell"), 1)]

    drafts = _exclude(file, _matrix_drafts(defaults, matrix), excludes) + _explicit_drafts(file, defaults, explicit)
    if not drafts:
        raise _no_cells(file, matrix, excludes)
    _apply_overrides(file, drafts, overrides)
    cells = tuple(_build(file, draft, sweep_timeout) for draft in drafts)
    _refuse_duplicates(file, drafts, cells)
    return SweepPlan(name=name or path.stem, description=description, path=path, cells=cells)


# --- Reading -------------------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such sweep file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a sweep file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the sweep file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {exc.start}); TOML files are UTF-8") from None
    # Some Windows editors start UTF-8 files with a byte-order mark, which TOML does not allow.
    return text.removeprefix("\ufeff")


_TOML_POSITION = re.compile(r"^(?P<message>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(_one_line(f"{path}:{_toml_error(exc, text)}")) from None


def _toml_error(exc: Exception, text: str) -> str:
    """`LINE:COL: invalid TOML: MESSAGE` from tomllib's error (attributes on 3.14+, text before)."""
    line, col, message = getattr(exc, "lineno", None), getattr(exc, "colno", None), getattr(exc, "msg", None)
    if line is None:
        found = _TOML_POSITION.match(str(exc))
        if found:
            line, col, message = int(found["line"]), int(found["col"]), found["message"]
    if line is None:  # "Invalid value (at end of document)": point at the last line
        return f"{max(1, len(text.splitlines()))}: invalid TOML: {exc}"
    return f"{line}:{col}: invalid TOML: {message}"


# --- Where things are in the file ----------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """A table of the file (the N-th one, from 1, for [[arrays]]) and a key path inside it."""

    table: str
    index: int | None = None
    keys: tuple[str, ...] = ()

    def __truediv__(self, key: str) -> "_Place":
        return replace(self, keys=(*self.keys, key))

    @property
    def table_name(self) -> str:
        return self.table if self.index is None else f"{self.table} #{self.index}"

    @property
    def name(self) -> str:
        return ".".join((self.table_name, *self.keys))


_HEADER = re.compile(r"^\s*\[(?P<array>\[)?\s*(?P<name>[^\[\]#=,]+?)\s*\](?(array)\])\s*(?:#.*)?$")


class _Locator:
    """Finds the line of a table or key in the TOML text.

    tomllib returns plain dicts without positions, so semantic errors locate
    their key by scanning the text: the table's header (`[matrix]`, the N-th
    `[[override]]`), then the `key =` line in that section. A key inside an
    inline table (`set = { steps = 0 }`) points at the line holding it, with
    the column of the inner key. This is a heuristic, not a parser: when a
    key cannot be found the table's header line is used, or no line at all.
    """

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        self._headers: list[tuple[int, bool, tuple[str, ...]]] = []  # (line index, is [[array]], dotted name)
        for number, line in enumerate(self._lines):
            found = _HEADER.match(line)
            if found:
                name = tuple(part.strip().strip("\"'") for part in found["name"].split("."))
                self._headers.append((number, found["array"] is not None, name))

    def find(self, place: _Place) -> tuple[int | None, int | None]:
        """1-based (line, column) of `place`; column is None unless the key sits in an inline table."""
        section = self._section(place.table, place.index)
        if section is None:
            # The table may be written at the top level: `matrix = { ... }`, `matrix.backend = [...]`.
            top_end = self._headers[0][0] if self._headers else len(self._lines)
            return self._find_key(range(0, top_end), (place.table, *place.keys)) or (None, None)
        header, end = section
        if not place.keys:
            return header + 1, None
        return self._find_key(range(header + 1, end), place.keys) or (header + 1, None)

    def _section(self, table: str, index: int | None) -> tuple[int, int] | None:
        """(header line index, end line index) of `[table]`, or of the index-th `[[table]]`."""
        seen = 0
        for position, (number, is_array, name) in enumerate(self._headers):
            wanted = name == (table,) and is_array if index is not None else name[0] == table
            if not wanted:
                continue
            seen += 1
            if index is None or seen == index:
                end = self._headers[position + 1][0] if position + 1 < len(self._headers) else len(self._lines)
                return number, end
        return None

    def _find_key(self, lines: range, keys: tuple[str, ...]) -> tuple[int, int | None] | None:
        # Longest dotted prefix first: `set.steps = 4` before `set = { steps = 4 }`.
        for depth in range(len(keys), 0, -1):
            pattern = re.compile(r"^\s*" + r"\s*\.\s*".join(_key_pattern(k) for k in keys[:depth]) + r"\s*=")
            for number in lines:
                found = pattern.match(self._lines[number])
                if found:
                    inner = keys[depth] if depth < len(keys) else None
                    return number + 1, self._inner_column(self._lines[number], found.end(), inner)
        return None

    @staticmethod
    def _inner_column(line: str, start: int, key: str | None) -> int | None:
        if key is None:
            return None
        found = re.compile(r"(?<![\w\"'-])" + _key_pattern(key) + r"\s*=").search(line, start)
        return found.start() + 1 if found else None


def _key_pattern(key: str) -> str:
    return "[\"']?" + re.escape(key) + "[\"']?"


@dataclass(frozen=True)
class _File:
    path: Path
    locator: _Locator

    def error(self, place: _Place | None, message: str, *, named: bool = True) -> UserError:
        """`path:line[:col]: place: message` as one line; `named=False` leaves out the place's name."""
        line, column = self.locator.find(place) if place is not None else (None, None)
        position = "".join(f":{n}" for n in (line, column if line else None) if n)
        prefix = f"{place.name}: " if place is not None and named else ""
        return UserError(_one_line(f"{self.path}{position}: {prefix}{message}"))

    def line(self, place: _Place) -> int | None:
        return self.locator.find(place)[0]


def _one_line(message: str) -> str:
    # The CLI contract: a UserError is exactly one line on stderr.
    return " ".join(message.splitlines())


# --- Validating the tables -----------------------------------------------------------------------


def _check_tables(file: _File, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if key not in TABLES:
            raise file.error(_Place(key), f"unknown table{_did_you_mean(key, TABLES)}; allowed: {', '.join(TABLES)}")
        if key in ("sweep", "defaults", "matrix") and not isinstance(value, dict):
            raise file.error(_Place(key), f"must be a [{key}] table, got {value!r}")


def _array(file: _File, data: Mapping[str, Any], table: str) -> list[dict[str, Any]]:
    value = data.get(table, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise file.error(_Place(table), f"must be [[{table}]] tables, got {value!r}")
    return value


def _check_keys(file: _File, place: _Place, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in table:
        if key not in allowed:
            raise file.error(place / key, f"unknown key{_did_you_mean(key, allowed)}; known: {', '.join(allowed)}")


def _did_you_mean(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _sweep_settings(file: _File, table: Mapping[str, Any]) -> tuple[str | None, str | None, float]:
    place = _Place("sweep")
    _check_keys(file, place, table, SWEEP_KEYS)
    name, description = table.get("name"), table.get("description")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise file.error(place / "name", f"must be a non-empty string, got {name!r}")
    if description is not None and not isinstance(description, str):
        raise file.error(place / "description", f"must be a string, got {description!r}")
    timeout = _timeout(file, place / "timeout", table["timeout"]) if "timeout" in table else DEFAULT_TIMEOUT_S
    return name, description, timeout


def _cell_values(file: _File, place: _Place, table: Mapping[str, Any]) -> dict[str, Any]:
    """Check a table of cell keys ([defaults], [[cell]], `set`). Option values are left to RunConfig."""
    _check_keys(file, place, table, CELL_KEYS)
    for key, value in table.items():
        _check_special(file, place / key, key, value)
    return dict(table)


def _check_special(file: _File, place: _Place, key: str, value: Any) -> None:
    """The keys RunConfig does not see as written: the merged tables and the loader's own `timeout`."""
    if key in MERGED_KEYS:
        _check_pairs(file, place, key, value)
    elif key == "timeout":
        _timeout(file, place, value)


def _check_pairs(file: _File, place: _Place, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise file.error(place, f"must be a table such as {key} = {{ name = \"value\" }}, got {value!r}")
    for name, item in value.items():
        if isinstance(item, (dict, list)) or not isinstance(item, (str, int, float, bool)):
            raise file.error(place / name, f"values must be strings, numbers or booleans, got {item!r}")


def _timeout(file: _File, place: _Place, value: Any) -> float:
    expected = 'expected seconds > 0 or a duration such as "90s", "10m", "1h"'
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise file.error(place, f"{expected}, got {value!r}")
    text = value
    # parse_duration spells minutes "min"; a timeout reads naturally as "10m", which cannot mean anything else.
    if isinstance(value, str) and value.strip().endswith("m"):
        text = value.strip() + "in"
    try:
        seconds = parse_duration(text, "timeout")
    except UserError:
        raise file.error(place, f"{expected}, got {value!r}") from None
    if not seconds > 0:
        raise file.error(place, f"{expected}, got {value!r}")
    return seconds


def _matrix(file: _File, table: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    if table is None:
        return {}
    place = _Place("matrix")
    if not table:
        raise file.error(place, "is empty: give at least one key a list of values, e.g. backend = [\"pytorch\"]")
    _check_keys(file, place, table, CELL_KEYS)
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise file.error(place / key, f"must be a non-empty list of values, one per cell, got {values!r}")
        for position, value in enumerate(values):
            _check_special(file, place / key, key, value)
            if any(_same(value, earlier) for earlier in values[:position]):
                raise file.error(place / key, f"{value!r} is listed twice")
    return dict(table)


def _criteria(file: _File, place: _Place, table: Any) -> dict[str, Any]:
    """Check an [[exclude]] table or a `where` table: cell keys with a value, or a list of values (any of)."""
    if not isinstance(table, dict) or not table:
        example = '{ workload = "ddpm" }'
        raise file.error(place, f"must be a non-empty table of keys to match, such as {example}, got {table!r}")
    _check_keys(file, place, table, CELL_KEYS)
    for key, want in table.items():
        choices = want if isinstance(want, list) else [want]
        if not choices:
            raise file.error(place / key, "an empty list matches nothing")
        for choice in choices:
            if key in MERGED_KEYS:
                _check_pairs(file, place / key, key, choice)
            elif isinstance(choice, (dict, list)):
                raise file.error(place / key, f"must be a value or a list of values (any of), got {want!r}")
    return dict(table)


def _override(file: _File, place: _Place, table: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    _check_keys(file, place, table, ("where", "set"))
    for key in ("where", "set"):
        if key not in table:
            raise file.error(place, "needs both where = { ... } (which cells) and set = { ... } (what to change)")
    changes = table["set"]
    if not isinstance(changes, dict) or not changes:
        raise file.error(place / "set", f"must be a non-empty table such as {{ steps = 4 }}, got {changes!r}")
    return _criteria(file, place / "where", table["where"]), _cell_values(file, place / "set", changes)


# --- Expanding the cells -------------------------------------------------------------------------


@dataclass
class _Draft:
    """A cell's raw values while they are merged, remembering which table set each key last."""

    origin: str
    label: str  # the origin plus, for a matrix cell, its combination: for error messages
    home: _Place  # the table the cell comes from
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, _Place] = field(default_factory=dict)

    def merge(self, values: Mapping[str, Any], place: _Place) -> None:
        for key, value in values.items():
            if key in MERGED_KEYS:
                value = {**self.values.get(key, {}), **value}
            self.values[key] = value
            self.sources[key] = place


def _matrix_drafts(defaults: Mapping[str, Any], matrix: Mapping[str, list[Any]]) -> list[_Draft]:
    if not matrix:
        return []
    drafts = []
    # itertools.product varies the last key fastest; dicts keep the file's key order.
    for number, combination in enumerate(itertools.product(*matrix.values()), 1):
        chosen = dict(zip(matrix, combination))
        described = ", ".join(f"{key}={value}" for key, value in chosen.items())
        draft = _Draft(f"matrix #{number}", f"matrix #{number} ({described})", _Place("matrix"))
        draft.merge(defaults, _Place("defaults"))
        draft.merge(chosen, _Place("matrix"))
        drafts.append(draft)
    return drafts


def _exclude(file: _File, drafts: list[_Draft], excludes: Sequence[Mapping[str, Any]]) -> list[_Draft]:
    used = [False] * len(excludes)
    kept = []
    for draft in drafts:
        hits = [i for i, criteria in enumerate(excludes) if _matches(criteria, draft.values)]
        for i in hits:
            used[i] = True
        if not hits:
            kept.append(draft)
    for i, was_used in enumerate(used, 1):
        if not was_used:
            cells = [draft.values for draft in drafts]
            raise _matches_nothing(file, _Place("exclude", i), excludes[i - 1], cells, "matrix cell")
    return kept


def _explicit_drafts(file: _File, defaults: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> list[_Draft]:
    drafts = []
    for number, table in enumerate(cells, 1):
        home = _Place("cell", number)
        line = file.line(home)
        origin = f"cell #{number} (line {line})" if line else f"cell #{number}"
        draft = _Draft(origin, origin, home)
        draft.merge(defaults, _Place("defaults"))
        draft.merge(table, home)
        drafts.append(draft)
    return drafts


def _apply_overrides(
    file: _File, drafts: Sequence[_Draft], overrides: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
) -> None:
    used = [False] * len(overrides)
    # Every `where` sees the cells as written, so the overrides' order only matters where two `set` the same key.
    as_written = [dict(draft.values) for draft in drafts]
    for draft, values in zip(drafts, as_written):
        for i, (where, changes) in enumerate(overrides):
            if _matches(where, values):
                draft.merge(changes, _Place("override", i + 1, ("set",)))
                used[i] = True
    for i, was_used in enumerate(used, 1):
        if not was_used:
            raise _matches_nothing(file, _Place("override", i, ("where",)), overrides[i - 1][0], as_written, "cell")


def _matches_nothing(
    file: _File, place: _Place, criteria: Mapping[str, Any], cells: Sequence[Mapping[str, Any]], what: str
) -> UserError:
    """Refuse criteria that match no cell, pointing at a key that alone matches none (usually a typo)."""
    for key, want in criteria.items():
        if not any(_matches({key: want}, values) for values in cells):
            return file.error(place / key, f"{want!r} matches no {what} (values are compared as written)")
    return file.error(place, f"no {what} has all of these values (compared as written)")


def _matches(criteria: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    return all(key in values and _accepts(want, values[key]) for key, want in criteria.items())


def _accepts(want: Any, have: Any) -> bool:
    choices = want if isinstance(want, list) else [want]
    return any(_subset(choice, have) if isinstance(choice, dict) else _same(choice, have) for choice in choices)


def _subset(want: Mapping[str, Any], have: Any) -> bool:
    return isinstance(have, Mapping) and all(key in have and _same(value, have[key]) for key, value in want.items())


def _same(a: Any, b: Any) -> bool:
    # TOML's `true` and `1` are different values, though Python says True == 1; 2 and 2.0 are the same.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _no_cells(file: _File, matrix: Mapping[str, Any], excludes: Sequence[Any]) -> UserError:
    if matrix and excludes:
        message = "the [[exclude]] tables drop every matrix cell and there is no [[cell]]"
        return file.error(_Place("matrix"), message, named=False)
    return file.error(None, "the sweep has no cells: add a [matrix] table or [[cell]] tables")


# --- Building and checking each cell -------------------------------------------------------------


def _build(file: _File, draft: _Draft, sweep_timeout: float) -> SweepCell:
    values = dict(draft.values)
    timeout = values.pop("timeout", None)
    timeout_s = sweep_timeout if timeout is None else _timeout(file, draft.sources["timeout"] / "timeout", timeout)
    try:
        config = RunConfig.from_options(values)
        # Per-workload choices (sizes, schedulers) are cheap to check now and costly to discover mid-sweep.
        workload_registry.check(config.workload, config.size, steps=config.steps, scheduler=config.scheduler)
    except UserError as exc:
        raise _blame(file, draft, str(exc)) from exc
    return SweepCell(config=config, timeout_s=timeout_s, origin=draft.origin)


_WORD = re.compile(r"(?<![\w-])(?P<dashes>--)?(?P<word>[A-Za-z][\w-]*)")
_FLAG_KEYS = {"option": "options", "label": "labels"}  # `--option`, `--label` are the tables' flags


def _culprit(message: str, given: Mapping[str, Any]) -> str | None:
    """The key a RunConfig error is about: the first flag it names that the cell sets, else the first bare key.

    Messages name flags (`--batch-size must be ≥ 1`) or keys (`unknown backend`);
    flags come first because prose may mention a key in passing ("the server
    scenario batches queries dynamically: use --max-batch instead of --batch-size").
    """
    flags: list[str] = []
    words: list[str] = []
    for found in _WORD.finditer(message):
        key = found["word"].replace("-", "_")
        if found["dashes"]:
            flags.append(_FLAG_KEYS.get(key, key))
        else:
            words.append(key)
    return next((key for key in (*flags, *words) if key in given), None)


def _blame(file: _File, draft: _Draft, message: str) -> UserError:
    """A RunConfig error re-raised at the line of the key that caused it, naming the cell when that helps."""
    key = _culprit(message, draft.sources)
    place = draft.sources[key] / key if key is not None else draft.home
    # The key's own line names the value when it sits in the cell's own table;
    # a value from [defaults] or an override, or an error about the cell as a whole, needs the cell named.
    in_own_table = (place.table, place.index) == (draft.home.table, draft.home.index)
    obvious = in_own_table and (key is not None or draft.home.table == "cell")
    return file.error(place, message if obvious else f"{message} (in {draft.label})")


def _refuse_duplicates(file: _File, drafts: Sequence[_Draft], cells: Sequence[SweepCell]) -> None:
    seen: dict[str, _Draft] = {}
    for draft, cell in zip(drafts, cells):
        identity = json.dumps([cell.config.to_dict(), cell.timeout_s], sort_keys=True, default=str)
        if identity in seen:
            raise file.error(
                draft.home,
                f"{draft.label} is identical to {seen[identity].label}: same configuration and timeout",
                named=False,
            )
        seen[identity] = draft
