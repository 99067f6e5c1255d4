"""The measurements a plan can stand on: closed-loop records reduced to batch service times.

A `latency` or `throughput` record's raw samples are the wall time of one
batch call, back to back — exactly the service time a server's batcher pays
per batch, so they drive the queueing simulation as they are. A `server`
record's latencies include queueing and are not service times; ceiling
records (`aigcbench calibrate`) are the device's own limits, not a workload.
Both are left out here. Only `ok` records count: an invalid record failed the
fidelity gate and must never size a fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Mapping

from ...bench.record import Record
from ..metrics import METRICS
from ..select import cell_key

CLOSED_LOOP = ("latency", "throughput")


@dataclass(frozen=True)
class Observation:
    """One measured configuration: what ran, where, and its batch service times (seconds)."""

    run_id: str
    cell: str
    hardware: str
    device: str
    backend: str
    precision: str
    precision_run: str
    batch: int
    workload: str
    family: str
    size: str
    steps: int | None
    scheduler: str | None
    service_s: tuple[float, ...]
    throughput: float | None
    created_at: str
    gpu_name: str | None = None

    @cached_property
    def median_s(self) -> float:
        # Read in every projection and sizing of the plan: sorted once.
        ordered = sorted(self.service_s)
        return ordered[len(ordered) // 2]


def observations(records: Iterable[Record]) -> list[Observation]:
    """The usable measurements among `records`, in their order."""
    found = []
    for record in records:
        observation = observe(record)
        if observation is not None:
            found.append(observation)
    return found


def observe(record: Record) -> Observation | None:
    """The record as a service-time measurement, or None when it is not one (see the module docstring)."""
    scenario = record.scenario or {}
    if record.status != "ok" or scenario.get("name") not in CLOSED_LOOP:
        return None
    samples = tuple(s for s in METRICS["latency_p50_s"].raw(record) if s > 0)
    if not samples:
        return None
    backend: Mapping[str, Any] = record.backend or {}
    options: Mapping[str, Any] = backend.get("options") or {}
    return Observation(
        run_id=record.run_id,
        cell=cell_key(record),
        **what_ran(record),
        precision_run=str(options.get("precision_run") or backend.get("precision")),
        batch=int(scenario.get("batch_size") or 1),
        family=str((record.workload or {}).get("family")),
        service_s=samples,
        throughput=METRICS["throughput_items_per_s"].value(record),
        created_at=record.created_at,
        gpu_name=_gpu_name(record),
    )


# What two records must share to have measured one configuration on one machine (the batch aside).
TWIN_FIELDS = ("hardware", "device", "workload", "size", "steps", "scheduler", "backend", "precision")


def what_ran(record: Record) -> dict[str, Any]:
    """The TWIN_FIELDS of a record, with the workload's *effective* steps and scheduler."""
    workload: Mapping[str, Any] = record.workload or {}
    config: Mapping[str, Any] = workload.get("config") or {}
    backend: Mapping[str, Any] = record.backend or {}
    return {
        "hardware": str(record.environment.get("hardware_key")), "device": str(backend.get("device")),
        "workload": str(workload.get("name")), "size": str(workload.get("size")),
        "steps": config.get("steps"), "scheduler": config.get("scheduler"),
        "backend": str(backend.get("name")), "precision": str(backend.get("precision")),
    }


def _gpu_name(record: Record) -> str | None:
    """The name NVML gave the GPU a CUDA record ran on (the first, or the one its device index names)."""
    device = str((record.backend or {}).get("device") or "")
    if not device.startswith("cuda"):
        return None
    gpus = record.environment.get("gpus") or []
    index = device.partition(":")[2]
    chosen = [g for g in gpus if str(g.get("index", "")) == index] or gpus
    return chosen[0].get("name") if chosen else None


@dataclass(frozen=True)
class OpenLoop:
    """How much slower a hardware key's batches ran in a `server` run than back to back, and from which runs.

    A server's batches arrive at random, with idle gaps between them; on a CPU
    (clocks and caches cooling) they then run slower than in a closed loop, and
    a plan from closed-loop samples alone would be optimistic by that much.
    `factor` is the median over matching pairs of (the served trial's batch
    p50 / the closed-loop median of the same configuration).
    """

    factor: float
    run_ids: tuple[str, ...]


def open_loop_factors(records: Iterable[Record], closed: Iterable[Observation]) -> dict[str, OpenLoop]:
    """Per hardware key, the open-loop slowdown measured by `server` records that have a closed-loop twin."""
    twins = {(*(getattr(o, f) for f in TWIN_FIELDS), o.batch): o for o in sorted(closed, key=lambda o: o.created_at)}
    pairs: dict[str, list[tuple[float, str, str]]] = {}
    for record in records:
        server = (record.metrics or {}).get("server") or {}
        served = server.get("service_p50_s")
        if record.status != "ok" or (record.scenario or {}).get("name") != "server" or not served:
            continue
        ran = what_ran(record)
        twin = twins.get((*(ran[f] for f in TWIN_FIELDS), int(server.get("max_batch") or 1)))
        if twin is not None:
            pairs.setdefault(twin.hardware, []).append((float(served) / twin.median_s, record.run_id, twin.run_id))
    found = {}
    for hardware, seen in pairs.items():
        ratios = sorted(r for r, _, _ in seen)
        found[hardware] = OpenLoop(ratios[len(ratios) // 2], tuple(run for _, *runs in seen for run in runs))
    return found

