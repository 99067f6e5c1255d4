"""A generated store of many records, shaped as the runner writes them, for the readers' benchmarks.

Records are built from seeded random samples with the harness's own
`summarize`, so `report`, `history` and `compare` do their real work on them.
The store is cached under `.benchmarks/` by its parameters: generating 100 000
records takes longer than reading them, and is not what is measured.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from aigcbench.bench.record import Record
from aigcbench.bench.stats import summarize
from aigcbench.bench.store import Store

WORKLOADS = ("dcgan", "vae", "ddpm", "dit", "sd15")
BACKENDS = ("pytorch", "torch-compile", "onnxruntime", "openvino", "tensorrt")
HARDWARE = ("cpu-a-2c", "cpu-b-16c", "l4", "h100")
SAMPLES_PER_RECORD = 32


def cells() -> list[tuple[str, str, str]]:
    return [(w, b, h) for w in WORKLOADS for b in BACKENDS for h in HARDWARE]


def record(workload: str, backend: str, hardware: str, commit: int, latencies: list[float]) -> Record:
    """One ok record of a cell at a commit; its statistics derived from `latencies`."""
    config = {"workload": workload, "backend": backend, "size": "tiny", "device": "cpu", "precision": "fp32",
              "scenario": "latency", "batch_size": 1, "seed": 0, "labels": {"commit": f"c{commit:05d}"}}
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=commit)
    return Record(
        status="ok",
        workload={"name": workload, "size": "tiny", "unit": "image", "params": 1000, "flops_per_item": 1e6},
        backend={"name": backend, "version": "1", "device": "cpu", "precision": "fp32", "options": {}},
        scenario={"name": "latency", "batch_size": 1},
        environment={"hardware_key": hardware, "gpus": [], "memory_bytes": 2**34, "packages": {}},
        metrics={"latency_s": summarize(latencies).as_dict(), "throughput_items_per_s": len(latencies) / sum(latencies),
                 "cold_start_s": {"build": 0.1, "prepare": 0.2, "first_call": 0.05, "total": 0.35},
                 "fidelity": {"max_rel_error": 0.0, "passed": True}},
        samples={"latency_s": latencies},
        labels={"commit": f"c{commit:05d}", "branch": "main"},
        config=config,
        created_at=when.isoformat(timespec="seconds"),
        git_commit=f"c{commit:05d}",
    )


def generated_store(folder: Path, total: int) -> Path:
    """A SQLite store of `total` records: every cell at total/len(cells) commits, a 15 % step halfway."""
    path = folder / f"readers-{total}.db"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    grid = cells()
    commits = total // len(grid)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with Store.open(str(partial)) as store:
        for commit in range(commits):
            step = 1.15 if commit >= commits // 2 else 1.0
            batch = []
            for index, (w, b, h) in enumerate(grid):
                base = 0.001 * (1 + index % 7)
                latencies = (base * step * rng.lognormal(0, 0.03, SAMPLES_PER_RECORD)).tolist()
                batch.append(record(w, b, h, commit, latencies))
            store.append_many(batch)
    partial.rename(path)
    return path
