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

In code that is prepare → measure → derive: `_prepare_cell` fixes the `Cell`
(steps 1–3), `_measure` returns one frozen `Measurement` of raw readings
(steps 4–6), and `bench.derive.derive` makes the record as a pure function of
the two (step 7). A failure in steps 4–6 is part of the measurement, so it
becomes a `failed` record with the reason rather than an exception, and a
sweep always gets a result for every cell.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from ..backends import registry as backend_registry
from ..backends import onnx_export
from ..backends.base import Backend, PrepareContext, Session
from ..workloads import registry as workload_registry
from ..workloads.base import Batch, Workload
from ..workloads.flops import component_table, param_count, per_unit
from ..workloads.params import PARAMS
from . import fidelity_cache, scenarios
from .clock import Clock, perf_clock
from .config import RunConfig
from .device_timer import device_timer_for
from .errors import BackendUnavailable, UserError
from .cell_check import preflight
from .fidelity import FIDELITY_BATCH, FIDELITY_SEED_OFFSET, gate
from .derive import derive, failed
from .measure import warm_up
from .measurement import Cell, Failure, Measurement
from .probes.base import Probe
from .probes.device_memory import DeviceMemoryProbe
from .probes.energy import EnergyProbe
from .probes.environment import fingerprint, git_commit
from .probes.gpu_state import GpuStateProbe
from .probes.host_memory import HostMemoryProbe
from .record import Record
from .walltime import Timeline

if TYPE_CHECKING:
    import torch

_BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2}


class RunObserver(Protocol):
    """Receives progress while a cell runs (the CLI shows it with rich)."""

    def stage(self, text: str) -> None: ...

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None: ...


class Silent:
    """An observer that shows nothing."""

    def stage(self, text: str) -> None:
        pass

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None:
        pass


class _TimedComponent:
    """Times every call of one component inside the pipeline (per-step denoiser latency).

    It synchronizes the session before reading the clock, like the loop does;
    on a CPU backend that is free, on a GPU it costs one wait per call.
    """

    def __init__(self, session: Session, clock: Clock) -> None:
        self._session, self._clock = session, clock
        self.samples_ns: list[int] = []  # the raw samples, like the loop's own list in measure()

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        start = self._clock()
        out = self._session(*inputs)
        self._session.synchronize()
        self.samples_ns.append(self._clock() - start)
        return out




@dataclass(frozen=True)
class _Prepared:
    """The backend's sessions for every component, and what preparing them cost and reported."""

    sessions: Mapping[str, Session]
    cold_start_s: Mapping[str, float]
    exports: Mapping[str, Any]

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


def run_cell(
    config: RunConfig, *, clock: Clock = perf_clock, observer: RunObserver | None = None,
    timeline: Timeline | None = None,
) -> Record:
    """Measure one cell and return its record (status ok, invalid or failed): prepare → measure → derive.

    Raises `UserError` / `BackendUnavailable` only for what is refused before
    anything is measured. `timeline` receives a mark as each part of the
    cell's wall time begins (`bench/walltime.py`).
    """
    observer = observer or Silent()
    timeline = timeline or Timeline()
    timeline.mark("preflight")
    backend = preflight(config)
    cell, workload, build_s = _prepare_cell(config, backend, clock, observer, timeline)
    # No larger than the measured batch, so a backend built for that shape can run it as is.
    check_size = min(FIDELITY_BATCH, cell.batch_size)
    check_batch = workload.make_batch(check_size, config.seed + FIDELITY_SEED_OFFSET)
    reference, metadata = None, {}
    if backend.computes_model:
        timeline.mark("fidelity_reference")
        observer.stage("fidelity reference (eager fp32, cpu; cached per workload config)")
        reference, source = fidelity_cache.reference(
            workload, check_size, FIDELITY_SEED_OFFSET, lambda: _eager_outputs(workload, check_batch)
        )
        metadata["fidelity_reference"] = source
    measurement = _measure(cell, workload, backend, clock, observer, timeline, build_s, check_batch, reference)
    timeline.mark("record")
    return derive(cell, measurement, fingerprint(), git_commit(), metadata)


def failure_record(config: RunConfig, reason: str, metadata: Mapping[str, Any]) -> Record:
    """A `failed` record for a cell whose worker never returned one (crash, hang, kill).

    It carries what is known without running anything: the config, the
    environment, and the workload and backend as named, so the cell is stored,
    reported and skipped on resume like any other.
    """
    backend = backend_registry.get(config.backend)
    workload = {
        "name": config.workload,
        "size": config.size,
        "unit": workload_registry.resolve(config.workload, config.mode).unit,
        "mode": config.mode,
        "params": None,
        "flops_per_item": None,
    }
    cell = Cell(config, backend.name, backend.version(), backend.computes_model, workload, config.effective_batch_size)
    return derive(cell, failed(reason), fingerprint(), git_commit(), metadata)


def _prepare_cell(
    config: RunConfig, backend: Backend, clock: Clock, observer: RunObserver, timeline: Timeline
) -> tuple[Cell, Workload, float]:
    """Build the workload from config (timed: the first part of cold start) and describe the cell."""
    timeline.mark("build")
    observer.stage(f"building {config.workload} ({config.size})")
    start = clock()
    workload = workload_registry.build(
        config.workload,
        config.size,
        config.seed,
        steps=config.steps,
        scheduler=config.scheduler,
        weights=Path(config.weights) if config.weights else None,
        params=config.params,
        mode=config.mode,
    )
    build_s = (clock() - start) / 1e9
    timeline.mark("describe")
    cell = Cell(
        config=config,
        backend_name=backend.name,
        backend_version=backend.version(),
        computes_model=backend.computes_model,
        workload=_describe_workload(workload, config),
        batch_size=config.effective_batch_size,
        warnings=tuple(_ignored_option_warnings(workload, config)),
    )
    return cell, workload, build_s


def _ignored_option_warnings(workload: Workload, config: RunConfig) -> list[str]:
    unused = [PARAMS[key].flag for key in config.params if key not in workload.accepts]
    warnings = [f"{flag} ignored: {workload.name} has no such parameter" for flag in unused]
    if workload.iterative:
        return warnings
    ignored = [flag for flag, value in (("--steps", config.steps), ("--scheduler", config.scheduler)) if value is not None]
    return warnings + [f"{flag} ignored: {workload.name} is not iterative" for flag in ignored]


def _describe_workload(workload: Workload, config: RunConfig) -> dict[str, Any]:
    params = param_count(workload)
    units = workload.units_per_row()
    components = component_table(workload)  # each component's FLOPs read once (flops_per_item's sum, here)
    row_flops = sum(c["flops_per_call"] * c["calls_per_batch"] for c in components.values())
    return {
        "name": workload.name,
        "family": workload.family,
        "size": workload.size,
        "unit": workload.unit,
        "mode": workload.mode,
        "units_per_row": units,
        "params": params,
        "param_bytes": params * _BYTES_PER_PARAM[config.precision],
        # Per unit of work: a row's FLOPs shared by the units it yields (an LLM row's tokens).
        "flops_per_item": per_unit(row_flops, units),
        "calls_per_batch": dict(workload.calls_per_batch()),
        "components": components,
        "config": workload.config(),
    }


def _grad_mode(workload: Workload) -> Any:
    """Inference runs without autograd; a training step needs it."""
    import torch

    return torch.inference_mode(workload.mode != "train")


def _eager_outputs(workload: Workload, batch: Batch) -> dict[str, "torch.Tensor"]:
    with _grad_mode(workload):
        return workload.fidelity_outputs(workload.components(), batch)


def _measure(
    cell: Cell,
    workload: Workload,
    backend: Backend,
    clock: Clock,
    observer: RunObserver,
    timeline: Timeline,
    build_s: float,
    check_batch: Batch,
    reference: Mapping[str, "torch.Tensor"] | None,
) -> Measurement:
    """Cold start, warm-up, the measured loop in the probes, the fidelity gate: one frozen Measurement.

    Each phase returns its readings and the measurement grows by
    `dataclasses.replace`, so an exception in any phase still leaves
    everything measured before it (a failing backend is a result, not a crash).
    """
    m = Measurement(cold_start_s={"build": build_s})
    prepared: _Prepared | None = None
    try:
        prepared = _prepare_sessions(workload, backend, cell, clock, observer, timeline)
        m = replace(
            m,
            cold_start_s={**m.cold_start_s, **prepared.cold_start_s},
            session_info={name: dict(s.info) for name, s in prepared.sessions.items()},
            exports=prepared.exports,
        )
        device = next(iter(prepared.sessions.values())).device
        batch = workload.make_batch(cell.batch_size, cell.config.seed).to(device)
        with _grad_mode(workload):
            timeline.mark("first_call")
            m = replace(m, cold_start_s={**m.cold_start_s, **_first_call(workload, prepared, batch, clock, observer)})
            timeline.mark("warmup")
            m = replace(m, warmup=_warm_up(workload, prepared, batch, cell, clock, observer))
            timeline.mark("measure")
            m = replace(m, **_measured_loop(workload, prepared, batch, cell, clock, observer))
            if reference is None:
                return replace(m, fidelity={"passed": None, "skipped": f"backend {backend.name} does not compute the model"})
            timeline.mark("fidelity_check")
            observer.stage("checking fidelity against eager fp32")
            outputs = workload.fidelity_outputs(prepared.sessions, check_batch.to(device))
            for session in prepared.sessions.values():
                session.synchronize()
        tolerance = workload.tolerances[cell.config.precision]
        if workload.mode == "train":  # the loss and gradient norm of the checked step are the record's too
            m = replace(m, train={name: t.detach().item() for name, t in outputs.items() if t.numel() == 1})
        return replace(m, fidelity=gate(outputs, reference, tolerance, workload.ungated_outputs()))
    except (UserError, BackendUnavailable):
        raise  # a refusal of the input (or of this machine), not a result: nothing is stored for it
    except Exception as exc:  # a failing backend is a result, not a crash (see module docstring)
        return replace(m, failure=Failure.of(exc))
    finally:
        if prepared is not None:
            prepared.close()


def _first_call(
    workload: Workload, prepared: _Prepared, batch: Batch, clock: Clock, observer: RunObserver
) -> dict[str, float]:
    observer.stage("first call")
    step = _pipeline_step(workload, prepared.sessions, batch)
    start = clock()
    step()
    return {"first_call": (clock() - start) / 1e9}


def _warm_up(
    workload: Workload, prepared: _Prepared, batch: Batch, cell: Cell, clock: Clock, observer: RunObserver
) -> dict[str, Any]:
    observer.stage("warming up")
    step = _pipeline_step(workload, prepared.sessions, batch)
    count, elapsed = warm_up(step, cell.config.warmup, clock, lambda n, t: observer.loop("warm-up", n, t))
    return {"iterations": count, "duration_s": elapsed / 1e9}


def _measured_loop(
    workload: Workload, prepared: _Prepared, batch: Batch, cell: Cell, clock: Clock, observer: RunObserver
) -> dict[str, Any]:
    """The scenario inside the probes; returns the Measurement fields it produced."""
    config = cell.config
    # A pipeline of several components, or of one called several times per batch, is timed per call
    # too: where the time goes (text encoder, UNet per step, VAE decode; an LLM's prefill and decode).
    calls = workload.calls_per_batch()
    per_call = len(calls) > 1 or any(n > 1 for n in calls.values())
    timed = {n: _TimedComponent(s, clock) if per_call else s for n, s in prepared.sessions.items()}
    timed_step = _pipeline_step(workload, timed, batch, prepared.sessions.values())
    scenario = scenarios.build(config, note=observer.stage)
    observer.stage(f"measuring ({config.scenario})")
    probes: list[Probe] = [
        HostMemoryProbe(), DeviceMemoryProbe(config.device), EnergyProbe(config.device), GpuStateProbe(config.device)
    ]
    device = next(iter(prepared.sessions.values())).device
    with contextlib.ExitStack() as stack:
        for probe in probes:
            stack.enter_context(probe)
        # The probes' window, timed by the harness: energy and mean power cover exactly this.
        region_start = clock()
        loop = scenario.run(
            timed_step,
            config.stop,
            clock,
            device_timer=device_timer_for(device),
            on_iteration=_throttled(observer, "measure"),
        )
        window_ns = clock() - region_start
    readings: dict[str, Any] = {}
    for probe in probes:
        readings.update(probe.result(window_ns / 1e9))
    return {
        "loop": loop,
        "component_ns": {n: tuple(t.samples_ns) for n, t in timed.items() if isinstance(t, _TimedComponent)},
        "probes": readings,
        "probe_window_ns": window_ns,
        "probe_warnings": tuple(w for probe in probes for w in probe.warnings()),
    }


def _prepare_sessions(
    workload: Workload, backend: Backend, cell: Cell, clock: Clock, observer: RunObserver, timeline: Timeline
) -> _Prepared:
    """Cold start, timed by part: ONNX export (for graph backends), then the backend's prepare.

    A component that fails to prepare closes the sessions already opened before the error propagates.
    """
    config = cell.config
    sessions: dict[str, Session] = {}
    exports: dict[str, Any] = {}
    export_s = prepare_s = 0.0
    try:
        for name, module in workload.components().items():
            model: Any = module
            identity = workload.identity(name)
            if backend.input_format == "onnx":
                timeline.mark("export")
                observer.stage(f"exporting {name} to ONNX")
                start = clock()
                # A batch of 2 keeps the exporter from specialising the batch dimension to a constant.
                model = onnx_export.export(
                    module, workload.example_inputs(name, 2), identity,
                    exporter=onnx_export.check_exporter(config.options),
                )
                export_s += (clock() - start) / 1e9
                exports[name] = model.describe()
            timeline.mark("prepare")
            observer.stage(f"preparing {name} on {backend.name} ({config.device}, {config.precision})")
            context = PrepareContext(scenario=config.scenario, batch_size=cell.batch_size, identity=identity,
                                     mode=workload.mode)
            start = clock()
            sessions[name] = backend.prepare(
                model, workload.example_inputs(name, cell.batch_size), config.precision, config.device,
                config.options, context,
            )
            prepare_s += (clock() - start) / 1e9
    except BaseException:
        for session in sessions.values():
            session.close()
        raise
    cold = {"export": export_s, "prepare": prepare_s} if exports else {"prepare": prepare_s}
    return _Prepared(sessions, cold, exports)


def _pipeline_step(
    workload: Workload, components: Mapping[str, Any], batch: Batch, sync: Any = None
) -> Callable[[], None]:
    """One finished batch: the pipeline, then a wait for every session's device work."""
    syncs = [session.synchronize for session in (sync if sync is not None else components.values())]
    run = workload.run
    if len(syncs) == 1:  # the usual case, without a loop: on a sub-microsecond call the loop is the cost
        (synchronize,) = syncs

        def step_one() -> None:
            run(components, batch)
            synchronize()

        return step_one

    def step() -> None:
        run(components, batch)
        for synchronize in syncs:
            synchronize()

    return step


# Progress goes out at most this often: the observers redraw a few times a second, and a
# call per iteration costs a measurable share of a sub-microsecond step.
_PROGRESS_INTERVAL_NS = 20_000_000


def _throttled(observer: RunObserver, phase: str) -> Callable[[int, int], None]:
    """An `on_iteration` that passes (count, elapsed) on to the observer at most every 20 ms."""
    due = 0

    def report(count: int, elapsed_ns: int) -> None:
        nonlocal due
        if elapsed_ns >= due:
            due = elapsed_ns + _PROGRESS_INTERVAL_NS
            observer.loop(phase, count, elapsed_ns)

    return report
