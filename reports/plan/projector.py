"""Every projection the planner can make: devices, their evidence, and a batch service time per configuration.

A device is a catalog entry or a measured one (`aigcbench calibrate`). Its
evidence is the closed-loop records measured on it (`evidence`), resolved by
hardware key and device kind; a catalog GPU also borrows, one class away, the
records of any host whose GPU matches it by name. A record's efficiency needs
a roofline of the device it ran on: its measured ceilings, or for a GPU the
catalog entry its name matches; a CPU never calibrated has none, so its
records count as `measured` evidence only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from .calibration import Efficiency, Projection, Target, efficiencies, project, target_of
from .catalog import Catalog, HardwareSpec
from .devices import match_gpu
from .costmodel import NoRoofline, Roofline
from .costs import model_for
from .evidence import Observation


@dataclass(frozen=True)
class Unprojectable:
    """Why a device has no projection for a target (no peak for its precision, too little memory...)."""

    hardware: str
    reason: str


def spec_of(observation: Observation, catalog: Catalog) -> HardwareSpec | None:
    """The device an observation ran on: its measured entry, else (a GPU) the catalog entry of its name."""
    cuda = observation.device.startswith("cuda")
    ids = [observation.hardware] if cuda else [f"{observation.hardware}/cpu", observation.hardware]
    for spec_id in ids:
        if spec_id in catalog:
            spec = catalog.get(spec_id)
            if spec.origin == "measured" and (spec.kind == "gpu") == cuda:
                return spec
    if cuda and observation.gpu_name:
        found = match_gpu(observation.gpu_name, catalog)
        return catalog.get(found) if found else None
    return None


def roofline(spec: HardwareSpec, target: Target) -> Roofline:
    """Roofline of one batch of the target on `spec` (NoRoofline when the spec cannot give one)."""
    model = model_for(target.workload, target.size, target.steps, target.scheduler)
    return model.roofline(target.batch, target.precision, spec)


def roofline_s(spec: HardwareSpec, target: Target) -> float:
    return roofline(spec, target).seconds


def memory_needed(target: Target) -> int:
    return model_for(target.workload, target.size, target.steps, target.scheduler).memory_bytes(
        target.batch, target.precision)


@dataclass(frozen=True)
class Evidence:
    """The observations of one workload family, each resolved to the device it ran on, with efficiencies."""

    by_spec: dict[str, list[Observation]]
    efficiencies: dict[str, list[Efficiency]]

    @classmethod
    def gather(cls, observations: Iterable[Observation], catalog: Catalog, family: str) -> "Evidence":
        by_spec: dict[str, list[Observation]] = {}
        efficiency_by_spec: dict[str, list[Efficiency]] = {}
        for observation in observations:
            if observation.family != family:
                continue
            spec = spec_of(observation, catalog)
            if spec is None:
                continue
            by_spec.setdefault(spec.id, []).append(observation)
            found = efficiencies([observation], lambda o: _observed_roofline(o, spec))
            for efficiency in found:
                efficiency_by_spec.setdefault(spec.id, []).append(efficiency)
                if spec.gpu_catalog_id:  # one class away: the catalog GPU of the same name
                    efficiency_by_spec.setdefault(spec.gpu_catalog_id, []).append(replace(efficiency, via_class=True))
        return cls(by_spec, efficiency_by_spec)

    def without(self, cell: str) -> "Evidence":
        """The same evidence with one cell's records left out (leave-one-out validation)."""
        return Evidence(
            {k: [o for o in v if o.cell != cell] for k, v in self.by_spec.items()},
            {k: [e for e in v if e.observation.cell != cell] for k, v in self.efficiencies.items()},
        )

    def observations(self, spec: HardwareSpec) -> list[Observation]:
        return self.by_spec.get(spec.id, [])

    def measured_efficiencies(self, spec: HardwareSpec) -> list[Efficiency]:
        return self.efficiencies.get(spec.id, [])

    def backends(self, spec: HardwareSpec, precision: str) -> list[str | None]:
        """The backends measured on this device at this precision (None: a spec-sheet projection)."""
        seen = sorted({o.backend for o in self.observations(spec) if o.precision == precision})
        return list(seen) or [None]

    def batches(self, spec: HardwareSpec, precision: str) -> set[int]:
        return {o.batch for o in self.observations(spec) if o.precision == precision}


def _observed_roofline(observation: Observation, spec: HardwareSpec) -> float | None:
    try:
        return roofline_s(spec, target_of(observation, precision=observation.precision_run))
    except NoRoofline:
        return None


def projections(spec: HardwareSpec, targets: Sequence[Target], evidence: Evidence) -> list[Projection | Unprojectable]:
    """One projection per target on `spec` (with each backend measured there), or why there is none."""
    made_all: list[Projection | Unprojectable] = []
    for target in targets:
        needed = memory_needed(target)
        if spec.memory_bytes is not None and needed > spec.memory_bytes:
            made_all.append(Unprojectable(spec.id, f"needs ≥ {needed / 1e9:.3g} GB at {target.precision} batch "
                                                   f"{target.batch}, has {spec.memory_bytes / 1e9:.3g} GB"))
            continue
        reason, seconds, run = "", None, target.precision
        try:
            found = roofline(spec, target)
            seconds, run = found.seconds, found.precision_run
        except NoRoofline as exc:
            reason = exc.reason
        for backend in evidence.backends(spec, target.precision):
            made = project(spec.id, spec.kind, replace(target, backend=backend), seconds,
                           evidence.observations(spec), evidence.measured_efficiencies(spec), prior_precision=run)
            made_all.append(made if made is not None else Unprojectable(spec.id, reason))
    return made_all
