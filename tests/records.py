"""Records for reader tests, shaped exactly as the runner writes them.

`synthetic_record` derives its statistics from the samples with the harness's
own `summarize`, so a test that checks a report, a comparison or a history
reads the same fields a real run carries. `real_record` is a record a real
tiny run wrote (`tests/data/dcgan-tiny-pytorch.json`), for tests that need a
real latency distribution (A/A comparisons).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Sequence

from aigcbench.bench.record import Record
from aigcbench.bench.stats import summarize

DATA = Path(__file__).parent / "data"
FAMILIES = {"dcgan": "gan", "vae": "vae", "ddpm": "diffusion"}


def ceiling_records(hardware_key: str = "test-cpu-2c", *, fp32_flops: float = 1e11, bandwidth: float = 2e10,
                    created_at: str = "2026-11-01T00:00:00+00:00") -> list[Record]:
    """What `aigcbench calibrate` stores for a CPU with these ceilings (one gemm-fp32 and one copy record)."""
    from dataclasses import replace

    from aigcbench.bench.ceilings import Ceiling, ceiling_record

    environment = {"hardware_key": hardware_key, "cpu": {"model": "Test CPU", "vendor": "AuthenticAMD"},
                   "gpus": [], "memory_bytes": 2**34, "packages": {}}
    ceilings = [Ceiling("gemm", "fp32", "cpu", 1024, 2 * 1024**3, 1, (2 * 1024**3 / fp32_flops,) * 3, 2),
                Ceiling("copy", "fp32", "cpu", 2**28, 2 * 2**28, 1, (2 * 2**28 / bandwidth,) * 3, 2)]
    return [replace(ceiling_record(c, environment, None, "2.13.0"), created_at=created_at) for c in ceilings]


def real_record() -> Record:
    return Record.from_dict(json.loads((DATA / "dcgan-tiny-pytorch.json").read_text()))


def synthetic_record(
    latencies_s: Sequence[float] = (0.010, 0.011, 0.012),
    *,
    workload: str = "dcgan",
    size: str = "tiny",
    backend: str = "pytorch",
    precision: str = "fp32",
    device: str = "cpu",
    scenario: str = "latency",
    batch_size: int = 1,
    hardware_key: str = "test-cpu-2c",
    labels: dict[str, str] | None = None,
    status: str = "ok",
    reason: str | None = None,
    created_at: str | dt.datetime | None = None,
    fidelity_error: float | None = 0.0,
    cold_start: dict[str, float] | None = None,
    extra_metrics: dict[str, Any] | None = None,
    run_id: str | None = None,
    unit: str = "image",
    steps: int | None = None,
) -> Record:
    """A record whose metrics are derived from `latencies_s` (empty samples for a failed one)."""
    latencies = list(latencies_s) if status != "failed" else []
    config = {
        "workload": workload, "backend": backend, "size": size, "device": device, "precision": precision,
        "scenario": scenario, "batch_size": batch_size, "steps": None, "scheduler": None, "seed": 0,
        "weights": None, "stop": {"min_duration_s": 5.0}, "warmup": {"iterations": 2},
        "options": {}, "labels": dict(labels or {}), "server": None,
    }
    metrics: dict[str, Any] = {"cold_start_s": cold_start or {"build": 0.1, "prepare": 0.2, "first_call": 0.05, "total": 0.35}}
    if latencies:
        wall = sum(latencies)
        metrics.update(
            latency_s=summarize(latencies).as_dict(),
            throughput_items_per_s=len(latencies) * batch_size / wall,
            iterations=len(latencies), items=len(latencies) * batch_size, loop_wall_s=wall,
            stop_reason="min-duration-and-count", peak_host_memory_bytes=300 * 2**20,
            energy_j_per_item=None, energy_source="unavailable: test", mean_power_w=None,
        )
    if fidelity_error is not None and status != "failed":
        passed = status != "invalid"
        metrics["fidelity"] = {"max_rel_error": fidelity_error, "passed": passed, "tolerance": 1e-4}
    metrics.update(extra_metrics or {})
    if status != "ok" and reason is None:
        reason = "fidelity: relative L2 error 0.5 exceeds tolerance 0.0001" if status == "invalid" else "RuntimeError: boom"
    when = created_at or dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    if isinstance(when, dt.datetime):
        when = when.isoformat(timespec="seconds")
    fields: dict[str, Any] = dict(
        status=status, reason=reason,
        workload={"name": workload, "size": size, "unit": unit, "params": 1000, "flops_per_item": 1e6,
                  "family": FAMILIES.get(workload, workload),
                  "config": {"name": workload, "size": size, "steps": steps,
                             "scheduler": "ddpm" if steps is not None else None}},
        backend={"name": backend, "version": "1.0", "device": device, "precision": precision, "options": {}},
        scenario={"name": scenario, "batch_size": batch_size},
        environment={"hardware_key": hardware_key, "cpu": {"model": "test"}, "gpus": [], "memory_bytes": 2**34,
                     "packages": {}},
        metrics=metrics, samples={"latency_s": latencies}, labels=dict(labels or {}), config=config,
        created_at=when, git_commit=(labels or {}).get("commit"),
    )
    if run_id is not None:
        fields["run_id"] = run_id
    return Record(**fields)
