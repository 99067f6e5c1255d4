"""Expanding a sweep file into cells: the matrix's cross product, exclusions, explicit cells, overrides.

The cell count is known from the matrix's list lengths alone, so a matrix
over the cap is refused (`check_cell_count`) before a single cell is built:
ten keys of ten values are 10^10 cells, and that must cost nothing to refuse.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .sweep_tables import MERGED_KEYS, value_identity
from .sweep_text import Place, SourceFile


@dataclass
class Draft:
    """A cell's raw values while they are merged, remembering which table set each key last."""

    origin: str
    home: Place  # the table the cell comes from
    combination: Mapping[str, Any] | None = None  # a matrix cell's own values
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Place] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The origin plus, for a matrix cell, its combination: for error messages (so built only for them)."""
        if self.combination is None:
            return self.origin
        return f"{self.origin} ({', '.join(f'{key}={value}' for key, value in self.combination.items())})"

    def merge(self, values: Mapping[str, Any], place: Place) -> None:
        for key, value in values.items():
            if key in MERGED_KEYS:
                value = {**self.values.get(key, {}), **value}
            self.values[key] = value
            self.sources[key] = place


MATRIX, DEFAULTS = Place("matrix"), Place("defaults")


def check_cell_count(file: SourceFile, matrix: Mapping[str, list[Any]], explicit: int, max_cells: int) -> int:
    """The number of cells before exclusions; over `max_cells` it is refused with the count."""
    in_matrix = math.prod(len(values) for values in matrix.values()) if matrix else 0
    total = in_matrix + explicit
    if total > max_cells:
        sizes = " × ".join(str(len(values)) for values in matrix.values())
        parts = [f"{sizes} matrix cells"] if matrix else []
        parts += [f"{explicit} [[cell]] tables"] if explicit else []
        raise file.error(
            Place("matrix") if matrix else None,
            f"{total:,} cells ({' + '.join(parts)}) exceed the cap of {max_cells:,}; "
            "raise it with --max-cells N, or split the sweep",
            named=False,
        )
    return total


def matrix_drafts(defaults: Mapping[str, Any], matrix: Mapping[str, list[Any]]) -> list[Draft]:
    if not matrix:
        return []
    drafts = []
    # itertools.product varies the last key fastest; dicts keep the file's key order.
    for number, combination in enumerate(itertools.product(*matrix.values()), 1):
        chosen = dict(zip(matrix, combination))
        draft = Draft(f"matrix #{number}", MATRIX, chosen)
        draft.merge(defaults, DEFAULTS)
        draft.merge(chosen, MATRIX)
        drafts.append(draft)
    return drafts


def exclude(file: SourceFile, drafts: list[Draft], excludes: Sequence[Mapping[str, Any]]) -> list[Draft]:
    cells = [draft.values for draft in drafts]
    for i, criteria in enumerate(excludes, 1):
        refuse_unmatched(file, Place("exclude", i), criteria, cells, "matrix cell")
    return [draft for draft in drafts if not any(matches(criteria, draft.values) for criteria in excludes)]


def explicit_drafts(file: SourceFile, defaults: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> list[Draft]:
    drafts = []
    for number, table in enumerate(cells, 1):
        home = Place("cell", number)
        line = file.line(home)
        origin = f"cell #{number} (line {line})" if line else f"cell #{number}"
        draft = Draft(origin, home)
        draft.merge(defaults, DEFAULTS)
        draft.merge(table, home)
        drafts.append(draft)
    return drafts


def apply_overrides(
    file: SourceFile, drafts: Sequence[Draft], overrides: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
) -> None:
    # Every `where` sees the cells as written, so the overrides' order only matters where two `set` the same key.
    as_written = [dict(draft.values) for draft in drafts]
    for i, (where, _) in enumerate(overrides, 1):
        refuse_unmatched(file, Place("override", i, ("where",)), where, as_written, "cell")
    for draft, values in zip(drafts, as_written):
        for i, (where, changes) in enumerate(overrides, 1):
            if matches(where, values):
                draft.merge(changes, Place("override", i, ("set",)))


def refuse_unmatched(
    file: SourceFile, place: Place, criteria: Mapping[str, Any], cells: Sequence[Mapping[str, Any]], what: str
) -> None:
    """Refuse criteria that match no cell, or a value of an any-of list that no cell has: almost always a typo.

    Each value is looked for alone, then the whole table together, so the
    message points at the value that is wrong rather than at the table.
    """
    for key, want in criteria.items():
        present = _values_of(key, cells)
        for choice in want if isinstance(want, list) else [want]:
            if not _found(choice, present):
                raise file.error(place / key, f"{choice!r} matches no {what} (values are compared as written)")
    if not any(matches(criteria, values) for values in cells):
        raise file.error(place, f"no {what} has all of these values (compared as written)")


def _values_of(key: str, cells: Sequence[Mapping[str, Any]]) -> tuple[set[Any], list[Any]]:
    """The distinct values the cells hold for `key`: hashed scalars, and the tables (matched by subset)."""
    scalars: set[Any] = set()
    tables: dict[Any, Any] = {}
    for values in cells:
        if key in values:
            have = values[key]
            if isinstance(have, Mapping):
                tables.setdefault(value_identity(dict(have)), have)
            else:
                scalars.add(value_identity(have))
    return scalars, list(tables.values())


def _found(choice: Any, present: tuple[set[Any], list[Any]]) -> bool:
    scalars, tables = present
    if isinstance(choice, dict):
        return any(_subset(choice, have) for have in tables)
    return value_identity(choice) in scalars


def matches(criteria: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    return all(key in values and _accepts(want, values[key]) for key, want in criteria.items())


def _accepts(want: Any, have: Any) -> bool:
    choices = want if isinstance(want, list) else [want]
    return any(_subset(choice, have) if isinstance(choice, dict) else same(choice, have) for choice in choices)


def _subset(want: Mapping[str, Any], have: Any) -> bool:
    return isinstance(have, Mapping) and all(key in have and same(value, have[key]) for key, value in want.items())


def same(a: Any, b: Any) -> bool:
    # TOML's `true` and `1` are different values, though Python says True == 1; 2 and 2.0 are the same.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def no_cells(file: SourceFile, matrix: Mapping[str, Any], excludes: Sequence[Any]) -> Exception:
    if matrix and excludes:
        message = "the [[exclude]] tables drop every matrix cell and there is no [[cell]]"
        return file.error(Place("matrix"), message, named=False)
    return file.error(None, "the sweep has no cells: add a [matrix] table or [[cell]] tables")
