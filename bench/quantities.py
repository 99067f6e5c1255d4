"""Parse the quantities users type: durations (`50ms`, `2s`, `1.5`) and rates (`200`, `20000/h`).

A bare number is in the base unit (seconds, per second), so scripts can pass
plain floats; a suffix makes the command line read like the SLO it encodes.
"""

from __future__ import annotations

import math
import re

from .errors import UserError

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "min": 1 / 60, "m": 1 / 60, "h": 1 / 3600, "hour": 1 / 3600}
_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def parse_duration(text: str | float | int, flag: str) -> float:
    """Seconds from `50ms`, `0.05s`, `0.05` or a number; refuses negative or unparsable values."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(rf"\s*({_NUMBER})\s*([a-zµ]*)\s*", str(text))
        unit = match.group(2) if match else None
        if match is None or (unit and unit not in _DURATION_UNITS):
            raise UserError(f"{flag} {text!r}: expected a duration such as 50ms, 2s or 0.05 (seconds)")
        value = float(match.group(1)) * _DURATION_UNITS[unit or "s"]
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{flag} must be a finite duration ≥ 0, got {text!r}")
    return value


def parse_rate(text: str | float | int, flag: str) -> float:
    """Per second from `200`, `200/s`, `12000/min` or `20000/h`; must be > 0."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(rf"\s*({_NUMBER})\s*(?:/\s*([a-z]+))?\s*", str(text))
        unit = match.group(2) if match else None
        if match is None or (unit and unit not in _RATE_UNITS):
            raise UserError(f"{flag} {text!r}: expected a rate such as 200 (per second), 200/s or 20000/h")
        value = float(match.group(1)) * _RATE_UNITS[unit or "s"]
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{flag} must be a rate > 0, got {text!r}")
    return value
