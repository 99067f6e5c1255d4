"""What the fleet must serve: a steady rate (`20000/h`) or a 24-hour profile whose peak hour sizes it.

A profile file holds 24 hourly demands in items per hour — one number per
line, or a CSV whose last column is the number (a header row such as
`hour,items` is skipped). The fleet is sized for the peak hour (a fleet that
meets the SLO at the peak meets it in every other hour, since p99 only falls
with load); the monthly bill and the cost per 1000 items use the average over
the day, because that is what the fleet actually serves.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from ...bench.errors import UserError
from ...bench.quantities import parse_rate

HOURS = 24
HOURS_PER_MONTH = 730  # 8760 h / 12, the convention of cloud price sheets


@dataclass(frozen=True)
class Demand:
    """Items per second at the peak hour and on average; `hourly` is the profile (None for a steady rate)."""

    peak_per_s: float
    mean_per_s: float
    text: str
    hourly: tuple[float, ...] | None = None

    @property
    def items_per_month(self) -> float:
        return self.mean_per_s * 3600 * HOURS_PER_MONTH

    def describe(self) -> str:
        if self.hourly is None:
            return f"{self.text} ({self.peak_per_s * 3600:,.0f} items/h)"
        return (f"profile {self.text}: peak {self.peak_per_s * 3600:,.0f} items/h, "
                f"mean {self.mean_per_s * 3600:,.0f} items/h")


def parse_demand(text: str, flag: str = "--demand") -> Demand:
    """A rate such as `20000/h`, or the path of a 24-row hourly profile; UserError (exit 2) otherwise."""
    path = Path(text)
    if path.is_file():
        hourly = read_profile(path, flag)
        peak, mean = max(hourly) / 3600, sum(hourly) / HOURS / 3600
        if peak <= 0:
            raise UserError(f"{flag} {text}: every hour of the profile is 0; nothing to serve")
        return Demand(peak, mean, str(path), hourly)
    rate = parse_rate(text, flag)
    return Demand(rate, rate, text)


def read_profile(path: Path, flag: str) -> tuple[float, ...]:
    """24 hourly item counts from a file, refusing anything else with the line at fault."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag} {path}: cannot read the profile ({exc})") from None
    values: list[float] = []
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cell = row[-1].strip()
        try:
            value = float(cell)
        except ValueError:
            if not values and number == 1:  # a header row
                continue
            raise UserError(f"{flag} {path} line {number}: {cell!r} is not a number of items per hour") from None
        if not math.isfinite(value) or value < 0:
            raise UserError(f"{flag} {path} line {number}: an hourly demand must be ≥ 0, got {cell}")
        values.append(value)
    if len(values) != HOURS:
        raise UserError(f"{flag} {path}: a profile has {HOURS} hourly rows (items per hour), this one has {len(values)}")
    return tuple(values)
