"""The simulated capacity against this machine's own: a `latency` record drives the simulation, `server` measures.

The planner sizes fleets from closed-loop service times; this checks the
premise on real hardware, in one test run: the capacity the discrete-event
simulation finds from a `latency` record's raw samples is within 20 % of
the capacity the real `server --find-max-rate` measures for the same model,
backend and SLO on this machine, moments later. DCGAN base on eager PyTorch:
calls of a few milliseconds, long enough that the harness's own per-batch
cost is a few percent (at a millisecond it is ~30 %), short enough that the
search takes under a minute. The SLO is 20 median calls: a real queue, near
enough to saturation that p99 is steep in the rate. Slow (`make test-all`):
it measures for a minute, and on the 2-core VM it does not always pass — the
simulation has come out 0.94–1.56× the measured capacity, because batches
served in open loop run 20–35 % slower than back to back (a CPU and its caches
cooling between arrivals) and the VM's slow stretches come in runs that iid
resampling spreads out. That is a finding about the model, kept visible here.

This machine drifts 10–30 % between runs, and the test is about the model, not
the machine: the latency cell is measured before and after the server search
and both are pooled; when those two disagree by more than 15 % the machine
changed under the test, and the whole measurement is repeated once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigcbench.reports.plan import queueing

from .test_cli import cli

CELL = ["run", "--workload", "dcgan", "--size", "base", "--backend", "pytorch", "--no-store"]
SLO_IN_MEDIANS = 20
DRIFT = 0.15


def latency_samples(path: Path) -> tuple[list[float], float]:
    done = cli(*CELL, "--scenario", "latency", "--duration", "2", "--json", str(path))
    assert done.returncode == 0, done.stderr
    record = json.loads(path.read_text())
    return record["samples"]["latency_s"], record["metrics"]["latency_s"]["p50"]


def measure(tmp_path: Path) -> tuple[list[float], float, float, float]:
    """(pooled latency samples, SLO, measured capacity, drift between the two latency runs)."""
    before, p50 = latency_samples(tmp_path / "before.json")
    slo = SLO_IN_MEDIANS * p50
    server_json = tmp_path / "server.json"
    done = cli(*CELL, "--scenario", "server", "--find-max-rate", "--slo-p99", f"{slo:.6f}", "--duration", "1",
               "--json", str(server_json))
    server = json.loads(server_json.read_text())
    assert done.returncode == 0 and server["status"] == "ok", server.get("reason")
    after, p50_after = latency_samples(tmp_path / "after.json")
    return before + after, slo, server["metrics"]["capacity_items_per_s"], abs(p50_after / p50 - 1)


@pytest.mark.slow
def test_simulated_capacity_matches_the_server_scenario_within_20_percent(tmp_path: Path) -> None:
    samples, slo, measured, drift = measure(tmp_path)
    if drift > DRIFT:
        samples, slo, measured, drift = measure(tmp_path)
    assert drift <= DRIFT, f"the machine drifted {drift:.0%} between the latency runs around the server search"
    simulated = queueing.capacity(samples, slo, max_batch=1).rate_qps
    assert abs(simulated / measured - 1) <= 0.20, (simulated, measured, slo)
