"""`aigcbench plan --validate`: how wrong would a projection have been? Leave-one-out over measured cells.

For every measured cell in the selection, drop it — and every other record
with its cell key, so a rerun cannot vouch for itself — then project its
configuration on its own device from what remains, exactly as `plan` would
(calibrated from the neighbours, else roofline with the prior), and set the
projection beside the measurement. The throughput compared is items per
second of one device running back to back: the projection's batch / median
service time against the record's own `throughput_items_per_s`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any, Sequence

from ...bench.record import Record
from ..select import cell_label
from .calibration import project, target_of
from .catalog import Catalog
from .devices import measured_entries
from .costmodel import NoRoofline
from .evidence import Observation, observations
from .projector import Evidence, roofline, spec_of


@dataclass(frozen=True)
class ValidationRow:
    cell: str
    label: str
    hardware: str
    projected: float
    measured: float
    tier: str
    distance: int

    @property
    def error(self) -> float:
        """Signed relative error of the projection: (projected − measured) / measured."""
        return (self.projected - self.measured) / self.measured


@dataclass(frozen=True)
class Validation:
    rows: tuple[ValidationRow, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (cell label, why it could not be re-projected)

    @property
    def median_abs_error(self) -> float | None:
        return statistics.median(abs(r.error) for r in self.rows) if self.rows else None

    @property
    def worst(self) -> ValidationRow | None:
        return max(self.rows, key=lambda r: abs(r.error)) if self.rows else None


def validate(selected: Sequence[Record], everything: Sequence[Record], catalog: Catalog) -> Validation:
    """Leave-one-out re-projection of each measured cell in `selected`, with `everything` as the evidence."""
    full = catalog.with_entries(measured_entries(everything, catalog))
    pool = observations(everything)
    labels = {r.run_id: cell_label(r) for r in selected}
    newest: dict[str, Observation] = {}
    for observation in observations(selected):
        if observation.throughput and (observation.cell not in newest
                                       or observation.created_at > newest[observation.cell].created_at):
            newest[observation.cell] = observation
    evidence = {family: Evidence.gather(pool, full, family) for family in {o.family for o in newest.values()}}
    rows, skipped = [], []
    for observation in newest.values():
        label = labels.get(observation.run_id, observation.cell)
        row = _reproject(observation, label, evidence[observation.family].without(observation.cell), full)
        if isinstance(row, str):
            skipped.append((label, row))
        else:
            rows.append(row)
    return Validation(tuple(rows), tuple(skipped))


def _reproject(observation: Observation, label: str, evidence: Evidence, catalog: Catalog) -> ValidationRow | str:
    spec = spec_of(observation, catalog)
    if spec is None:
        return "no roofline for its device (run `aigcbench calibrate` on that machine)"
    target = target_of(observation, exact=True)
    try:
        found = roofline(spec, replace(target, precision=observation.precision_run))
    except NoRoofline as exc:
        return exc.reason
    made = project(spec.id, spec.kind, target, found.seconds, evidence.observations(spec),
                   evidence.measured_efficiencies(spec), prior_precision=found.precision_run)
    if made is None:
        return "nothing to project from"
    assert observation.throughput is not None
    return ValidationRow(observation.cell, label, spec.id, observation.batch / made.median_s,
                         observation.throughput, made.tier.value, made.distance)


def validation_dict(result: Validation) -> dict[str, Any]:
    """The rows as the CLI's --json writes them (cell, hardware, projected, measured, error, tier), and the summary."""
    worst = result.worst
    return {
        "rows": [{"cell": r.cell, "label": r.label, "hardware": r.hardware, "projected": r.projected,
                  "measured": r.measured, "error": r.error, "tier": r.tier, "distance": r.distance}
                 for r in result.rows],
        "median_abs_error": result.median_abs_error,
        "worst_abs_error": abs(worst.error) if worst else None,
        "worst_cell": worst.label if worst else None,
        "skipped": [{"cell": label, "reason": why} for label, why in result.skipped],
    }


def validation_table(result: Validation) -> Any:
    """A rich table: one row per cell, then the median and worst absolute error."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="leave-one-out validation: projected vs measured throughput (items/s)", title_justify="left")
    for column, justify in (("cell", "left"), ("tier", "left"), ("projected", "right"), ("measured", "right"),
                            ("error", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in sorted(result.rows, key=lambda r: r.label):
        table.add_row(escape(r.label), f"{r.tier} (d={r.distance})", f"{r.projected:.4g}", f"{r.measured:.4g}",
                      f"{r.error:+.0%}")
    worst = result.worst
    if worst is not None:
        table.caption = (f"{len(result.rows)} cells · median |error| {result.median_abs_error:.0%} · "
                         f"worst |error| {abs(worst.error):.0%} ({escape(worst.label)})"
                         + (f" · {len(result.skipped)} cells could not be re-projected" if result.skipped else ""))
    return table
