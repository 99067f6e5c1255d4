"""The simulated capacity against this machine's own: a `latency` record drives the simulation, `server` measures.

The planner sizes fleets from closed-loop service times; this checks the
premise on real hardware, in one test run: the capacity the discrete-event
simulation finds from a `latency` record's raw samples is within 20 % of
the capacity the real `server --find-max-rate` measures for the same model,
backend and SLO on this machine, moments later. Tiny DCGAN on eager PyTorch:
calls of about a millisecond, long enough that the harness's own per-batch
cost is a few percent, short enough that the search takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from aigcbench.reports.plan import queueing

from .test_cli import cli

CELL = ["run", "--workload", "dcgan", "--size", "tiny", "--backend", "pytorch", "--no-store"]
SLO_IN_MEDIANS = 8  # a p99 objective of 8 median calls: capacity at a real but not extreme load


def test_simulated_capacity_matches_the_server_scenario_within_20_percent(tmp_path: Path) -> None:
    latency_json, server_json = tmp_path / "latency.json", tmp_path / "server.json"
    done = cli(*CELL, "--scenario", "latency", "--duration", "2", "--json", str(latency_json))
    assert done.returncode == 0, done.stderr
    latency = json.loads(latency_json.read_text())
    samples = latency["samples"]["latency_s"]
    slo = SLO_IN_MEDIANS * latency["metrics"]["latency_s"]["p50"]

    done = cli(*CELL, "--scenario", "server", "--find-max-rate", "--slo-p99", f"{slo:.6f}", "--duration", "1",
               "--json", str(server_json))
    server = json.loads(server_json.read_text())
    assert done.returncode == 0 and server["status"] == "ok", server.get("reason")
    measured = server["metrics"]["capacity_items_per_s"]

    simulated = queueing.capacity(samples, slo, max_batch=1).rate_qps
    assert abs(simulated / measured - 1) <= 0.20, (simulated, measured, slo)
