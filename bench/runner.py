"""Run one measurement cell: workload × backend × config → one immutable Record.

The order matters and is the measurement protocol:

1. refuse what cannot run (unknown option, missing library, absent device);
2. build the workload from config and count its FLOPs and parameters;
3. compute the fidelity reference (eager fp32 on CPU) *before* the backend
   takes ownership of the modules;
4. cold start, timed separately: prepare (export/compile/build), first call;
5. warm-up, then the measured loop inside the probes;
6. the fidelity gate on a fixed seeded batch;
7. statistics derived from the raw samples, and the record.

A failure in steps 4–6 becomes a `failed` record with the reason rather than
an exception, so a sweep always gets a result for every cell.
"""

from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from ..backends import registry as backend_registry
from ..backends import onnx_export
from ..backends.base import Backend, PrepareContext, Session
from ..workloads import registry as workload_registry
from ..workloads.base import Batch, Workload
from ..workloads.flops import flops_per_item, param_count
from . import scenarios
from .clock import Clock, perf_clock
from .config import RunConfig
from .device_timer import device_timer_for
from .errors import BackendUnavailable, UserError
from .fidelity import FIDELITY_BATCH, FIDELITY_SEED_OFFSET, gate
from .measure import LoopResult, warm_up
from .probes.device_memory import DeviceMemoryProbe
from .probes.energy import EnergyProbe
from .probes.environment import fingerprint, git_commit
from .probes.gpu_state import GpuStateProbe
from .probes.host_memory import HostMemoryProbe
from .record import Record
from .stats import instability_warning, summarize

if TYPE_CHECKING:
    import torch

_BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2}


class RunObserver(Protocol):
    """Receives progress while a cell runs (the CLI shows it with rich)."""

    def stage(self, text: str) -> None: ...

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None: ...


class _Silent:
    def stage(self, text: str) -> None:
        pass

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None:
        pass


@dataclass
class _Measured:
    """What the protected phases produce; filled in as they complete."""

    cold_start_s: dict[str, float]
    warmup: dict[str, Any] | None = None
    loop: LoopResult | None = None
    component_ns: dict[str, list[int]] | None = None
    probes: dict[str, Any] | None = None
    fidelity: dict[str, Any] | None = None
    session_info: dict[str, Any] | None = None
    exports: dict[str, Any] | None = None
    probe_window_ns: int = 0
    probe_warnings: list[str] = field(default_factory=list)


class _TimedComponent:
    """Times every call of one component inside the pipeline (per-step denoiser latency).

    It synchronizes the session before reading the clock, like the loop does;
    on a CPU backend that is free, on a GPU it costs one wait per call.
    """

    def __init__(self, session: Session, clock: Clock, sink: list[int]) -> None:
        self._session, self._clock, self._sink = session, clock, sink

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        start = self._clock()
        out = self._session(*inputs)
        self._session.synchronize()
        self._sink.append(self._clock() - start)
        return out


def run_cell(config: RunConfig, *, clock: Clock = perf_clock, observer: RunObserver | None = None) -> Record:
    """Measure one cell and return its record (status ok, invalid or failed).

    Raises `UserError` / `BackendUnavailable` only for what is refused before
    anything is measured.
    """
    observer = observer or _Silent()
    backend = preflight(config)
    observer.stage(f"building {config.workload} ({config.size})")
    start = clock()
    workload = workload_registry.build(
        config.workload,
        config.size,
        config.seed,
        steps=config.steps,
        scheduler=config.scheduler,
        weights=Path(config.weights) if config.weights else None,
    )
    build_s = (clock() - start) / 1e9
    warnings = _ignored_option_warnings(workload, config)
    workload_info = _describe_workload(workload, config)
    # No larger than the measured batch, so a backend built for that shape can run it as is.
    check_size = min(FIDELITY_BATCH, config.effective_batch_size)
    check_batch = workload.make_batch(check_size, config.seed + FIDELITY_SEED_OFFSET)
    reference = None
    if backend.computes_model:
        observer.stage("computing the fidelity reference (eager fp32, cpu)")
        reference = _eager_outputs(workload, check_batch)

    measured = _Measured(cold_start_s={"build": build_s})
    sessions: dict[str, Session] = {}
    try:
        _measure(workload, backend, config, clock, observer, sessions, measured, check_batch, reference)
        status, reason = _verdict(measured.fidelity, measured.loop)
        error: str | None = None
    except Exception as exc:  # a failing backend is a result, not a crash (see module docstring)
        status, reason = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
        error = traceback.format_exc()
    finally:
        for session in sessions.values():
            session.close()
    return _record(config, backend, workload_info, measured, status, reason, warnings, error)


def failure_record(config: RunConfig, reason: str, metadata: Mapping[str, Any]) -> Record:
    """A `failed` record for a cell whose worker never returned one (crash, hang, kill).

    It carries what is known without running anything: the config, the
    environment, and the workload and backend as named, so the cell is stored,
    reported and skipped on resume like any other.
    """
    backend = backend_registry.get(config.backend)
    config_dict = config.to_dict()
    return Record(
        status="failed",
        reason=reason,
        workload={
            "name": config.workload,
            "size": config.size,
            "unit": workload_registry.get(config.workload).unit,
            "params": None,
            "flops_per_item": None,
        },
        backend={
            "name": backend.name,
            "version": backend.version(),
            "device": config.device,
            "precision": config.precision,
            "options": {"requested": dict(config.options)},
        },
        scenario={
            "name": config.scenario,
            "batch_size": config.effective_batch_size,
            "stop_rule": config_dict["stop"],
            "warmup_rule": config_dict["warmup"],
        },
        environment=fingerprint(),
        metrics={},
        samples={"latency_s": []},
        labels=dict(config.labels),
        config=config_dict,
        metadata=dict(metadata),
        git_commit=git_commit(),
    )


def preflight(config: RunConfig) -> Backend:
    """Refuse, cheaply and before anything is built or stored, what cannot run; return the backend."""
    workload_registry.check(config.workload, config.size, steps=config.steps, scheduler=config.scheduler)
    backend = backend_registry.get(config.backend)
    why = backend.available()
    if why is not None:
        raise BackendUnavailable(f"backend {config.backend} is unavailable: {why}")
    unknown = sorted(set(config.options) - set(backend.options))
    if unknown:
        known = ", ".join(sorted(backend.options)) or "none"
        raise UserError(f"backend {config.backend} has no option {unknown[0]!r}; known options: {known}")
    backend.check_options(config.options)
    if backend.input_format == "onnx":
        onnx_export.check_exporter(config.options)
    backend.check(config.device, config.precision)
    return backend


def _ignored_option_warnings(workload: Workload, config: RunConfig) -> list[str]:
    if workload.iterative:
        return []
    ignored = [flag for flag, value in (("--steps", config.steps), ("--scheduler", config.scheduler)) if value is not None]
    return [f"{flag} ignored: {workload.name} is not iterative" for flag in ignored]


def _describe_workload(workload: Workload, config: RunConfig) -> dict[str, Any]:
    params = param_count(workload)
    return {
        "name": workload.name,
        "family": workload.family,
        "size": workload.size,
        "unit": workload.unit,
        "params": params,
        "param_bytes": params * _BYTES_PER_PARAM[config.precision],
        "flops_per_item": flops_per_item(workload),
        "calls_per_batch": dict(workload.calls_per_batch()),
        "config": workload.config(),
    }


def _eager_outputs(workload: Workload, batch: Batch) -> dict[str, "torch.Tensor"]:
    import torch

    with torch.inference_mode():
        return workload.fidelity_outputs(workload.components(), batch)


def _measure(
    workload: Workload,
    backend: Backend,
    config: RunConfig,
    clock: Clock,
    observer: RunObserver,
    sessions: dict[str, Session],
    measured: _Measured,
    check_batch: Batch,
    reference: Mapping[str, "torch.Tensor"] | None,
) -> None:
    import torch

    batch_size = config.effective_batch_size
    _prepare_sessions(workload, backend, config, clock, observer, sessions, measured)
    measured.session_info = {name: dict(s.info) for name, s in sessions.items()}
    device = next(iter(sessions.values())).device
    batch = workload.make_batch(batch_size, config.seed).to(device)
    step = _pipeline_step(workload, sessions, batch)

    with torch.inference_mode():
        observer.stage("first call")
        start = clock()
        step()
        measured.cold_start_s["first_call"] = (clock() - start) / 1e9
        measured.cold_start_s["total"] = sum(measured.cold_start_s.values())

        observer.stage("warming up")
        count, elapsed = warm_up(step, config.warmup, clock, lambda n, t: observer.loop("warm-up", n, t))
        measured.warmup = {"iterations": count, "duration_s": elapsed / 1e9}

        # Components called several times per batch are timed per call as well.
        measured.component_ns = {n: [] for n, calls in workload.calls_per_batch().items() if calls > 1}
        timed = {
            name: _TimedComponent(s, clock, measured.component_ns[name]) if name in measured.component_ns else s
            for name, s in sessions.items()
        }
        timed_step = _pipeline_step(workload, timed, batch, sessions.values())
        scenario = scenarios.build(config, note=observer.stage)
        observer.stage(f"measuring ({config.scenario})")
        gpu_state = GpuStateProbe(config.device)
        probes = [HostMemoryProbe(), DeviceMemoryProbe(config.device), EnergyProbe(config.device), gpu_state]
        with contextlib.ExitStack() as stack:
            for probe in probes:
                stack.enter_context(probe)
            # The probes' window, timed by the harness: energy and mean power cover exactly this.
            region_start = clock()
            measured.loop = scenario.run(
                timed_step,
                config.stop,
                clock,
                device_timer=device_timer_for(device),
                on_iteration=lambda n, t: observer.loop("measure", n, t),
            )
            measured.probe_window_ns = clock() - region_start
        measured.probes = {}
        for probe in probes:
            measured.probes.update(_probe_result(probe, measured.probe_window_ns / 1e9))
        measured.probe_warnings = gpu_state.warnings()

        if reference is None:
            measured.fidelity = {"passed": None, "skipped": f"backend {backend.name} does not compute the model"}
            return
        observer.stage("checking fidelity against eager fp32")
        outputs = workload.fidelity_outputs(sessions, check_batch.to(device))
        for session in sessions.values():
            session.synchronize()
    measured.fidelity = gate(outputs, reference, workload.tolerances[config.precision], workload.ungated_outputs())


def _prepare_sessions(
    workload: Workload,
    backend: Backend,
    config: RunConfig,
    clock: Clock,
    observer: RunObserver,
    sessions: dict[str, Session],
    measured: _Measured,
) -> None:
    """Cold start, timed by part: ONNX export (for graph backends), then the backend's prepare."""
    batch_size = config.effective_batch_size
    exports: dict[str, Any] = {}
    for name, module in workload.components().items():
        model: Any = module
        identity = workload.identity(name)
        if backend.input_format == "onnx":
            observer.stage(f"exporting {name} to ONNX")
            start = clock()
            # A batch of 2 keeps the exporter from specialising the batch dimension to a constant.
            model = onnx_export.export(
                module, workload.example_inputs(name, 2), identity,
                exporter=onnx_export.check_exporter(config.options),
            )
            measured.cold_start_s["export"] = measured.cold_start_s.get("export", 0.0) + (clock() - start) / 1e9
            exports[name] = model.describe()
        observer.stage(f"preparing {name} on {backend.name} ({config.device}, {config.precision})")
        context = PrepareContext(scenario=config.scenario, batch_size=batch_size, identity=identity)
        start = clock()
        sessions[name] = backend.prepare(
            model, workload.example_inputs(name, batch_size), config.precision, config.device, config.options, context
        )
        measured.cold_start_s["prepare"] = measured.cold_start_s.get("prepare", 0.0) + (clock() - start) / 1e9
    measured.exports = exports or None


def _pipeline_step(
    workload: Workload, components: Mapping[str, Any], batch: Batch, sync: Any = None
) -> Callable[[], None]:
    """One finished batch: the pipeline, then a wait for every session's device work."""
    to_sync = list(sync if sync is not None else components.values())

    def step() -> None:
        workload.run(components, batch)
        for session in to_sync:
            session.synchronize()

    return step


def _probe_result(probe: Any, window_s: float) -> dict[str, Any]:
    if isinstance(probe, EnergyProbe):
        return probe.result(elapsed_s=window_s)
    return probe.result()


def _verdict(fidelity: Mapping[str, Any] | None, loop: LoopResult | None) -> tuple[str, str | None]:
    """Fidelity first (wrong images disqualify), then the scenario's own validity rule (server SLO)."""
    if fidelity is not None and fidelity["passed"] is False:
        return "invalid", _fidelity_reason(fidelity)
    if loop is not None and loop.invalid_reason:
        return "invalid", loop.invalid_reason
    return "ok", None


def _fidelity_reason(fidelity: Mapping[str, Any]) -> str:
    if fidelity["non_finite"]:
        return "fidelity: output is not finite (NaN or inf)"
    return f"fidelity: relative L2 error {fidelity['max_rel_error']:.3g} exceeds tolerance {fidelity['tolerance']:.3g}"


def _seconds(values_ns: list[int] | tuple[int, ...]) -> list[float]:
    return [v / 1e9 for v in values_ns]


def _metrics(
    config: RunConfig, workload_info: Mapping[str, Any], m: _Measured, computes_model: bool
) -> tuple[dict, dict, list[str]]:
    """Derive metrics and samples from what was measured; returns (metrics, samples, warnings)."""
    metrics: dict[str, Any] = {"cold_start_s": dict(m.cold_start_s), "warmup": m.warmup, "fidelity": m.fidelity}
    samples: dict[str, Any] = {"latency_s": []}
    warnings = [f"fidelity of {name!r} reported, not gated: {why}" for name, why in (m.fidelity or {}).get("ungated", {}).items()]
    if m.loop is None:
        return metrics, samples, warnings
    batch_size = config.effective_batch_size
    latency = _seconds(m.loop.latencies_ns)
    summary = summarize(latency)
    items = m.loop.items if m.loop.items is not None else m.loop.iterations * batch_size
    throughput = items / (m.loop.wall_ns / 1e9)
    probes = m.probes or {}
    energy_j = probes.get("energy_j")
    # Energy covers the probes' whole window (every trial of a server search).
    probed_items = m.loop.total_items if m.loop.total_items is not None else items
    metrics.update(
        latency_s=summary.as_dict(),
        throughput_items_per_s=throughput,
        iterations=m.loop.iterations,
        items=items,
        loop_wall_s=m.loop.wall_ns / 1e9,
        stop_reason=m.loop.stop_reason,
        # A backend that skips the model's work achieves no model FLOPs.
        achieved_flops_per_s=workload_info["flops_per_item"] * throughput if computes_model else None,
        energy_j_per_item=energy_j / probed_items if energy_j is not None and probed_items else None,
        energy_window_s=m.probe_window_ns / 1e9,
        energy_window_items=probed_items,
        **probes,
    )
    if m.loop.details is not None:
        details = dict(m.loop.details)
        metrics[config.scenario] = details
        if "capacity_items_per_s" in details:
            metrics["capacity_items_per_s"] = details["capacity_items_per_s"]
    samples["latency_s"] = latency
    warning = instability_warning(summary) if scenarios.SCENARIOS[config.scenario].samples_are_service_times else None
    if warning:
        warnings.append(warning)
    warnings.extend(m.probe_warnings)
    if m.loop.device_latencies_ns is not None:
        metrics["device_latency_s"] = summarize(_seconds(m.loop.device_latencies_ns)).as_dict()
        samples["device_latency_s"] = _seconds(m.loop.device_latencies_ns)
    if m.component_ns:
        metrics["component_latency_s"] = {n: summarize(_seconds(v)).as_dict() for n, v in m.component_ns.items() if v}
        samples["component_latency_s"] = {n: _seconds(v) for n, v in m.component_ns.items()}
    return metrics, samples, warnings


def _record(
    config: RunConfig,
    backend: Backend,
    workload_info: dict[str, Any],
    measured: _Measured,
    status: str,
    reason: str | None,
    warnings: list[str],
    error: str | None,
) -> Record:
    metrics, samples, metric_warnings = _metrics(config, workload_info, measured, backend.computes_model)
    config_dict = config.to_dict()
    info = measured.session_info or {}
    ran = sorted({i.get("precision_run") for i in info.values()} - {config.precision})
    if ran:
        warnings = warnings + [f"asked for {config.precision}, the backend reports it ran {', '.join(map(str, ran))}"]
    backend_options: dict[str, Any] = {"requested": dict(config.options)}
    backend_options.update(next(iter(info.values()), {}) if len(info) == 1 else {"components": info})
    if measured.exports:
        exports = measured.exports
        backend_options["export"] = next(iter(exports.values())) if len(exports) == 1 else exports
    return Record(
        status=status,
        reason=reason,
        workload=workload_info,
        backend={
            "name": backend.name,
            "version": backend.version(),
            "device": config.device,
            "precision": config.precision,
            "options": backend_options,
        },
        scenario={
            "name": config.scenario,
            "batch_size": config.effective_batch_size,
            "stop_rule": config_dict["stop"],
            "warmup_rule": config_dict["warmup"],
        },
        environment=fingerprint(),
        metrics=metrics,
        samples=samples,
        warnings=tuple(warnings + metric_warnings),
        labels=dict(config.labels),
        config=config_dict,
        metadata={"traceback": error} if error else {},
        git_commit=git_commit(),
    )
