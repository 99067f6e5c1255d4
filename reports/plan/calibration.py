"""From measurements to projections: efficiencies, tiers and bands.

An *efficiency* is roofline time / measured time (`costmodel`): the share of
the device's ceilings a backend reaches on a workload. A projection of a batch
service time on a device says how far it is from a measurement — its tier —
and carries a band on its median, by these rules (the README repeats them):

- `measured`: this hardware ran this exact configuration (workload, size,
  steps, scheduler, backend, precision, batch, device). The samples are the
  record's own; the band is the 95 % order-statistic CI of their median
  (min..max with fewer than six samples), never narrower than ±2 %.
- `calibrated`: this hardware (or another host with the same catalog GPU)
  measured a neighbouring configuration of the same workload family. The time
  is roofline(target) / efficiency, the efficiency being the median of the
  nearest measurements' efficiencies. Distance counts what differs: batch,
  steps or scheduler 1 each, size 2, backend 2, precision 2, workload 3, and a
  class (another host) 2. The band is ×/÷ exp(spread + 0.10 × distance), where
  spread is the largest |log| deviation of those efficiencies from their
  median (at least 0.05). The samples are the nearest measurement's, scaled,
  so the projected tail has a measured shape.
- `roofline`: only the spec sheet. The time is roofline / prior efficiency for
  the device kind and precision (`priors`: derived from cited public
  timings); the band is roofline / prior.high .. roofline / prior.low; the
  service time is taken as steady (the band, not the tail, carries the doubt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import Callable, Iterable, Sequence

from .evidence import Observation
from .priors import Prior, prior

BAND_FLOOR = 0.02
MIN_SPREAD = 0.05
WIDENING_PER_STEP = 0.10
CLASS_DISTANCE = 2
DISTANCE_WEIGHTS = {
    "batch": 1, "steps": 1, "scheduler": 1, "size": 2, "backend": 2, "precision": 2, "workload": 3,
}


class Tier(str, Enum):
    MEASURED = "measured"
    CALIBRATED = "calibrated"
    ROOFLINE = "roofline"


@dataclass(frozen=True)
class Target:
    """The configuration a projection is for (backend None: any backend, as a spec-sheet projection assumes)."""

    workload: str
    family: str
    size: str
    steps: int | None
    scheduler: str | None
    precision: str
    batch: int
    backend: str | None = None
    device: str | None = None

    def fields(self) -> dict[str, object]:
        return {"workload": self.workload, "size": self.size, "steps": self.steps, "scheduler": self.scheduler,
                "backend": self.backend, "precision": self.precision, "batch": self.batch}


def target_of(observation: Observation, *, precision: str | None = None, exact: bool = False) -> Target:
    """The configuration an observation measured (`exact`: its backend and device too; `precision`: instead of its own)."""
    o = observation
    return Target(o.workload, o.family, o.size, o.steps, o.scheduler, precision or o.precision, o.batch,
                  o.backend if exact else None, o.device if exact else None)


@dataclass(frozen=True)
class Projection:
    """One batch's service time on one device: samples for the simulation, a median with its band, its tier."""

    hardware: str
    tier: Tier
    target: Target
    service_s: tuple[float, ...]
    median_s: float
    low_s: float
    high_s: float
    roofline_s: float | None = None
    efficiency: float | None = None
    distance: int = 0
    evidence: tuple[str, ...] = ()
    prior: Prior | None = None
    open_loop_factor: float | None = None

    @property
    def band(self) -> float:
        """Relative half-width of the band in log terms (for tie-breaking: narrower is better evidence)."""
        return math.log(self.high_s / self.low_s) / 2 if self.low_s > 0 else math.inf


def slowed(projection: Projection, factor: float, runs: Sequence[str]) -> Projection:
    """The projection as a server would see it: service times × the measured open-loop factor (see evidence.OpenLoop).

    Only a projection from this hardware's closed-loop records is slowed; the
    tier is unchanged and the runs that measured the factor join its evidence.
    """
    if projection.tier is Tier.ROOFLINE or factor <= 0:
        return projection
    return replace(projection, service_s=tuple(s * factor for s in projection.service_s),
                   median_s=projection.median_s * factor, low_s=projection.low_s * factor,
                   high_s=projection.high_s * factor, open_loop_factor=factor,
                   evidence=tuple(dict.fromkeys([*projection.evidence, *runs])))


# Roofline time of a target on a device (seconds per batch), or None when the device cannot be projected.
RooflineFn = Callable[[Target], "float | None"]


@dataclass(frozen=True)
class Efficiency:
    """A measurement's roofline / measured ratio, with the observation it came from."""

    observation: Observation
    value: float
    via_class: bool = False


def efficiencies(observations: Iterable[Observation], roofline_of: Callable[[Observation], float | None]) -> list[Efficiency]:
    """The efficiency of each observation whose device has a roofline (measured ceilings or a catalog entry)."""
    found = []
    for observation in observations:
        roofline = roofline_of(observation)
        if roofline is not None and roofline > 0:
            found.append(Efficiency(observation, roofline / observation.median_s))
    return found


def distance(observation: Observation, target: Target) -> int:
    """How far a measurement is from the target, by the weights in DISTANCE_WEIGHTS."""
    theirs = {"workload": observation.workload, "size": observation.size, "steps": observation.steps,
              "scheduler": observation.scheduler, "backend": observation.backend,
              "precision": observation.precision, "batch": observation.batch}
    ours = target.fields()
    return sum(weight for key, weight in DISTANCE_WEIGHTS.items()
               if ours[key] is not None and theirs[key] != ours[key])


def measured(hardware: str, target: Target, observations: Sequence[Observation]) -> Projection | None:
    """The exact configuration measured on this hardware (the newest rerun), or None."""
    exact = [o for o in observations if o.family == target.family and distance(o, target) == 0
             and (target.device is None or o.device == target.device)]
    if not exact:
        return None
    chosen = max(exact, key=lambda o: o.created_at)
    low, high = median_band(chosen.service_s)
    return Projection(hardware, Tier.MEASURED, replace(target, backend=chosen.backend), chosen.service_s,
                      chosen.median_s, low, high, evidence=(chosen.run_id,))


def median_band(samples: Sequence[float]) -> tuple[float, float]:
    """The 95 % CI of the median (min..max with < 6 samples), widened to at least ±BAND_FLOOR."""
    from ..report import median_ci

    ordered = sorted(samples)
    median = ordered[len(ordered) // 2]
    ci = median_ci(ordered)
    low, high = (ci.low, ci.high) if ci is not None else (ordered[0], ordered[-1])
    return min(low, median * (1 - BAND_FLOOR)), max(high, median * (1 + BAND_FLOOR))


def calibrated(hardware: str, target: Target, roofline_s: float | None,
               measured_here: Sequence[Efficiency]) -> Projection | None:
    """roofline(target) / the efficiency of the nearest measurements of the same family, or None."""
    if roofline_s is None:
        return None
    usable = [e for e in measured_here if e.observation.family == target.family]
    if not usable:
        return None
    ranked = [(distance(e.observation, target) + (CLASS_DISTANCE if e.via_class else 0), e) for e in usable]
    nearest = min(d for d, _ in ranked)
    group = [e for d, e in ranked if d == nearest]
    values = sorted(e.value for e in group)
    efficiency = values[len(values) // 2]
    spread = max([MIN_SPREAD, *(abs(math.log(v / efficiency)) for v in values)])
    width = spread + WIDENING_PER_STEP * nearest
    median = roofline_s / efficiency
    shape = min(group, key=lambda e: abs(math.log(e.value / efficiency))).observation
    samples = tuple(s * median / shape.median_s for s in shape.service_s)
    backend = target.backend or shape.backend
    return Projection(hardware, Tier.CALIBRATED, replace(target, backend=backend), samples, median,
                      median * math.exp(-width), median * math.exp(width), roofline_s, efficiency, nearest,
                      tuple(e.observation.run_id for e in group))


def from_roofline(hardware: str, kind: str, target: Target, roofline_s: float,
                  prior_precision: str | None = None) -> Projection:
    """Spec sheet only: roofline / the cited prior efficiency for this kind of device and the precision run.

    The prior is looked up by the precision whose peak the roofline used
    (`prior_precision`: after fallback, TF32 for fp32 convolutions), since
    that is the peak the published timings were divided by.
    """
    chosen = prior(kind, prior_precision or target.precision)
    median = roofline_s / chosen.efficiency
    return Projection(hardware, Tier.ROOFLINE, target, (median,), median, roofline_s / chosen.high,
                      roofline_s / chosen.low, roofline_s, chosen.efficiency, prior=chosen)


def project(hardware: str, kind: str, target: Target, roofline_s: float | None,
            observations: Sequence[Observation], measured_here: Sequence[Efficiency],
            prior_precision: str | None = None) -> Projection | None:
    """The best-evidenced projection: measured, else calibrated, else roofline (None: nothing to go on)."""
    return (measured(hardware, target, observations)
            or calibrated(hardware, target, roofline_s, measured_here)
            or (from_roofline(hardware, kind, target, roofline_s, prior_precision)
                if roofline_s is not None else None))
