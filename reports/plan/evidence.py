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

    @property
    def median_s(self) -> float:
        ordered = sorted(self.service_s)
        return ordered[len(ordered) // 2]

    @property
    def config(self) -> tuple[Any, ...]:
        """What the cell ran, with the workload's *effective* steps (a record may store `steps: null` for the default)."""
        return (self.workload, self.size, self.steps, self.scheduler, self.backend, self.precision, self.batch,
                self.device)


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
    workload: Mapping[str, Any] = record.workload or {}
    config: Mapping[str, Any] = workload.get("config") or {}
    backend: Mapping[str, Any] = record.backend or {}
    options: Mapping[str, Any] = backend.get("options") or {}
    return Observation(
        run_id=record.run_id,
        cell=cell_key(record),
        hardware=str(record.environment.get("hardware_key")),
        device=str(backend.get("device")),
        backend=str(backend.get("name")),
        precision=str(backend.get("precision")),
        precision_run=str(options.get("precision_run") or backend.get("precision")),
        batch=int(scenario.get("batch_size") or 1),
        workload=str(workload.get("name")),
        family=str(workload.get("family")),
        size=str(workload.get("size")),
        steps=config.get("steps"),
        scheduler=config.get("scheduler"),
        service_s=samples,
        throughput=METRICS["throughput_items_per_s"].value(record),
        created_at=record.created_at,
        gpu_name=_gpu_name(record),
    )


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
    twins = {(o.hardware, o.device, o.config[:6], o.batch): o for o in sorted(closed, key=lambda o: o.created_at)}
    pairs: dict[str, list[tuple[float, str, str]]] = {}
    for record in records:
        server = (record.metrics or {}).get("server") or {}
        served = server.get("service_p50_s")
        if record.status != "ok" or (record.scenario or {}).get("name") != "server" or not served:
            continue
        probe = observe_config(record, int(server.get("max_batch") or 1))
        twin = twins.get(probe)
        if twin is not None:
            pairs.setdefault(twin.hardware, []).append((float(served) / twin.median_s, record.run_id, twin.run_id))
    found = {}
    for hardware, seen in pairs.items():
        ratios = sorted(r for r, _, _ in seen)
        found[hardware] = OpenLoop(ratios[len(ratios) // 2], tuple(run for _, *runs in seen for run in runs))
    return found


def observe_config(record: Record, batch: int) -> tuple[Any, ...]:
    """(hardware, device, the first six fields of Observation.config, batch) of any record: its twin's key."""
    workload: Mapping[str, Any] = record.workload or {}
    config: Mapping[str, Any] = workload.get("config") or {}
    backend: Mapping[str, Any] = record.backend or {}
    return (str(record.environment.get("hardware_key")), str(backend.get("device")),
            (str(workload.get("name")), str(workload.get("size")), config.get("steps"), config.get("scheduler"),
             str(backend.get("name")), str(backend.get("precision"))), batch)
