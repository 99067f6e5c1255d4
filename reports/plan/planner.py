"""`aigcbench plan`: for a workload, a demand and a p99 SLO, every device's fleet, its cost, ranked.

For each candidate device the planner tries each batch size that fits its
memory (and each backend measured there), projects one batch's service time
with its tier (`calibration`), and sizes the fleet by simulating the server
scenario's batcher (`sizing`, `queueing`): the smallest count of devices
behind one queue whose simulated p99 meets the SLO at the peak demand plus
headroom. Per device, the configuration needing the fewest devices wins;
ties go to the better-evidenced tier, then the lower p99. Options are ranked
cheapest first among those meeting the SLO; the others follow, then the
devices that cannot run the model at all, each with its reason.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

from ...bench.errors import UserError
from ...bench.record import Record
from .calibration import Projection, Target, Tier, slowed
from .catalog import Catalog, HardwareSpec
from .devices import measured_entries, nearest_priced
from .demand import Demand
from .evidence import observations, open_loop_factors
from .pricing import Cost, PriceTerms, fleet_cost, joules_per_item, usd_per_1k
from .projector import Evidence, Unprojectable, projections
from .sizing import Sizing, cost_curves, detail_all, size_all

BATCHES = (1, 2, 4, 8, 16, 32, 64)
TIER_RANK = {Tier.MEASURED: 0, Tier.CALIBRATED: 1, Tier.ROOFLINE: 2}
PLAN_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked: validated at the CLI edge (workload choices, demand, SLO)."""

    workload: str
    family: str
    size: str
    steps: int | None
    scheduler: str | None
    precision: str
    demand: Demand
    slo_p99_s: float
    hardware: tuple[str, ...] = ()
    headroom: float = 0.2
    terms: PriceTerms = field(default_factory=PriceTerms)
    batches: tuple[int, ...] = BATCHES
    max_wait_s: float = 0.0

    @property
    def sized_rate(self) -> float:
        """The rate the fleet is sized for: the peak hour plus headroom."""
        return self.demand.peak_per_s * (1 + self.headroom)


@dataclass(frozen=True)
class Option:
    """One device's fleet: the configuration chosen, its size, its cost, and the evidence behind them."""

    spec: HardwareSpec
    projection: Projection
    sizing: Sizing
    cost: Cost
    usd_per_1k_items: float | None
    j_per_item: float | None

    @property
    def meets_slo(self) -> bool:
        return self.sizing.count is not None


@dataclass(frozen=True)
class Plan:
    request: PlanRequest
    options: tuple[Option, ...]
    excluded: tuple[Unprojectable, ...]
    calibrating_runs: tuple[str, ...] = ()
    # Per option: (demand items/s, count, $/month) at multiples of the demand — the cost-against-demand chart.
    curves: tuple[tuple[str, tuple[tuple[float, int | None, float | None], ...]], ...] = ()

    @property
    def best(self) -> Option | None:
        return self.options[0] if self.options and self.options[0].meets_slo else None

    @property
    def closest(self) -> Option | None:
        """With nothing meeting the SLO: the option whose p99 came nearest to it."""
        if not self.options:
            return None
        return min(self.options, key=lambda o: o.sizing.p99_s if o.sizing.p99_s is not None else float("inf"))


def candidate_devices(catalog: Catalog, wanted: Sequence[str]) -> list[HardwareSpec]:
    """The devices to plan for: `--hardware` ids (unknown ones refused with close names), else all."""
    return [catalog.get(device_id) for device_id in wanted] if wanted else list(catalog)


def targets(request: PlanRequest, extra_batches: Iterable[int]) -> list[Target]:
    batches = sorted({*request.batches, *extra_batches})
    return [Target(request.workload, request.family, request.size, request.steps, request.scheduler,
                   request.precision, batch) for batch in batches]


def make_plan(request: PlanRequest, records: Sequence[Record], catalog: Catalog) -> Plan:
    """The whole plan (pure of I/O: the caller reads the store and the catalog)."""
    full = catalog.with_entries(measured_entries(records, catalog))
    devices = candidate_devices(full, request.hardware)
    closed = observations(records)
    evidence = Evidence.gather(closed, full, request.family)
    loops = open_loop_factors(records, closed)
    candidates: list[Projection] = []
    excluded: list[Unprojectable] = []
    for spec in devices:
        made = projections(spec, targets(request, evidence.batches(spec, request.precision)), evidence)
        usable = [_open_loop(p, spec, evidence, loops) for p in made if isinstance(p, Projection)]
        if usable:
            candidates.extend(usable)
        else:
            excluded.append(_why_not(spec, made))
    check_slo(request, candidates)
    sized = _size(candidates, request)
    best = _best_per_device(sized)
    details = detail_all([(p, z.count) for p, z in best.values()], request.sized_rate, request.demand.peak_per_s,
                         request.slo_p99_s, request.max_wait_s)
    options = [_option(full, request, full.get(hardware), projection, sizing)
               for (hardware, (projection, _)), sizing in zip(best.items(), details)]
    ranked = sorted(options, key=_rank)
    runs = sorted({run for o in ranked for run in o.projection.evidence})
    return Plan(request, tuple(ranked), tuple(excluded), tuple(runs), _curves(request, ranked))


def _curves(request: PlanRequest, ranked: Sequence[Option]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Each option's configuration sized at multiples of the demand, priced like the option itself."""
    shown = [o for o in ranked if o.meets_slo]
    found = cost_curves([(o.projection, o.sizing.count) for o in shown], request.demand.peak_per_s, request.headroom,
                        request.slo_p99_s, request.max_wait_s)
    curves = []
    for option, points in zip(shown, found):
        priced = []
        for demand, count in points:
            usd = None
            if count is not None and option.cost.usd_per_month is not None and option.sizing.count:
                # Cloud cost is linear in the count; a purchase's energy share scales with it, near enough.
                usd = option.cost.usd_per_month * count / option.sizing.count
            priced.append((demand, count, usd))
        curves.append((option.spec.id, tuple(priced)))
    return tuple(curves)


def _size(candidates: Sequence[Projection], request: PlanRequest) -> list[tuple[Projection, Sizing]]:
    """Counts for every candidate worth simulating, in two vectorised rounds.

    First the smallest batch per device and backend, and every measured
    configuration; then a larger batch only where it could need fewer
    devices: its stability bound, floor(rate × mean service / batch) + 1, is a
    count no simulation can beat, so a batch whose bound is not below the
    first round's count cannot win (ties go to the smaller batch) and is not
    simulated. Nor is a batch whose time per item is no shorter than the
    smallest batch's: it carries no more items per device and makes every
    query wait at least as long (a compute-bound CPU gains nothing by batching).
    """
    def first(p: Projection) -> bool:
        return p.target.batch == smallest[(p.hardware, p.target.backend)] or p.tier is Tier.MEASURED

    smallest: dict[tuple[str, str | None], int] = {}
    for p in candidates:
        key = (p.hardware, p.target.backend)
        smallest[key] = min(smallest.get(key, p.target.batch), p.target.batch)
    rate, slo, wait = request.sized_rate, request.slo_p99_s, request.max_wait_s
    sized = size_all([p for p in candidates if first(p)], rate, slo, wait)
    best: dict[str, float] = {}
    for p, z in sized:
        best[p.hardware] = min(best.get(p.hardware, math.inf), z.count if z.count is not None else math.inf)
    per_item = {(p.hardware, p.target.backend): p.median_s / p.target.batch for p, _ in sized
                if p.target.batch == smallest[(p.hardware, p.target.backend)]}
    rest = [p for p in candidates if not first(p) and p.median_s <= slo
            and p.median_s / p.target.batch < per_item.get((p.hardware, p.target.backend), math.inf)
            and math.floor(rate * statistics.fmean(p.service_s) / p.target.batch) + 1 < best.get(p.hardware, math.inf)]
    return sized + size_all(rest, rate, slo, wait)


def _open_loop(projection: Projection, spec: HardwareSpec, evidence: Evidence, loops: dict) -> Projection:
    """Slow a projection from this device's closed-loop records by its measured open-loop factor, if any."""
    hosts = {o.hardware for o in evidence.observations(spec)}
    if len(hosts) != 1 or next(iter(hosts)) not in loops:
        return projection
    loop = loops[next(iter(hosts))]
    return slowed(projection, loop.factor, loop.run_ids)


def _why_not(spec: HardwareSpec, made: Sequence[Projection | Unprojectable]) -> Unprojectable:
    reasons = [p.reason for p in made if isinstance(p, Unprojectable)]
    # The smallest batch's reason is the one that matters: if batch 1 does not fit, nothing does.
    return Unprojectable(spec.id, reasons[0] if reasons else "nothing to project from")


def check_slo(request: PlanRequest, candidates: Sequence[Projection]) -> None:
    """Refuse an SLO no device can meet with even one batch in flight (bad input, exit 2), saying the numbers."""
    if not candidates:
        return
    fastest = min(candidates, key=lambda p: p.median_s)
    if fastest.median_s <= request.slo_p99_s:
        return
    measured = [p for p in candidates if p.tier is Tier.MEASURED]
    shown = min(measured, key=lambda p: p.median_s) if measured else fastest
    raise UserError(
        f"--slo-p99 {request.slo_p99_s:g}s is shorter than one batch's service time on every candidate: "
        f"{shown.hardware} takes {shown.median_s:.3g} s ({shown.tier.value}, batch {shown.target.batch})"
        + ("" if fastest.median_s >= shown.median_s
           else f"; the fastest, {fastest.hardware}, {fastest.median_s:.3g} s ({fastest.tier.value})")
    )


def _best_per_device(sized: Sequence[tuple[Projection, Sizing]]) -> dict[str, tuple[Projection, Sizing]]:
    best: dict[str, tuple[Projection, Sizing]] = {}
    for projection, sizing in sized:
        current = best.get(projection.hardware)
        if current is None or _config_key(projection, sizing) < _config_key(*current):
            best[projection.hardware] = (projection, sizing)
    return best


def _config_key(projection: Projection, sizing: Sizing) -> tuple[Any, ...]:
    count = sizing.count if sizing.count is not None else float("inf")
    p99 = sizing.p99_s if sizing.p99_s is not None else float("inf")
    return (count, TIER_RANK[projection.tier], p99, projection.target.batch)


def _option(catalog: Catalog, request: PlanRequest, spec: HardwareSpec, projection: Projection,
            sizing: Sizing) -> Option:
    priced, borrowed = spec, None
    # A measured machine has no price of its own: it borrows its look-alike's, and says so.
    # A catalog entry without a price stays unpriced: its sources found none.
    if spec.origin == "measured" and spec.cloud_usd_per_hour is None and spec.launch_price_usd is None:
        donor = nearest_priced(spec, catalog)
        if donor is not None:
            priced = replace(spec, cloud_usd_per_hour=donor.cloud_usd_per_hour,
                             launch_price_usd=donor.launch_price_usd, tdp_w=spec.tdp_w or donor.tdp_w)
            borrowed = donor.id
    count = sizing.count or 0
    cost = fleet_cost(count, cloud_usd_per_hour=priced.cloud_usd_per_hour, launch_price_usd=priced.launch_price_usd,
                      tdp_w=priced.tdp_w, utilisation=sizing.utilisation or 0.0, terms=request.terms,
                      price_from=borrowed) if sizing.count else Cost(None, None, None)
    return Option(spec, projection, sizing, cost, usd_per_1k(cost.usd_per_month, request.demand.items_per_month),
                  joules_per_item(priced.tdp_w, projection.median_s, sizing.mean_batch or 0.0))


def _rank(option: Option) -> tuple[Any, ...]:
    """Meeting the SLO first; then cheapest (unpriced after priced); then fewer devices; then better evidence."""
    usd = option.cost.usd_per_month
    return (not option.meets_slo, usd is None, usd if usd is not None else 0.0,
            option.sizing.count or 0, TIER_RANK[option.projection.tier], option.spec.id)
