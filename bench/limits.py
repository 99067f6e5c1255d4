"""The range of every numeric option of a cell, stated once: checked at the edge, shown in `--help`.

`RunConfig.from_options` is the one translation from what a user typed (on the
command line or in a sweep file) to a cell, so every number passes through
`check` there, before a store is opened or a worker started: a value that is
not a number, not finite (`inf`, `nan`; TOML and Python's float() accept
both) or out of range is one line naming the option and its limit. Left
unchecked, such values surfaced much later — an infinite duration as a
traceback in the record writer, an enormous batch as a failed allocation in
the worker, a seed past 2**32 as a numpy overflow — and some of those became
stored `failed` records that then blocked the cell on resume.

The upper bounds are generous: far beyond any real measurement, they exist to
turn a typo (an extra zero, a unit slip) into an answer at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import UserError

DAY_S = 86_400.0


@dataclass(frozen=True)
class Bound:
    """low ≤ value ≤ high (low excluded when `above`), a whole number when `integer`."""

    key: str  # as `RunConfig.from_options` spells it; the flag is derived from it
    low: float
    high: float
    integer: bool = False
    above: bool = False  # the value must be > low, not ≥ low
    below: bool = False  # the value must be < high, not ≤ high
    unit: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def check(self, value: Any) -> Any:
        """The value unchanged if it is in range, else a one-line UserError naming the option and the range."""
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.integer and not isinstance(value, int)):
            raise UserError(f"{self.flag} must be {kind} {self.describe()}, got {value!r}", key=self.key)
        if not math.isfinite(value):
            raise UserError(f"{self.flag} must be finite, {self.describe()}; got {value!r}", key=self.key)
        if (value <= self.low if self.above else value < self.low) or (
                value >= self.high if self.below else value > self.high):
            raise UserError(f"{self.flag} must be {self.describe()}, got {value!r}", key=self.key)
        return value

    def describe(self) -> str:
        """The range as `--help` and the errors state it: "from 1 to 65536", "> 0 and ≤ 86400 s"."""
        unit = f" {self.unit}" if self.unit else ""
        if self.above:
            return f"> {_number(self.low)} and {'<' if self.below else '≤'} {_number(self.high)}{unit}"
        return f"from {_number(self.low)} to {_number(self.high)}{unit}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# Keys as `RunConfig.from_options` spells them. A duration is in seconds after
# parsing ("50ms" → 0.05); a rate in queries per second.
_ALL = (
    Bound("batch_size", 1, 65_536, integer=True),
    Bound("steps", 1, 10_000, integer=True),
    # 2**32 − 1: the largest seed every RNG a workload seeds accepts (numpy's legacy seeding among them).
    Bound("seed", 0, 2**32 - 1, integer=True),
    Bound("duration", 0, 7 * DAY_S, unit="s"),
    Bound("min_iterations", 1, 100_000_000, integer=True),
    Bound("max_iterations", 1, 1_000_000_000, integer=True),
    Bound("max_duration", 0, 7 * DAY_S, above=True, unit="s"),
    Bound("target_rel_iqr", 0, 1, above=True, below=True),
    Bound("warmup", 0, 10_000_000, integer=True),
    Bound("warmup_duration", 0, DAY_S, unit="s"),
    Bound("rate", 0, 1e9, above=True, unit="queries/s"),
    Bound("max_batch", 1, 65_536, integer=True),
    Bound("max_wait", 0, 3_600, unit="s"),
    Bound("slo_p99", 0, DAY_S, above=True, unit="s"),
    Bound("timeout", 0, 30 * DAY_S, above=True, unit="s"),
    # Workload parameters (`workloads/params.py`).
    Bound("guidance", 0, 100),
    Bound("prompt_tokens", 1, 131_072, integer=True),
    Bound("new_tokens", 1, 65_536, integer=True),
    Bound("frames", 1, 1_024, integer=True),
)
BOUNDS: dict[str, Bound] = {bound.key: bound for bound in _ALL}


def check(key: str, value: Any) -> Any:
    """`BOUNDS[key].check(value)`; None (an option left to its default) passes."""
    return None if value is None else BOUNDS[key].check(value)


def range_help(key: str) -> str:
    """The range for a `--help` text: "(from 1 to 65536)"."""
    return f"({BOUNDS[key].describe()})"
