"""The parity table `make bench` prints: one row per (backend, model, reference tool).

A ratio under the target is flagged in the row, never turned into a failed
test: on a shared 2-core machine a timing threshold would fail at random. The
flag is what a reviewer reads; the raw rounds stay on the `Parity` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from parity import Parity

TARGET_RATIO = 0.97
HEADER = ("backend", "model", "reference tool", "ours calls/s", "ours median ms",
          "ref calls/s", "ref median ms", "ratio", "ratio min-max", "note")
LEGEND = (
    f"ratio: median over rounds of our calls/s / the reference's (target ≥ {TARGET_RATIO}, flagged, not asserted);",
    "  each round runs our loop, then the reference, for the same seconds; min-max is the rounds' spread.",
    "calls/s and medians: medians over rounds. benchmark_app's median is OpenVINO's in-request latency",
    "  (no Python call); onnxruntime_test prints no median and does not warm up (its first call counts).",
)


@dataclass(frozen=True)
class Skipped:
    """A comparison that could not run here, with why (a tool or library not installed)."""

    backend: str
    model: str
    reference: str
    reason: str


def format_table(rows: Sequence[Parity | Skipped]) -> list[str]:
    """The table as text lines, columns aligned, followed by how to read it."""
    cells = [HEADER] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines + list(LEGEND)


def _cells(row: Parity | Skipped) -> tuple[str, ...]:
    if isinstance(row, Skipped):
        return (row.backend, row.model, row.reference, *["-"] * 6, f"skipped: {row.reason}")
    return (
        row.backend,
        row.model,
        row.reference,
        f"{row.ours_calls_per_s:.1f}",
        _ms(row.ours_median_ms),
        f"{row.theirs_calls_per_s:.1f}",
        _ms(row.theirs_median_ms),
        f"{row.ratio:.3f}",
        f"{min(row.ratios):.2f}-{max(row.ratios):.2f}",
        f"below {TARGET_RATIO} target" if row.ratio < TARGET_RATIO else "",
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
