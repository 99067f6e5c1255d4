"""The vendors' command-line benchmark tools: find them, run them with a timeout, read their numbers.

OpenVINO ships `benchmark_app` and ONNX Runtime ships `onnxruntime_test` as
console scripts of their wheels, so they sit next to the Python interpreter
that has the wheel installed. `make bench` runs `.venv/bin/python` without
activating the venv, so PATH alone would miss them: the interpreter's own
scripts folder is looked in first.

A tool that is not installed is a reason to skip (`ReferenceUnavailable`); a
tool that is installed but fails or hangs is an error worth seeing
(`ReferenceFailed`, with the tail of its output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# Lines of a failing tool's output quoted in the error: enough for its exception.
FAILURE_TAIL_LINES = 6


class ReferenceUnavailable(Exception):
    """The reference (tool, library or backend) is not installed here; the message says what to install."""


class ReferenceFailed(RuntimeError):
    """The reference tool ran but failed, timed out or printed nothing we could read."""


def find_tool(name: str, install_hint: str) -> Path:
    """The executable `name`: in this interpreter's scripts folder, else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found is None:
        raise ReferenceUnavailable(f"{name} not found in {beside.parent} or on PATH ({install_hint})")
    return Path(found)


def run_tool(argv: list[str], timeout_s: float) -> str:
    """Run a tool to completion and return its stdout and stderr together (tools log to either)."""
    name = Path(argv[0]).name
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ReferenceFailed(f"{name} did not finish within {timeout_s:g} s") from None
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise ReferenceFailed(f"{name} exited with status {done.returncode}: {_tail(output)}")
    return output


@dataclass(frozen=True)
class BenchmarkAppReport:
    """What benchmark_app's `-json_stats` report says about its measured loop."""

    throughput_fps: float  # iterations × batch / loop wall time
    median_ms: float  # nearest-rank median of OpenVINO's own per-request latency
    iterations: int


def read_benchmark_app_report(path: Path, output: str) -> BenchmarkAppReport:
    """Parse `benchmark_report.json` (written with `-report_type no_counters -json_stats`)."""
    try:
        results = json.loads(path.read_text())["execution_results"]
        return BenchmarkAppReport(
            throughput_fps=float(results["throughput"]),
            median_ms=float(results["latency (ms)"]),
            iterations=int(results["total number of iterations"]),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ReferenceFailed(f"benchmark_app wrote no readable report at {path} ({exc}): {_tail(output)}") from None


# onnxruntime_test prints "avg latency: 1.2345 ms": total loop time / iterations.
_ORT_AVG_LATENCY = re.compile(r"^avg latency:\s*([0-9.eE+-]+)\s*ms\s*$", re.MULTILINE)


def read_onnxruntime_test_latency_ms(output: str) -> float:
    """The average latency onnxruntime_test printed, in milliseconds."""
    match = _ORT_AVG_LATENCY.search(output)
    if match is None:
        raise ReferenceFailed(f"onnxruntime_test printed no 'avg latency': {_tail(output)}")
    return float(match.group(1))


def _tail(output: str) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return " | ".join(lines[-FAILURE_TAIL_LINES:]) or "(no output)"
