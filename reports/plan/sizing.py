"""How many devices a projection needs: the queueing simulation applied to the planner's candidates.

For a candidate (one device, backend, precision and batch size, with its
projected batch service times) the count is the smallest number of devices
behind one queue whose simulated p99 meets the SLO at the sized rate (peak
plus headroom) — `queueing.servers_needed`. The band on the count and on the
capacity comes from the same simulation with the service times scaled to
the ends of the projection's band: the fast end needs fewer devices, the slow
end more. Utilisation, p99 and the mean batch are simulated at the peak
itself, with the chosen count: what the fleet will see on its busiest hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import queueing
from .calibration import Projection

QUERIES = 20_000
# The ends of a band, and one device's capacity, are themselves ±tens of percent: a shorter
# simulation and a looser search serve them (the fleet's own count and capacity use the full one).
BAND_QUERIES = 5_000
BAND_TOLERANCE = 0.05
CURVE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
# Capacity bands need not be finer than this: the band itself is tens of percent wide.
CAPACITY_TOLERANCE = 0.02


@dataclass(frozen=True)
class Band:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Sizing:
    """A candidate's fleet: count (None: no count meets the SLO), its band, and what it sees at the peak."""

    count: int | None
    count_low: int | None = None
    count_high: int | None = None
    p99_s: float | None = None
    utilisation: float | None = None
    mean_batch: float | None = None
    capacity: Band | None = None
    per_device: Band | None = None
    reason: str | None = None


def scaled(projection: Projection, to_s: float) -> np.ndarray:
    """The projection's service samples scaled so their median is `to_s`."""
    return np.asarray(projection.service_s, dtype=float) * (to_s / projection.median_s)


def counts(candidates: Sequence[Projection], rates: Sequence[float], slo_s: float, max_wait_s: float,
           medians: Sequence[float] | None = None, queries: int = QUERIES) -> list[int | None]:
    """The smallest fleet meeting the SLO per (candidate, rate), in one vectorised search (None: no count does)."""
    if not candidates:
        return []
    medians = medians if medians is not None else [p.median_s for p in candidates]
    found = queueing.servers_needed_many([scaled(p, m) for p, m in zip(candidates, medians)], list(rates), slo_s,
                                         max_batch=[p.target.batch for p in candidates], max_wait_s=max_wait_s,
                                         queries=queries)
    return [count for count, _ in found]


def size_all(candidates: Sequence[Projection], rate: float, slo_s: float,
             max_wait_s: float) -> list[tuple[Projection, Sizing]]:
    """A count per candidate (the planner picks per device, then `detail_all` fills in the chosen ones)."""
    found = counts(candidates, [rate] * len(candidates), slo_s, max_wait_s)
    return [(p, Sizing(count)) for p, count in zip(candidates, found)]


def detail_all(chosen: Sequence[tuple[Projection, int | None]], sized_rate: float, peak_rate: float, slo_s: float,
               max_wait_s: float) -> list[Sizing]:
    """Band, capacity, utilisation and p99 at the peak for the chosen candidates, all simulations batched."""
    met = [(p, c) for p, c in chosen if c is not None]
    projections = [p for p, _ in met]
    fleet = [c for _, c in met]
    n = len(met)
    ends = counts(projections * 2, [sized_rate] * (2 * n), slo_s, max_wait_s,
                  [p.low_s for p in projections] + [p.high_s for p in projections], queries=BAND_QUERIES)
    peak = queueing.simulate_many([scaled(p, p.median_s) for p in projections], [peak_rate] * n,
                                  max_batch=[p.target.batch for p in projections], max_wait_s=max_wait_s,
                                  servers=fleet, queries=QUERIES) if n else ()
    # Capacity of the fleet and of one device, at the median and at the two ends of the band.
    scales = [(p, m, servers) for servers in (fleet, [1] * n) for m in ("median_s", "high_s", "low_s")
              for p in projections]
    servers = [c for group in (fleet, [1] * n) for _ in range(3) for c in group]
    batches = [p.target.batch for p, _, _ in scales]
    samples = [scaled(p, getattr(p, m)) for p, m, _ in scales]
    caps = []
    if n:
        caps = list(queueing.capacities(samples[:n], slo_s, max_batch=batches[:n], max_wait_s=max_wait_s,
                                        servers=servers[:n], tolerance=CAPACITY_TOLERANCE, queries=QUERIES))
        caps += queueing.capacities(samples[n:], slo_s, max_batch=batches[n:], max_wait_s=max_wait_s,
                                    servers=servers[n:], tolerance=BAND_TOLERANCE, queries=BAND_QUERIES)
    rates = [c.rate_qps for c in caps]
    sized = iter(range(n))
    out = []
    for projection, count in chosen:
        if count is None:
            out.append(_unmet(projection, slo_s))
            continue
        i = next(sized)
        fleet_band = Band(rates[i], rates[n + i], rates[2 * n + i])
        device_band = Band(rates[3 * n + i], rates[4 * n + i], rates[5 * n + i])
        out.append(Sizing(count, ends[i], ends[n + i], _finite(peak[i].p99_s), peak[i].utilisation,
                          peak[i].mean_batch, fleet_band, device_band))
    return out


def _unmet(projection: Projection, slo_s: float) -> Sizing:
    """No count meets the SLO: say why, with the tail of one batch's service time."""
    p99 = float(np.quantile(np.asarray(projection.service_s), 0.99, method="inverted_cdf"))
    return Sizing(None, p99_s=p99, reason=(f"one batch of {projection.target.batch} takes {p99:.3g} s at p99 "
                                           f"(median {projection.median_s:.3g} s): over the SLO of {slo_s:.3g} s "
                                           "with no queueing at all"))


def cost_curves(chosen: Sequence[tuple[Projection, int]], demand_per_s: float, headroom: float, slo_s: float,
                max_wait_s: float) -> list[list[tuple[float, int | None]]]:
    """Per chosen (candidate, its count at the demand): (demand items/s, count) at multiples of the demand."""
    others = [f for f in CURVE_FACTORS if f != 1.0]
    flat = counts([p for p, _ in chosen for _ in others],
                  [demand_per_s * f * (1 + headroom) for _ in chosen for f in others], slo_s, max_wait_s,
                  queries=BAND_QUERIES)
    curves = []
    for i, (_, count) in enumerate(chosen):
        found = dict(zip(others, flat[i * len(others):(i + 1) * len(others)]))
        curves.append([(demand_per_s * f, count if f == 1.0 else found[f]) for f in CURVE_FACTORS])
    return curves


def _finite(value: float | None) -> float | None:
    return value if value is not None and np.isfinite(value) else None
