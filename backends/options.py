"""Parsing `--option KEY=VALUE` values, with one-line errors that say what is accepted.

Backends declare their option names in `Backend.options` (the harness refuses
unknown names); these helpers check the values.
"""

from __future__ import annotations

from typing import Mapping, Sequence, TypeVar

from ..bench.errors import UserError

T = TypeVar("T")


def choice(options: Mapping[str, str], key: str, allowed: Sequence[str], default: str) -> str:
    value = options.get(key, default).strip().lower()
    if value not in allowed:
        raise UserError(f"--option {key}={options[key]}: choose from {', '.join(allowed)}")
    return value


def boolean(options: Mapping[str, str], key: str, default: bool = False) -> bool:
    if key not in options:
        return default
    value = options[key].strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UserError(f"--option {key}={options[key]}: expected true or false")


def positive_int(options: Mapping[str, str], key: str) -> int:
    try:
        number = int(options[key])
    except ValueError:
        number = 0
    if number < 1:
        raise UserError(f"--option {key}={options[key]}: expected an integer ≥ 1")
    return number


def positive_float(options: Mapping[str, str], key: str) -> float:
    try:
        number = float(options[key])
    except ValueError:
        number = 0.0
    if not number > 0:
        raise UserError(f"--option {key}={options[key]}: expected a number > 0")
    return number
