"""The record as a pure function of a prepared cell and its raw measurement.

`derive(cell, measurement, environment, commit)` reads nothing else: no clock,
no probe, no global. The same inputs give the same record (its `run_id` and
`created_at` aside), which is what lets a test check every derived number
against a fake clock, and a reader trust that statistics come from the samples
stored next to them.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import scenarios
from .measurement import Cell, Failure, Measurement
from .record import Record
from .stats import instability_warning, summarize


def derive(
    cell: Cell,
    measurement: Measurement,
    environment: Mapping[str, Any],
    commit: str | None,
    metadata: Mapping[str, Any] | None = None,
) -> Record:
    """One immutable record: status and reason, metrics and samples, config, environment."""
    status, reason = verdict(measurement)
    metrics, samples, metric_warnings = derive_metrics(cell, measurement)
    info = measurement.session_info
    ran = sorted({i.get("precision_run") for i in info.values()} - {cell.config.precision})
    warnings = list(cell.warnings)
    if ran:
        warnings.append(f"asked for {cell.config.precision}, the backend reports it ran {', '.join(map(str, ran))}")
    extra = dict(metadata or {})
    if measurement.failure is not None and measurement.failure.traceback:
        extra["traceback"] = measurement.failure.traceback
    config = cell.config.to_dict()
    return Record(
        status=status,
        reason=reason,
        workload=dict(cell.workload),
        backend={
            "name": cell.backend_name,
            "version": cell.backend_version,
            "device": cell.config.device,
            "precision": cell.config.precision,
            "options": _backend_options(cell, measurement),
        },
        scenario={
            "name": cell.config.scenario,
            "batch_size": cell.batch_size,
            "stop_rule": config["stop"],
            "warmup_rule": config["warmup"],
        },
        environment=dict(environment),
        metrics=metrics,
        samples=samples,
        warnings=tuple(warnings + metric_warnings),
        labels=dict(cell.config.labels),
        config=config,
        metadata=extra,
        git_commit=commit,
    )


def verdict(m: Measurement) -> tuple[str, str | None]:
    """A failure first; then fidelity (wrong images disqualify); then the scenario's own rule (server SLO)."""
    if m.failure is not None:
        return "failed", m.failure.reason
    fidelity = m.fidelity
    if fidelity is not None and fidelity["passed"] is False:
        return "invalid", _fidelity_reason(fidelity)
    outcome = m.loop.outcome if m.loop is not None else None
    if outcome is not None and not outcome.valid:
        from ..reports import server_text

        return "invalid", server_text.invalid_reason(outcome)
    return "ok", None



def failed(reason: str) -> Measurement:
    """The measurement of a cell whose worker never reported one (crash, hang, kill)."""
    return Measurement(cold_start_s={}, failure=Failure(reason))


def _fidelity_reason(fidelity: Mapping[str, Any]) -> str:
    if fidelity["non_finite"]:
        return "fidelity: output is not finite (NaN or inf)"
    return f"fidelity: relative L2 error {fidelity['max_rel_error']:.3g} exceeds tolerance {fidelity['tolerance']:.3g}"


def _backend_options(cell: Cell, m: Measurement) -> dict[str, Any]:
    options: dict[str, Any] = {"requested": dict(cell.config.options)}
    info = {name: dict(i) for name, i in m.session_info.items()}
    options.update(next(iter(info.values()), {}) if len(info) == 1 else {"components": info})
    if m.exports:
        exports = dict(m.exports)
        options["export"] = next(iter(exports.values())) if len(exports) == 1 else exports
    return options


def _seconds(values_ns: tuple[int, ...] | list[int]) -> list[float]:
    return [v / 1e9 for v in values_ns]


def _cold_start(m: Measurement) -> dict[str, float]:
    parts = dict(m.cold_start_s)
    if "first_call" in parts:  # the whole cold start is known once the first call has returned
        parts["total"] = sum(parts.values())
    return parts


def derive_metrics(cell: Cell, m: Measurement) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Metrics and samples from what was measured; returns (metrics, samples, warnings)."""
    metrics: dict[str, Any] = {"cold_start_s": _cold_start(m), "warmup": _plain(m.warmup), "fidelity": _plain(m.fidelity)}
    if m.train:
        metrics["train"] = dict(m.train)
    samples: dict[str, Any] = {"latency_s": []}
    warnings = [f"fidelity of {name!r} reported, not gated: {why}" for name, why in (m.fidelity or {}).get("ungated", {}).items()]
    loop = m.loop
    if loop is None:
        return metrics, samples, warnings
    latency = _seconds(loop.latencies_ns)
    summary = summarize(latency)
    # Items are units of work (images, tokens, seconds of audio): a batch row yields `units_per_row`.
    units = cell.workload.get("units_per_row") or 1
    rows = loop.items if loop.items is not None else loop.iterations * cell.batch_size
    items = rows * units
    throughput = items / (loop.wall_ns / 1e9)
    energy_j = m.probes.get("energy_j")
    # Energy covers the probes' whole window (every trial of a server search).
    probed_items = loop.total_items * units if loop.total_items is not None else items
    metrics.update(
        latency_s=summary.as_dict(),
        throughput_items_per_s=throughput,
        iterations=loop.iterations,
        items=items,
        loop_wall_s=loop.wall_ns / 1e9,
        stop_reason=loop.stop_reason,
        # A backend that skips the model's work achieves no model FLOPs.
        achieved_flops_per_s=cell.workload["flops_per_item"] * throughput if cell.computes_model else None,
        energy_j_per_item=energy_j / probed_items if energy_j is not None and probed_items else None,
        energy_window_s=m.probe_window_ns / 1e9,
        energy_window_items=probed_items,
        **dict(m.probes),
    )
    if loop.outcome is not None:
        from ..reports import server_text

        details = server_text.record_details(loop.outcome)
        metrics[cell.config.scenario] = details
        if "capacity_items_per_s" in details:  # queries are rows
            metrics["capacity_items_per_s"] = details["capacity_items_per_s"] * units
    samples["latency_s"] = latency
    cap = iteration_cap_warning(cell, loop)
    if cap:
        warnings.append(cap)
    if scenarios.SCENARIOS[cell.config.scenario].samples_are_service_times:
        warning = instability_warning(summary)
        if warning:
            warnings.append(warning)
    warnings.extend(m.probe_warnings)
    if loop.device_latencies_ns is not None:
        metrics["device_latency_s"] = summarize(_seconds(loop.device_latencies_ns)).as_dict()
        samples["device_latency_s"] = _seconds(loop.device_latencies_ns)
    if m.component_ns:
        metrics["component_latency_s"] = {n: summarize(_seconds(v)).as_dict() for n, v in m.component_ns.items() if v}
        samples["component_latency_s"] = {n: _seconds(v) for n, v in m.component_ns.items()}
    metrics.update(_workload_metrics(cell, metrics))
    return metrics, samples, warnings


def _workload_metrics(cell: Cell, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The workload kind's own metrics (TTFT, TPOT, real-time factor), from the summaries derived above."""
    from ..workloads import registry as workload_registry

    workload_class = workload_registry.get(cell.workload["name"])
    return workload_class.metric_extras(
        cell.workload, metrics.get("component_latency_s", {}), metrics["latency_s"], metrics["throughput_items_per_s"]
    )


def iteration_cap_warning(cell: Cell, loop: Any) -> str | None:
    """Say so when the hard cap on iterations, not --duration, ended the loop (a fast loop looks complete)."""
    rule = cell.config.stop
    wall_s = loop.wall_ns / 1e9
    if loop.stop_reason != "max-iterations" or wall_s >= rule.min_duration_s:
        return None
    return (
        f"stopped by --max-iterations {rule.max_iterations} after {wall_s:.3g} s, "
        f"before --duration {rule.min_duration_s:g} s"
    )


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None
