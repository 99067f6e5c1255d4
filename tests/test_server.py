"""The server scenario against queueing theory, on a fake clock: arrivals, batching, SLO search.

With a deterministic service time D and Poisson arrivals at rate λ, a single
server is an M/D/1 queue, whose mean wait is known exactly (Pollaczek–Khinchine):
Wq = ρ·D / (2·(1 − ρ)), ρ = λ·D. The scenario code under test is the real one;
only the clock is fake, so the check is exact up to sampling error.
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.quantities import parse_duration, parse_rate
from aigcbench.bench.scenarios.server import ServerScenario, ServerSettings, run_trial
from aigcbench.bench.stats import early_stopping_min_samples
from aigcbench.bench.stopping import StopRule

from .fakes import FakeClock

MS = 1_000_000


def _fixed_service(clock: FakeClock, service_ns: int):
    calls = []

    def step() -> None:
        clock.advance(service_ns)
        calls.append(clock())

    return step, calls


def _rule(queries: int, duration_s: float = 0.0) -> StopRule:
    return StopRule(min_duration_s=duration_s, min_iterations=queries, max_iterations=10 * queries + 10,
                    max_duration_s=1e6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rho", [0.3, 0.6])
def test_mean_wait_matches_the_md1_formula(seed: int, rho: float) -> None:
    clock = FakeClock()
    service = 10 * MS
    rate = rho / (service / 1e9)
    step, _ = _fixed_service(clock, service)
    trial = run_trial(step, rate, ServerSettings(rate_qps=rate), _rule(40_000), clock, clock.sleep_until, seed)
    assert len(trial.latencies_ns) == 40_000
    mean_wait_s = statistics.fmean(trial.latencies_ns) / 1e9 - service / 1e9
    expected = rho * (service / 1e9) / (2 * (1 - rho))
    assert mean_wait_s == pytest.approx(expected, rel=0.10)


def test_arrivals_are_poisson_at_the_offered_rate() -> None:
    clock = FakeClock()
    step, _ = _fixed_service(clock, 1000)  # 1 µs: the server never queues
    trial = run_trial(step, 500.0, ServerSettings(rate_qps=500.0), _rule(20_000), clock, clock.sleep_until, 7)
    # Latency is exactly the service time when nothing waits: dispatch happens at the arrival
    # (a few arrivals come within 1 µs of the previous one and wait for it).
    exact = sum(1 for latency in trial.latencies_ns if latency == 1000)
    assert exact >= 0.99 * len(trial.latencies_ns)
    achieved = len(trial.latencies_ns) / (trial.wall_ns / 1e9)
    assert achieved == pytest.approx(500.0, rel=0.03)


def test_latency_counts_from_the_scheduled_arrival_not_the_dispatch() -> None:
    clock = FakeClock()
    step, _ = _fixed_service(clock, 50 * MS)  # far slower than arrivals: queries queue up
    trial = run_trial(step, 100.0, ServerSettings(rate_qps=100.0), _rule(200), clock, clock.sleep_until, 3)
    # An overloaded queue grows: later queries have waited for all earlier ones.
    assert trial.latencies_ns[-1] > 100 * trial.latencies_ns[0]
    assert min(trial.latencies_ns) >= 50 * MS


def test_dynamic_batcher_waits_at_most_max_wait_and_fills_batches() -> None:
    clock = FakeClock()
    step, calls = _fixed_service(clock, 1000)
    settings = ServerSettings(rate_qps=1000.0, max_batch=4, max_wait_s=0.002)
    trial = run_trial(step, 1000.0, settings, _rule(4000), clock, clock.sleep_until, 11)
    assert max(trial.latencies_ns) <= 2 * MS + 2 * 1000  # max wait, plus at most one batch ahead of it
    mean_batch = len(trial.latencies_ns) / trial.batches
    assert 1.5 < mean_batch <= 4  # ~2 arrivals per 2 ms window at 1000/s, capped at 4
    assert trial.batches == len(calls)


def test_a_run_with_an_slo_needs_662_queries_and_judges_the_early_stopping_bound() -> None:
    assert early_stopping_min_samples(0.99) == 662
    clock = FakeClock()
    step, _ = _fixed_service(clock, 5 * MS)
    settings = ServerSettings(rate_qps=20.0, slo_p99_s=0.050)
    trial = run_trial(step, 20.0, settings, _rule(10), clock, clock.sleep_until, 0)
    assert len(trial.latencies_ns) >= 662  # raised from 10 so the p99 bound exists
    assert trial.passed and trial.p99_bound_s is not None and trial.p99_bound_s <= 0.050


def test_an_overloaded_trial_stops_early_and_fails() -> None:
    clock = FakeClock()
    step, _ = _fixed_service(clock, 20 * MS)
    settings = ServerSettings(rate_qps=200.0, slo_p99_s=0.050)
    trial = run_trial(step, 200.0, settings, _rule(10, duration_s=60), clock, clock.sleep_until, 0)
    assert trial.stop_reason == "overloaded" and trial.passed is False
    assert len(trial.latencies_ns) < 662


def _details(result):
    from aigcbench.reports.server_text import record_details

    return record_details(result.outcome)


def _reason(result):
    from aigcbench.reports.server_text import invalid_reason

    return invalid_reason(result.outcome)


def _search(service_ns: int, slo_s: float, seed: int = 0):
    clock = FakeClock()
    step, _ = _fixed_service(clock, service_ns)
    scenario = ServerScenario(ServerSettings(slo_p99_s=slo_s, find_max_rate=True), seed=seed)
    return scenario.run(step, _rule(10, duration_s=2.0), clock)


def test_find_max_rate_brackets_then_bisects_to_the_tolerance() -> None:
    result = _search(10 * MS, 0.050)
    details = _details(result)
    assert _reason(result) is None
    trials = details["search"]["trials"]
    passing = [t["rate_qps"] for t in trials if t["passed"]]
    failing = [t["rate_qps"] for t in trials if not t["passed"]]
    capacity = details["capacity_items_per_s"]
    assert capacity == max(passing)
    assert min(r for r in failing if r > capacity) / capacity - 1 <= 0.05
    # Deterministic 10 ms service: capacity is below the saturation rate of 100/s,
    # and ρ = 0.5 passes (M/D/1 p99 there is ~3.5·D; with 662 queries the
    # early-stopping bound is near the maximum, ~4·D, still under 50 ms).
    assert 50 <= capacity < 100
    assert details["capacity_samples"] == len(result.latencies_ns) >= 662
    assert details["service_p50_s"] == details["service_p99_s"] == pytest.approx(0.010)  # each batch, timed alone
    assert details["capacity_p99_bound_s"] <= 0.050
    assert result.items == len(result.latencies_ns)
    assert result.total_items == sum(t["queries"] for t in trials)


def test_find_max_rate_is_repeatable_for_a_seed() -> None:
    assert _search(10 * MS, 0.050, seed=4).outcome == _search(10 * MS, 0.050, seed=4).outcome


def test_no_rate_meets_an_slo_below_the_service_time_and_no_trial_runs() -> None:
    result = _search(80 * MS, 0.050)
    assert _details(result)["capacity_items_per_s"] is None
    assert "over the SLO" in _reason(result)
    assert _details(result)["search"]["trials"] == []
    assert len(result.latencies_ns) == 3  # the calibration batches, nothing queued


def test_a_search_that_cannot_collect_662_queries_within_the_cap_is_refused_up_front() -> None:
    clock = FakeClock()
    step, calls = _fixed_service(clock, 1_000 * MS)  # 1 s a batch, SLO 10 s: 662 queries need ≥ 662 s
    scenario = ServerScenario(ServerSettings(slo_p99_s=10.0, find_max_rate=True))
    rule = StopRule(min_duration_s=1, min_iterations=10, max_duration_s=600)
    result = scenario.run(step, rule, clock)
    assert "over --max-duration 600 s" in _reason(result)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs --rate"),
        ({"find_max_rate": True}, "needs --slo-p99"),
        ({"rate_qps": 10.0, "max_batch": 0}, "--max-batch"),
        ({"rate_qps": -1.0}, "--rate"),
    ],
)
def test_settings_refuse_what_cannot_run(kwargs, message: str) -> None:
    with pytest.raises(UserError, match=message):
        ServerSettings(**kwargs)


def test_quantities_parse_units() -> None:
    assert parse_duration("50ms", "--slo-p99") == pytest.approx(0.05)
    assert parse_duration("2s", "--x") == 2.0 and parse_duration(0.5, "--x") == 0.5
    assert parse_rate("20000/h", "--rate") == pytest.approx(20000 / 3600)
    assert parse_rate("200", "--rate") == 200.0
    for bad in ("fast", "-3ms", "5 parsecs"):
        with pytest.raises(UserError):
            parse_duration(bad, "--slo-p99")
    with pytest.raises(UserError):
        parse_rate("0", "--rate")


@pytest.mark.parametrize(
    "args",
    [
        ["--scenario", "server"],
        ["--rate", "10"],
        ["--scenario", "server", "--rate", "10", "--batch-size", "2"],
        ["--scenario", "server", "--slo-p99", "soon", "--find-max-rate"],
        ["--scenario", "server", "--find-max-rate"],
    ],
)
def test_cli_refuses_bad_server_options_with_one_line(args: list[str], store_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "-w", "dcgan", "-b", "pytorch", "--size", "tiny", "--store", str(store_path), *args]
    )
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not store_path.exists()


def test_cli_server_run_in_a_worker_records_arrival_latency(tmp_path: Path, store_path: Path) -> None:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, [
        "run", "-w", "dcgan", "-b", "pytorch", "--size", "tiny", "--scenario", "server", "--rate", "100",
        "--max-batch", "2", "--max-wait", "2ms", "--duration", "0.5", "--min-iterations", "200",
        "--store", str(store_path), "--json", str(out),
    ])
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads(out.read_text())
    server = record["metrics"]["server"]
    # No SLO, so no verdict on latency (a loaded machine cannot fail this test); the shape is checked.
    assert server["queries"] == len(record["samples"]["latency_s"]) >= 200
    assert server["slo_p99_s"] is None and record["status"] == "ok"
    assert server["max_batch"] == 2 and record["scenario"]["batch_size"] == 2
    assert record["metrics"]["items"] == server["queries"]
    assert record["metrics"]["energy_source"].startswith("unavailable: ")
    assert record["metrics"]["energy_j_per_item"] is None
    assert record["metadata"]["worker"]["peak_rss_bytes"] > 0


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    from aigcbench.backends import registry as backends

    from .fake_backend import FakeBackend

    monkeypatch.setitem(backends.BUILTIN, "fake", "tests.fake_backend:FakeBackend")
    clock = FakeClock()
    for attr, value in {"clock": clock, "service_ns": itertools.repeat(10 * MS), "fail_after": None,
                        "output_offset": 0.0, "calls": 0, "closed": 0}.items():
        monkeypatch.setattr(FakeBackend, attr, value)
    return clock


def _server_config(**server):
    from aigcbench.bench.config import RunConfig

    return RunConfig.from_options({
        "workload": "dcgan", "backend": "fake", "size": "tiny", "scenario": "server", "duration": 2.0,
        "min_iterations": 10, "warmup": 0, "warmup_duration": 0, **server,
    })


def test_run_cell_records_the_capacity_at_the_top_of_the_metrics(fake: FakeClock) -> None:
    from aigcbench.bench.runner import run_cell

    record = run_cell(_server_config(slo_p99="50ms", find_max_rate=True), clock=fake)
    assert record.status == "ok", record.reason
    server = record.metrics["server"]
    assert record.metrics["capacity_items_per_s"] == server["capacity_items_per_s"] >= 50
    assert record.metrics["items"] == len(record.samples["latency_s"]) == server["capacity_samples"]
    # Energy per item covers every query of every trial, the probes' whole window.
    assert record.metrics["energy_window_items"] == sum(t["queries"] for t in server["search"]["trials"])
    # Queueing spreads latencies widely; that is not machine noise and is not flagged as such.
    assert not any("unstable" in w for w in record.warnings)


def test_run_cell_marks_a_missed_slo_invalid(fake: FakeClock) -> None:
    from aigcbench.bench.runner import run_cell

    record = run_cell(_server_config(rate="90", slo_p99="20ms"), clock=fake)
    assert record.status == "invalid"
    assert record.reason.startswith("server at 90 queries/s:")
