"""The result table printed after `aigcbench run` (and, later, by reports).

Pure functions from records to rich renderables; the record is never changed.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from rich import box
from rich.markup import escape
from rich.table import Table

from ..bench.record import Record
from . import units


def _latency(record: Record, key: str) -> str:
    return units.seconds((record.metrics.get("latency_s") or {}).get(key))


def _fidelity(metrics: Mapping[str, Any]) -> str:
    fidelity = metrics.get("fidelity")
    if not fidelity:
        return "—"
    if fidelity.get("passed") is None:
        return "skipped"
    error = fidelity.get("max_rel_error")
    shown = "non-finite" if error is None else ("0" if error == 0 else f"{error:.1e}")
    return f"{'pass' if fidelity['passed'] else 'FAIL'} {shown}"


def result_table(records: Iterable[Record]) -> Table:
    """One row per record: the distribution, the claimable bound, throughput, memory, cold start."""
    table = Table(title="aigcbench results", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column, justify in (
        ("workload", "left"),
        ("backend", "left"),
        ("batch", "right"),
        ("p50", "right"),
        ("p90", "right"),
        ("p99", "right"),
        ("p90 ES¹", "right"),
        ("throughput", "right"),
        ("peak mem", "right"),
        ("cold start", "right"),
        ("fidelity", "left"),
        ("status", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in records:
        m = r.metrics
        table.add_row(
            f"{r.workload['name']} {r.workload['size']}",
            f"{r.backend['name']} {r.backend['device']} {r.backend['precision']}",
            str(r.scenario["batch_size"]),
            _latency(r, "p50"),
            _latency(r, "p90"),
            _latency(r, "p99"),
            _latency(r, "early_stopping_p90"),
            units.rate(m.get("throughput_items_per_s"), r.workload["unit"]),
            units.bytes_(m.get("peak_host_memory_bytes")),
            units.seconds((m.get("cold_start_s") or {}).get("total")),
            _fidelity(m),
            r.status if r.status == "ok" else f"[bold red]{r.status}[/]",
        )
    return table


# Parts of a command's wall time named in the note under the table, when they take this share of it or more.
_WALL_NOTE_SHARE = 0.05


def wall_note(record: Record) -> str | None:
    """"wall 2.41 s in all, 0.06 s of it measured: worker start 1.20 s, …" from `metadata.wall_s`."""
    parts = record.metadata.get("wall_s") or {}
    total = sum(parts.values())
    if not total:
        return None
    measured = parts.get("measure", 0.0)
    big = sorted(((s, p) for p, s in parts.items() if s >= _WALL_NOTE_SHARE * total), reverse=True)
    shown = ", ".join(f"{p.replace('_', ' ')} {s:.2f} s" for s, p in big)
    return f"wall {total:.2f} s in all, {measured:.2f} s of it measuring: {shown} (metadata.wall_s has every part)"


def _call_items(record: Record) -> str:
    """What one measured call covers: `B image(s)`, or `B row(s) = N token(s)` where a row yields several units."""
    rows, unit = record.scenario["batch_size"], record.workload["unit"]
    per_row = record.workload.get("units_per_row") or 1
    if per_row == 1:
        return f"{rows} {unit}(s)"
    return f"{rows} row(s) = {units.count(rows * per_row)} {unit}(s)"


def result_notes(record: Record) -> list[str]:
    """Lines under the table: what the numbers mean for this record, and its warnings."""
    m = record.metrics
    notes: list[str] = []
    latency = m.get("latency_s") or {}
    if latency:
        bound = (
            "¹ p90 ES: MLPerf's early-stopping bound, the p90 latency claimable at 99 % confidence "
            f"from {latency['n']} samples"
        )
        if latency.get("early_stopping_p90") is None:
            bound += " (needs ≥ 64 samples; raise --min-iterations or --duration)"
        notes.append(bound)
        if "server" in m:
            notes.extend(_server_notes(record))
        else:
            notes.append(
                f"latency is per call of {_call_items(record)}; "
                f"{m['iterations']} calls in {m['loop_wall_s']:.2f} s, stopped by {m['stop_reason']}"
            )
    wall = wall_note(record)
    if wall:
        notes.append(wall)
    for name, stats in (m.get("component_latency_s") or {}).items():
        notes.append(f"{name}: p50 {units.seconds(stats['p50'])} per call ({stats['n']} calls)")
    achieved = m.get("achieved_flops_per_s")
    if achieved and record.workload.get("flops_per_item"):
        notes.append(
            f"{units.count(record.workload['flops_per_item'])}FLOP per {record.workload['unit']}, "
            f"achieved {units.count(achieved)}FLOP/s"
        )
    if m.get("energy_j_per_item") is not None:
        notes.append(
            f"energy: {m['energy_j_per_item']:.3g} J/{record.workload['unit']}, mean {m['mean_power_w']:.0f} W "
            f"({m['energy_source']}, {m.get('energy_scope')}) over {m['energy_window_s']:.1f} s"
        )
    elif m.get("energy_source"):
        notes.append(f"energy: {escape(m['energy_source'])}")
    fidelity = m.get("fidelity") or {}
    if fidelity.get("skipped"):
        notes.append(f"fidelity skipped: {escape(fidelity['skipped'])}")
    # Reasons and warnings are free text (stack lines, pip extras in brackets): never markup.
    if record.reason:
        notes.append(f"[bold red]{record.status}[/]: {escape(record.reason)}")
    notes.extend(f"[yellow]warning[/]: {escape(w)}" for w in record.warnings)
    return notes


def _server_notes(record: Record) -> list[str]:
    """What a server run offered and, for a rate search, the capacity it found."""
    server = record.metrics["server"]
    unit = record.workload["unit"]
    slo = f", SLO p99 {units.seconds(server['slo_p99_s'])}" if server.get("slo_p99_s") is not None else ""
    if server.get("rate_qps") is None:
        return [
            f"server: no trial was run; the latency shown is {record.metrics['iterations']} batches with nothing queued",
            f"capacity: none found; {server['search']['result']}",
        ]
    notes = [
        f"server: Poisson arrivals at {server['rate_qps']:.4g} queries/s, max batch {server['max_batch']} "
        f"(padded), max wait {units.seconds(server['max_wait_s'])}{slo}; latency from arrival, "
        f"{server['queries']} queries, p99 ES {units.seconds(server.get('p99_bound_s'))}"
    ]
    if server.get("service_p50_s") is not None:
        back_to_back = (server.get("search") or {}).get("service_time_s")
        compared = f" (back to back: {units.seconds(back_to_back)})" if back_to_back is not None else ""
        notes.append(
            f"each batch ran p50 {units.seconds(server['service_p50_s'])}, p99 {units.seconds(server['service_p99_s'])}"
            f"{compared}; the rest of a query's latency is queueing"
        )
    search = server.get("search")
    if search is not None:
        capacity = server.get("capacity_items_per_s")
        if capacity is not None:
            notes.append(
                f"capacity: {capacity:.4g} {unit}/s at p99 {units.seconds(server['capacity_p99_s'])} "
                f"(ES bound {units.seconds(server['capacity_p99_bound_s'])}, {server['capacity_samples']} queries); "
                f"{len(search['trials'])} trials, {search['result']}"
            )
        else:
            notes.append(f"capacity: none found; {search['result']}")
    return notes
