"""Reading a sweep file and pointing at places in it: the `file:line[:col]: place: message` of every refusal.

tomllib returns plain dicts without positions, so a semantic error finds the
line of its key by scanning the text (`Locator`). The rest of the loader
names places (`Place`: a table, its index for `[[arrays]]`, a key path) and
raises `SourceFile.error(place, message)`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import UserError

# The most cells a sweep may have unless `--max-cells` says more. Here, in the module
# that imports no registry, so `aigcbench sweep --help` can show it without loading them.
DEFAULT_MAX_CELLS = 10_000


def read_text(path: Path) -> str:
    """The file's text, or a one-line refusal: missing, a directory, unreadable, not UTF-8."""
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


def parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(one_line(f"{path}:{_toml_error(exc, text)}")) from None
    except RecursionError:  # arrays nested thousands deep: tomllib recurses once per level
        raise UserError(f"{path}: invalid TOML: nested too deeply") from None


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


@dataclass(frozen=True)
class Place:
    """A table of the file (the N-th one, from 1, for [[arrays]]) and a key path inside it."""

    table: str
    index: int | None = None
    keys: tuple[str, ...] = ()

    def __truediv__(self, key: str) -> "Place":
        return replace(self, keys=(*self.keys, key))

    @property
    def table_name(self) -> str:
        return self.table if self.index is None else f"{self.table} #{self.index}"

    @property
    def name(self) -> str:
        return ".".join((self.table_name, *self.keys))


_HEADER = re.compile(r"^\s*\[(?P<array>\[)?\s*(?P<name>[^\[\]#=,]+?)\s*\](?(array)\])\s*(?:#.*)?$")


class Locator:
    """Finds the line of a table or key in the TOML text.

    The table's header (`[matrix]`, the N-th `[[override]]`), then the `key =`
    line in that section. A key inside an inline table (`set = { steps = 0 }`)
    points at the line holding it, with the column of the inner key. This is
    a heuristic, not a parser: when a key cannot be found the table's header
    line is used, or no line at all.
    """

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        self._headers: list[int] = []  # line index of every header, in order
        # Where each table's header is among them: the first `[table...]`, every `[[table]]`
        # (indexed once, so finding the line of each of 10 000 [[cell]] tables stays linear).
        self._first: dict[str, int] = {}
        self._arrays: dict[str, list[int]] = {}
        for number, line in enumerate(self._lines):
            found = _HEADER.match(line)
            if found:
                name = tuple(part.strip().strip("\"'") for part in found["name"].split("."))
                self._first.setdefault(name[0], len(self._headers))
                if found["array"] is not None and len(name) == 1:
                    self._arrays.setdefault(name[0], []).append(len(self._headers))
                self._headers.append(number)

    def find(self, place: Place) -> tuple[int | None, int | None]:
        """1-based (line, column) of `place`; column is None unless the key sits in an inline table."""
        section = self._section(place.table, place.index)
        if section is None:
            # The table may be written at the top level: `matrix = { ... }`, `matrix.backend = [...]`.
            top_end = self._headers[0] if self._headers else len(self._lines)
            return self._find_key(range(0, top_end), (place.table, *place.keys)) or (None, None)
        header, end = section
        if not place.keys:
            return header + 1, None
        return self._find_key(range(header + 1, end), place.keys) or (header + 1, None)

    def _section(self, table: str, index: int | None) -> tuple[int, int] | None:
        """(header line index, end line index) of `[table]`, or of the index-th `[[table]]`."""
        if index is None:
            position = self._first.get(table)
        else:
            arrays = self._arrays.get(table, [])
            position = arrays[index - 1] if 0 < index <= len(arrays) else None
        if position is None:
            return None
        end = self._headers[position + 1] if position + 1 < len(self._headers) else len(self._lines)
        return self._headers[position], end

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
class SourceFile:
    """The sweep file being loaded: its path, and where things are in its text."""

    path: Path
    locator: Locator

    def error(self, place: Place | None, message: str, *, named: bool = True) -> UserError:
        """`path:line[:col]: place: message` as one line; `named=False` leaves out the place's name."""
        line, column = self.locator.find(place) if place is not None else (None, None)
        position = "".join(f":{n}" for n in (line, column if line else None) if n)
        prefix = f"{place.name}: " if place is not None and named else ""
        return UserError(one_line(f"{self.path}{position}: {prefix}{message}"))

    def line(self, place: Place) -> int | None:
        return self.locator.find(place)[0]


def one_line(message: str) -> str:
    # The CLI contract: a UserError is exactly one line on stderr.
    return " ".join(message.splitlines())
