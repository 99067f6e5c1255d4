"""The sweep file's grammar: which tables and keys exist, and the checks each table gets before expansion.

Everything here looks at the file as written — one table at a time, never a
cell — so it runs before the matrix is expanded and its cost does not grow
with the number of cells. Values that `RunConfig` understands are left to it
(every cell is built into one); this module checks what RunConfig never sees:
the file's shape, the loader's own keys (`timeout`, `memory_limit`, `python`, `hardware`), the
match criteria of `[[exclude]]` and `where`, and numbers TOML allows but no
option does (`inf`, `nan`, integers beyond 64 bits).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..backends import registry as backend_registry
from ..backends.base import PRECISIONS
from ..workloads import registry as workload_registry
from ..workloads.base import SIZES
from . import scenarios
from .config import OPTION_KEYS
from .errors import UserError
from .quantities import parse_duration
from .resources import parse_memory_limit
from .sweep_text import Place, SourceFile

DEFAULT_TIMEOUT_S = 1800.0
TABLES = ("sweep", "defaults", "matrix", "exclude", "override", "cell")
# A cell's keys the loader takes itself (where and how its worker runs); the rest go to RunConfig.
LOADER_KEYS = ("timeout", "memory_limit", "python", "hardware")
SWEEP_KEYS = ("name", "description", "timeout", "memory_limit")  # python, hardware: in [defaults]
CELL_KEYS = (*OPTION_KEYS, *LOADER_KEYS)
MERGED_KEYS = ("options", "labels")  # tables that merge key by key instead of being replaced
_INT64 = 2**63  # TOML integers are 64-bit; tomllib reads longer ones without complaint


@dataclass(frozen=True)
class SweepSettings:
    """The [sweep] table: the sweep's name and description, and every cell's default limits."""

    name: str | None
    description: str | None
    timeout_s: float
    memory_limit_bytes: int | None


# --- The registries, read once per file ----------------------------------------------------------


def _schedulers() -> tuple[str, ...]:
    found: dict[str, None] = {}
    for name in workload_registry.names():
        found.update(dict.fromkeys(workload_registry.get(name).schedulers))
    return tuple(found)


_REGISTRIES: dict[str, Callable[[], Sequence[str]]] = {
    "workload": workload_registry.names,
    "backend": backend_registry.names,
    "size": lambda: SIZES,
    "precision": lambda: PRECISIONS,
    "scenario": lambda: tuple(scenarios.SCENARIOS),
    "scheduler": _schedulers,  # any workload's: which workload a criterion means is not known here
}


class Names:
    """The names each named key may take, from the registries, each resolved on first use and then kept."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, ...]] = {}

    def __contains__(self, key: str) -> bool:
        return key in _REGISTRIES

    def __getitem__(self, key: str) -> tuple[str, ...]:
        if key not in self._known:
            self._known[key] = tuple(_REGISTRIES[key]())
        return self._known[key]


def check_name(file: SourceFile, place: Place, key: str, value: Any, names: Names) -> None:
    """Refuse a value of a named key (backend, workload, ...) that no registry knows."""
    if not isinstance(value, str):
        raise file.error(place, f"must be a string, got {value!r}")
    known = names[key]
    if value not in known:
        raise file.error(place, f"unknown {key} {value!r}; choose from: {', '.join(known)}{did_you_mean(value, known)}")


# --- The file's shape ----------------------------------------------------------------------------


def check_tables(file: SourceFile, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if key not in TABLES:
            raise file.error(Place(key), f"unknown table{did_you_mean(key, TABLES)}; allowed: {', '.join(TABLES)}")
        if key in ("sweep", "defaults", "matrix") and not isinstance(value, dict):
            raise file.error(Place(key), f"must be a [{key}] table, got {value!r}")


def check_numbers(file: SourceFile, data: Mapping[str, Any]) -> None:
    """Refuse `inf`, `nan` and over-long integers anywhere: no option, limit or label takes them."""
    for place, value in _leaves(data):
        if isinstance(value, float) and not math.isfinite(value):
            raise file.error(place, f"numbers must be finite, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            raise file.error(place, "integer out of TOML's 64-bit range")


def _leaves(data: Mapping[str, Any]) -> Iterator[tuple[Place, Any]]:
    """Every scalar of the document with the place that holds it; a list's items share the list's place."""
    for table, value in data.items():
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):  # [[exclude]] and friends
            for index, item in enumerate(value, 1):
                yield from _walk(Place(table, index), item)
        else:
            yield from _walk(Place(table), value)


def _walk(place: Place, value: Any) -> Iterator[tuple[Place, Any]]:
    # Iterative: TOML nests arrays as deep as the parser allows, deeper than Python's recursion limit.
    pending = [(place, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, dict):
            pending.extend((where / key, inner) for key, inner in item.items())
        elif isinstance(item, list):
            pending.extend((where, inner) for inner in item)
        else:
            yield where, item


def array(file: SourceFile, data: Mapping[str, Any], table: str) -> list[dict[str, Any]]:
    value = data.get(table, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise file.error(Place(table), f"must be [[{table}]] tables, got {value!r}")
    return value


def check_keys(file: SourceFile, place: Place, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in table:
        if key not in allowed:
            raise file.error(place / key, f"unknown key{did_you_mean(key, allowed)}; known: {', '.join(allowed)}")


def did_you_mean(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- The tables ----------------------------------------------------------------------------------


def sweep_settings(file: SourceFile, table: Mapping[str, Any]) -> SweepSettings:
    place = Place("sweep")
    check_keys(file, place, table, SWEEP_KEYS)
    name, description = table.get("name"), table.get("description")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise file.error(place / "name", f"must be a non-empty string, got {name!r}")
    if description is not None and not isinstance(description, str):
        raise file.error(place / "description", f"must be a string, got {description!r}")
    timeout = timeout_s(file, place / "timeout", table["timeout"]) if "timeout" in table else DEFAULT_TIMEOUT_S
    memory = memory_limit(file, place / "memory_limit", table["memory_limit"]) if "memory_limit" in table else None
    return SweepSettings(name, description, timeout, memory)


def cell_values(file: SourceFile, place: Place, table: Mapping[str, Any]) -> dict[str, Any]:
    """Check a table of cell keys ([defaults], [[cell]], `set`). Option values are left to RunConfig."""
    check_keys(file, place, table, CELL_KEYS)
    for key, value in table.items():
        _check_special(file, place / key, key, value)
    return dict(table)


def _check_special(file: SourceFile, place: Place, key: str, value: Any) -> None:
    """The keys RunConfig does not see as written: the merged tables and the loader's own keys."""
    if key in MERGED_KEYS:
        _check_pairs(file, place, key, value)
    elif key == "timeout":
        timeout_s(file, place, value)
    elif key == "memory_limit":
        memory_limit(file, place, value)
    elif key in ("python", "hardware"):
        _name(file, place, key, value)


def _check_pairs(file: SourceFile, place: Place, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise file.error(place, f"must be a table such as {key} = {{ name = \"value\" }}, got {value!r}")
    for name, item in value.items():
        if isinstance(item, (dict, list)) or not isinstance(item, (str, int, float, bool)):
            raise file.error(place / name, f"values must be strings, numbers or booleans, got {item!r}")


def timeout_s(file: SourceFile, place: Place, value: Any) -> float:
    """A cell's worker timeout in seconds: a number, or a duration such as "90s", "10m", "1h"."""
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


def memory_limit(file: SourceFile, place: Place, value: Any) -> int:
    """A cell's memory limit in bytes, from "8GiB", "512MiB", "1.5GB" or whole bytes."""
    try:
        return parse_memory_limit(value, "memory_limit")
    except UserError as exc:
        # The place names the key already: keep the reason, not parse_memory_limit's own prefix.
        raise file.error(place, str(exc).removeprefix("memory_limit: ")) from None


# What a Ray custom resource may be called (`hardware = "nvidia-l4"`); also a hardware key's alphabet.
_RESOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def _name(file: SourceFile, place: Place, key: str, value: Any) -> str:
    """`python` (an interpreter's path) or `hardware` (the kind of machine a cell is pinned to): a string."""
    if not isinstance(value, str) or not value.strip():
        raise file.error(place, f"must be a non-empty string, got {value!r}")
    if key == "hardware" and not _RESOURCE.fullmatch(value):
        raise file.error(place, f"must be a resource name such as \"nvidia-l4\" (letters, digits, _.:-), got {value!r}")
    return value


def matrix_shape(file: SourceFile, table: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """The matrix's keys and value lists, checked only as far as counting its cells needs."""
    if table is None:
        return {}
    place = Place("matrix")
    if not table:
        raise file.error(place, "is empty: give at least one key a list of values, e.g. backend = [\"pytorch\"]")
    check_keys(file, place, table, CELL_KEYS)
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise file.error(place / key, f"must be a non-empty list of values, one per cell, got {values!r}")
    return dict(table)


def check_matrix_values(file: SourceFile, matrix: Mapping[str, list[Any]]) -> None:
    """Each matrix value as a cell value, and no value listed twice (after the cell count is known to be sane)."""
    for key, values in matrix.items():
        seen: set[Any] = set()
        for value in values:
            _check_special(file, Place("matrix") / key, key, value)
            identity = value_identity(value)
            if identity in seen:
                raise file.error(Place("matrix") / key, f"{value!r} is listed twice")
            seen.add(identity)


def value_identity(value: Any) -> Any:
    """A hashable stand-in for a TOML value, equal exactly when `same` says the values are the same.

    Strings and numbers stand for themselves (2 and 2.0 are the same value);
    the rest become tagged tuples, which no TOML scalar equals.
    """
    if isinstance(value, bool):  # TOML's `true` and `1` are different values, though Python says True == 1
        return ("bool", value)
    if isinstance(value, dict):
        return ("table", tuple(sorted((k, value_identity(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(value_identity(v) for v in value))
    return value


def criteria(file: SourceFile, place: Place, table: Any, names: Names) -> dict[str, Any]:
    """Check an [[exclude]] table or a `where` table: cell keys with a value, or a list of values (any of).

    Named keys (backend, workload, size, ...) are checked against the
    registries: a typo in one value of an any-of list would otherwise simply
    never match, and the list would look like it works.
    """
    if not isinstance(table, dict) or not table:
        example = '{ workload = "ddpm" }'
        raise file.error(place, f"must be a non-empty table of keys to match, such as {example}, got {table!r}")
    check_keys(file, place, table, CELL_KEYS)
    for key, want in table.items():
        choices = want if isinstance(want, list) else [want]
        if not choices:
            raise file.error(place / key, "an empty list matches nothing")
        for choice in choices:
            if key in MERGED_KEYS:
                _check_pairs(file, place / key, key, choice)
            elif isinstance(choice, (dict, list)):
                raise file.error(place / key, f"must be a value or a list of values (any of), got {want!r}")
            elif key in names:
                check_name(file, place / key, key, choice, names)
    return dict(table)


def override(
    file: SourceFile, place: Place, table: Mapping[str, Any], names: Names
) -> tuple[dict[str, Any], dict[str, Any]]:
    check_keys(file, place, table, ("where", "set"))
    for key in ("where", "set"):
        if key not in table:
            raise file.error(place, "needs both where = { ... } (which cells) and set = { ... } (what to change)")
    changes = table["set"]
    if not isinstance(changes, dict) or not changes:
        raise file.error(place / "set", f"must be a non-empty table such as {{ steps = 4 }}, got {changes!r}")
    return criteria(file, place / "where", table["where"], names), cell_values(file, place / "set", changes)
