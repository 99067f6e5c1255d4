"""The simulated capacity against this machine's own: a `latency` record drives the simulation, `server` measures.

The planner sizes fleets from closed-loop service times; this checks the
premise on real hardware, in one test run: the capacity the discrete-event
simulation finds from a `latency` record's raw samples is within 20 % of
the capacity the real `server --find-max-rate` measures for the same model,
backend and SLO on this machine, moments later. DCGAN base on eager PyTorch:
calls of a few milliseconds, long enough that the harness's own per-batch
cost is a few percent (at a millisecond it is ~30 %), short enough that a
search takes under a minute. The SLO is 20 median calls: a real queue, near
enough to saturation that p99 is steep in the rate. Slow (`make test-all`).

The cell runs one intra-op thread (`--option threads=1`). With torch's
default of one per core, the open-loop server pays for what the closed loop
never sees: between queries the pool's threads go to sleep and each call
wakes them, and on a 2-core machine the server's arrival thread competes with
them for a core. That slows its batches by 10–35 % here (its record's
`service_p50_s` against the latency record's p50), a fact of serving this
configuration that the planner measures and applies (`open_loop_factor`, from
a `server` record beside its closed-loop twin; tests/test_plan_cli.py). This
test is about the simulation, so it measures a configuration without it: with
one thread, five pairs on this VM came out 0.93–1.17×; with the default, up to 1.5×.

This machine drifts 10–30 % between runs and even between seconds of one run
(a DCGAN call has been seen at 3.4 ms and 6.3 ms in one process within ten
seconds), and capacity near saturation moves at least as much as the service
time does: one latency/server pair has come out anywhere from 0.8× to 1.5×.
The test is about the model, not the machine, so it judges the geometric mean
of `PAIRS` paired comparisons. Each pair measures the latency cell before and
after its server search and pools both; a pair whose two latency runs differ
by more than 15 % saw the machine change under it and is measured again (at
most `ATTEMPTS` pairs in all).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from aigcbench.reports.plan import queueing

from .test_cli import cli

CELL = ["run", "--workload", "dcgan", "--size", "base", "--backend", "pytorch", "--option", "threads=1", "--no-store"]
SLO_IN_MEDIANS = 20
DRIFT = 0.15
PAIRS, ATTEMPTS = 3, 5


def latency_samples(path: Path) -> tuple[list[float], float]:
    done = cli(*CELL, "--scenario", "latency", "--duration", "2", "--json", str(path))
    assert done.returncode == 0, done.stderr
    record = json.loads(path.read_text())
    return record["samples"]["latency_s"], record["metrics"]["latency_s"]["p50"]


def pair(tmp_path: Path, slo: float | None) -> tuple[float, float, float, float]:
    """(SLO, simulated capacity, measured capacity, drift between the latency runs around the search)."""
    before, p50 = latency_samples(tmp_path / "before.json")
    slo = slo if slo is not None else SLO_IN_MEDIANS * p50
    server_json = tmp_path / "server.json"
    done = cli(*CELL, "--scenario", "server", "--find-max-rate", "--slo-p99", f"{slo:.6f}", "--duration", "1",
               "--json", str(server_json))
    server = json.loads(server_json.read_text())
    assert done.returncode == 0 and server["status"] == "ok", server.get("reason")
    after, p50_after = latency_samples(tmp_path / "after.json")
    simulated = queueing.capacity(before + after, slo, max_batch=1).rate_qps
    return slo, simulated, server["metrics"]["capacity_items_per_s"], abs(p50_after / p50 - 1)


@pytest.mark.slow
def test_simulated_capacity_matches_the_server_scenario_within_20_percent(tmp_path: Path) -> None:
    slo, ratios, seen = None, [], []
    for _ in range(ATTEMPTS):
        slo, simulated, measured, drift = pair(tmp_path, slo)  # one SLO for every pair: the first pair's
        seen.append((round(simulated, 1), round(measured, 1), f"drift {drift:.0%}"))
        if drift <= DRIFT:
            ratios.append(simulated / measured)
        if len(ratios) == PAIRS:
            break
    assert len(ratios) == PAIRS, f"the machine drifted over {DRIFT:.0%} around too many server searches: {seen}"
    mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    # `pytest -m slow tests/test_plan_capacity.py -rP` shows it: the README quotes these.
    print(f"pairs (simulated, measured items/s, drift): {seen}; ratios {[round(r, 2) for r in ratios]}, "
          f"geometric mean {mean:.2f}")
    assert abs(mean - 1) <= 0.20, (f"simulated/measured {mean:.2f} (geometric mean), SLO {slo:.4f} s", seen)
