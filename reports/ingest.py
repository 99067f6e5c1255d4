"""Records from files: aigcbench JSON / JSON lines, and pytest-benchmark JSON.

`aigcbench import` merges another machine's results (`run --json`, `sweep
--json`, `export`) and a team's own micro-benchmarks into one store, so
`compare` and `history` serve both (DESIGN.md, "Ingest")::

    records = read_records(Path("other-machine.jsonl"))           # format detected
    records = read_records(Path("bench.json"), "pytest-benchmark")  # or forced

A file is read whole or refused whole: one bad record among good ones is a
`UserError` naming the file and the record (index or line), and nothing of
that file is returned. Reading never touches a store.

A pytest-benchmark benchmark becomes one `ok` record whose raw samples are
pytest-benchmark's per-call timings (`stats.data`), with statistics derived by
the harness's own `summarize`, so it reads like any measured latency. Its
run_id is a digest of what was measured and when, so importing a file twice
adds nothing the second time.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping

from ..bench.errors import UserError
from ..bench.probes.environment import hardware_key
from ..bench.record import REQUIRED_KEYS, Record
from ..bench.stats import summarize
from .select import normalise_timestamp

FORMATS = ("aigcbench", "pytest-benchmark")
# Fields of a record that must be JSON objects: the store and every reader call `.get` on them.
_OBJECT_KEYS = ("workload", "backend", "scenario", "environment", "metrics", "samples", "labels")
# What pytest-benchmark writes when it knows no commit or branch: not worth a label.
_NO_COMMIT, _NO_BRANCH = "unversioned", "(unknown)"


def read_records(path: Path, fmt: str | None = None) -> list[Record]:
    """Every record in `path`; `fmt` (one of `FORMATS`) forces a format, None detects it.

    Raises `UserError` (one line naming the file, and the record or line) for
    an unreadable file, malformed JSON, a file of neither format, or any
    record that does not validate.
    """
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    documents = _json_documents(path, text)
    if len(documents) == 1 and _is_pytest_benchmark(documents[0][1]):
        if fmt == "aigcbench":
            raise UserError(f"{path}: is a pytest-benchmark file, not aigcbench records (drop --format)")
        return from_pytest_benchmark(documents[0][1], path)
    if fmt == "pytest-benchmark":
        raise UserError(f"{path}: not a pytest-benchmark JSON file (no 'machine_info' and 'benchmarks')")
    if len(documents) == 1 and isinstance(documents[0][1], list):  # `sweep --json`: a list of records
        documents = [(f"record {index}", doc) for index, doc in enumerate(documents[0][1])]
    return [_aigcbench_record(doc, f"{path}: {where}" if where else str(path)) for where, doc in documents]


def _json_documents(path: Path, text: str) -> list[tuple[str | None, Any]]:
    """The parsed documents, each with where a message says it is (None: the whole file; "line 3")."""
    if not text.strip():
        raise UserError(f"{path}: empty file; expected aigcbench or pytest-benchmark JSON")
    if not _is_json_lines(path, text):
        try:
            return [(None, json.loads(text, parse_constant=_refuse_constant))]
        except ValueError as exc:  # JSONDecodeError is a ValueError, and so is a refused NaN
            raise UserError(f"{path}: not valid JSON ({exc})") from None
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append((f"line {number}", json.loads(line, parse_constant=_refuse_constant)))
        except ValueError as exc:
            raise UserError(f"{path}: line {number}: not valid JSON ({exc})") from None
    return documents


def _is_json_lines(path: Path, text: str) -> bool:
    """`.jsonl` files, and any file whose first line is a whole JSON object of its own."""
    if path.suffix.lower() == ".jsonl":
        return True
    first, _, rest = text.strip().partition("\n")
    if not rest.strip() or not first.strip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False


def _refuse_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name}")


def _aigcbench_record(doc: Any, where: str) -> Record:
    if not isinstance(doc, dict):
        raise UserError(f"{where}: expected a JSON object (an aigcbench record), got {type(doc).__name__}")
    if "schema_version" not in doc and not set(REQUIRED_KEYS) & set(doc):
        raise UserError(f"{where}: neither an aigcbench record nor a pytest-benchmark file")
    try:
        record = Record.from_dict(doc)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{where}: invalid record: {exc}") from None
    _check_shapes(record, where)
    return record


def _check_shapes(record: Record, where: str) -> None:
    """Refuse fields of the wrong JSON type now, not halfway through storing the file."""
    for key in _OBJECT_KEYS:
        if not isinstance(getattr(record, key), Mapping):
            raise UserError(f"{where}: invalid record: {key!r} must be an object")
    if not all(isinstance(v, str) for v in record.labels.values()):
        raise UserError(f"{where}: invalid record: label values must be strings")
    if not isinstance(record.run_id, str) or not record.run_id or len(record.run_id) > 64:
        raise UserError(f"{where}: invalid record: run_id must be a string of 1 to 64 characters")
    if not isinstance(record.created_at, str):
        raise UserError(f"{where}: invalid record: created_at must be an ISO timestamp string")


# ----------------------------------------------------------------------------- pytest-benchmark

def _is_pytest_benchmark(doc: Any) -> bool:
    return isinstance(doc, dict) and "machine_info" in doc and isinstance(doc.get("benchmarks"), list)


def from_pytest_benchmark(doc: Mapping[str, Any], path: Path) -> list[Record]:
    """One `ok` record per benchmark of a `pytest --benchmark-json` file (see the module docstring)."""
    machine = doc.get("machine_info") or {}
    commit = doc.get("commit_info") or {}
    if not isinstance(machine, Mapping) or not isinstance(commit, Mapping):
        raise UserError(f"{path}: 'machine_info' and 'commit_info' must be objects")
    created = doc.get("datetime") or commit.get("time")
    if not isinstance(created, str):
        raise UserError(f"{path}: no 'datetime' saying when the benchmarks ran")
    context = {
        "created_at": normalise_timestamp(created),
        "environment": _environment(machine),
        "labels": _labels(commit),
        "version": str(doc.get("version") or "unknown"),
    }
    records = []
    for index, bench in enumerate(doc["benchmarks"]):
        try:
            records.append(_benchmark_record(bench, context))
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UserError(f"{path}: benchmark {index}: invalid pytest-benchmark entry ({reason})") from None
    return records


def _environment(machine: Mapping[str, Any]) -> dict[str, Any]:
    cpu = machine.get("cpu") or {}
    model = str(cpu.get("brand_raw") or machine.get("processor") or machine.get("machine") or "unknown-cpu")
    cores = int(cpu.get("count") or 0)
    return {
        "hardware_key": hardware_key(model, cores, []),
        "cpu": {"model": model, "arch": cpu.get("arch_string_raw") or machine.get("machine"), "logical_cores": cores},
        "gpus": [],
        "memory_bytes": None,
        "os": {"system": machine.get("system"), "release": machine.get("release")},
        "python": machine.get("python_version"),
        "packages": {},
        "source": "pytest-benchmark machine_info",
    }


def _labels(commit: Mapping[str, Any]) -> dict[str, str]:
    labels = {}
    if commit.get("id") and commit["id"] != _NO_COMMIT:
        labels["commit"] = str(commit["id"])
    if commit.get("branch") and commit["branch"] != _NO_BRANCH:
        labels["branch"] = str(commit["branch"])
    return labels


def _benchmark_record(bench: Mapping[str, Any], context: Mapping[str, Any]) -> Record:
    stats = bench["stats"]
    fullname = str(bench.get("fullname") or bench["name"])
    params = bench.get("params") or {}
    data = stats.get("data")
    if data is not None and (not isinstance(data, list) or not data
                             or not all(isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 for x in data)):
        raise ValueError("stats.data must be a non-empty list of non-negative seconds")
    metrics, warnings = _metrics(stats, data)
    config = {
        "source": "pytest-benchmark", "workload": fullname, "group": bench.get("group"), "params": params,
        "backend": "pytest-benchmark", "scenario": "latency", "batch_size": 1,
    }
    labels = context["labels"]
    return Record(
        status="ok",
        workload={"name": fullname, "size": "-", "unit": "call", "params": None, "flops_per_item": None},
        backend={"name": "pytest-benchmark", "version": context["version"], "device": "cpu", "precision": "-",
                 "options": params},
        scenario={"name": "latency", "batch_size": 1},
        environment=context["environment"],
        metrics=metrics,
        samples={"latency_s": list(data or [])},
        warnings=tuple(warnings),
        labels=labels,
        config=config,
        metadata={"pytest_benchmark": {k: bench.get(k) for k in ("name", "group", "param", "extra_info", "options")}},
        git_commit=labels.get("commit"),
        run_id=_run_id(fullname, context["created_at"], labels.get("commit"), data if data else stats),
        created_at=context["created_at"],
    )


def _metrics(stats: Mapping[str, Any], data: list[float] | None) -> tuple[dict[str, Any], list[str]]:
    """Latency statistics from the raw timings, or copied from pytest-benchmark's own when it kept none."""
    if data:
        wall = float(sum(data))
        latency = summarize(data).as_dict()
        rounds = len(data)
        throughput = rounds / wall if wall > 0 else float(stats["ops"])
        warnings = []
    else:
        rounds = int(stats["rounds"])
        median = float(stats["median"])
        latency = {
            "n": rounds, "mean": float(stats["mean"]), "stdev": float(stats["stddev"]),
            "min": float(stats["min"]), "max": float(stats["max"]), "p50": median,
            "p90": None, "p95": None, "p99": None, "iqr": float(stats["iqr"]),
            "rel_iqr": float(stats["iqr"]) / median if median > 0 else None,
            "early_stopping_p90": None, "early_stopping_p99": None,
        }
        wall = float(stats.get("total") or latency["mean"] * rounds)
        throughput = float(stats["ops"])
        warnings = ["pytest-benchmark kept no raw timings (stats.data): statistics copied from its summary, "
                    "no p90/p95/p99, and compare has no samples to test"]
    metrics = {
        "latency_s": latency, "throughput_items_per_s": throughput,
        "iterations": rounds, "items": rounds, "loop_wall_s": wall, "stop_reason": "pytest-benchmark",
    }
    return metrics, warnings


def _run_id(fullname: str, created_at: str, commit: str | None, measured: Any) -> str:
    """Same benchmark, same moment, same commit, same timings: same run (so a re-import adds nothing)."""
    payload = json.dumps([fullname, created_at, commit, measured], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
