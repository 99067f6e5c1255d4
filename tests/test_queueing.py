"""The capacity simulation against queueing theory and against the `server` scenario's own batcher.

M/M/c (Erlang C) and M/D/1 (Pollaczek–Khinchine) give exact mean waits; the
simulation must land within 3 % and 5 % of them, with enough independent
replications that their standard error is under 1 %, so agreement is not luck.
The run_trial test drives the real scenario loop on a fake clock with the same
arrivals and service times and demands the same latency for every query.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from aigcbench.bench.errors import UserError
from aigcbench.bench.scenarios import server
from aigcbench.bench.scenarios.server import ServerSettings, run_trial
from aigcbench.bench.stats import percentile
from aigcbench.bench.stopping import StopRule
from aigcbench.reports.plan import queueing
from aigcbench.reports.plan import lockstep
from aigcbench.reports.plan.queueing import CapacityStatus

from .fakes import FakeClock, ServiceTimes

REPLICATIONS = 12


@pytest.fixture(scope="module")
def exponential() -> np.ndarray:
    """200k draws of an exponential service time with mean 1: the sample set resampled from."""
    return np.random.default_rng(12345).exponential(1.0, 200_000)


def erlang_c_wait(c: int, lam: float, mu: float) -> float:
    """Mean wait in queue of M/M/c: C(c, a) / (cμ − λ), a = λ/μ, C the Erlang C probability of waiting."""
    a = lam / mu
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top) / (c * mu - lam)


def replicated_waits(service: np.ndarray, rate: float, servers: int, queries: int) -> np.ndarray:
    runs = queueing.simulate_many(service, rate, servers=servers, queries=queries, seed=np.arange(REPLICATIONS))
    return np.array([run.mean_wait_s for run in runs])


@pytest.mark.parametrize(("servers", "rho"), [(1, 0.7), (2, 0.75), (4, 0.8)])
def test_mean_wait_matches_erlang_c_within_3_percent(exponential, servers: int, rho: float) -> None:
    mu = 1 / exponential.mean()  # the sample set's own rate, not the nominal 1
    rate = rho * servers * mu
    waits = replicated_waits(exponential, rate, servers, 200_000)
    expected = erlang_c_wait(servers, rate, mu)
    standard_error = waits.std(ddof=1) / math.sqrt(len(waits)) / expected
    assert standard_error < 0.01  # the 3 % band is at least 3 standard errors wide
    assert waits.mean() == pytest.approx(expected, rel=0.03)


def test_mean_wait_matches_pollaczek_khinchine_for_md1() -> None:
    rho, service = 0.7, 0.010
    waits = replicated_waits(np.array([service]), rho / service, 1, 100_000)
    expected = rho * service / (2 * (1 - rho))
    assert waits.std(ddof=1) / math.sqrt(len(waits)) / expected < 0.01
    assert waits.mean() == pytest.approx(expected, rel=0.05)


def test_mm1_sojourn_tail_is_exponential(exponential) -> None:
    mu = 1 / exponential.mean()
    lam = 0.7 * mu
    run = queueing.simulate(exponential, lam, queries=400_000, seed=3)
    assert run.p99_s == pytest.approx(math.log(100) / (mu - lam), rel=0.04)
    assert run.p50_s == pytest.approx(math.log(2) / (mu - lam), rel=0.04)
    assert run.utilisation == pytest.approx(0.7, rel=0.02)
    assert run.mean_batch == 1.0


def _arrivals_ns(rate: float, start_ns: int, seed: int, count: int) -> np.ndarray:
    """The scheduled arrivals run_trial will draw, from the scenario's own arrival generator."""
    arrivals = server._Arrivals(rate, start_ns, seed)
    times = []
    for _ in range(count):
        times.append(arrivals.next_ns)
        arrivals.advance()
    return np.array(times)


@pytest.mark.parametrize(("rate", "max_wait_s"), [(1000.0, 0.002), (1300.0, 0.0005)])
def test_the_simulation_is_the_server_scenarios_own_batcher(rate: float, max_wait_s: float) -> None:
    queries, seed, clock = 3000, 4, FakeClock()
    service_ns = np.random.default_rng(9).integers(1_000_000, 5_000_000, queries)
    step = ServiceTimes(clock, service_ns.tolist())
    rule = StopRule(min_duration_s=0, min_iterations=queries, max_iterations=queries, max_duration_s=1e6)
    start = clock()
    arrivals = _arrivals_ns(rate, start, seed, queries)
    trial = run_trial(step, rate, ServerSettings(rate_qps=rate, max_batch=4, max_wait_s=max_wait_s), rule, clock,
                      clock.sleep_until, seed)
    assert len(trial.latencies_ns) == queries
    run = queueing.simulate(service_ns / 1e9, rate, max_batch=4, max_wait_s=max_wait_s, arrivals_s=arrivals / 1e9,
                            service_order="sequence", warmup=0.0)
    assert np.abs(run.latencies_s - np.array(trial.latencies_ns) / 1e9).max() < 1e-6
    assert run.mean_batch == pytest.approx(queries / trial.batches)
    assert 1.5 < run.mean_batch < 4  # both partial (timed-out) and full batches occurred


CONFIGS = [(1, 0.0, 1, 0.97), (4, 0.5, 1, 0.95), (8, 0.01, 1, 0.99), (8, 0.0, 1, 0.6), (4, 0.3, 3, 0.8),
           (1, 0.0, 4, 0.9)]  # (B, max_wait, servers, load): heavy loads make chains and bursts, light ones idle


def test_segments_run_side_by_side_give_the_sequential_result_bit_for_bit(monkeypatch, exponential) -> None:
    batch, wait, servers, load = (np.array(column) for column in zip(*CONFIGS))
    rate = load * servers * batch / exponential.mean()
    kwargs = dict(max_batch=batch, max_wait_s=wait, servers=servers, queries=30_000, seed=5)
    side_by_side = queueing.simulate_many(exponential, rate, **kwargs)
    monkeypatch.setattr(lockstep, "_LANES", 1)  # one lane per configuration: the plain sequential loop
    for i, run in enumerate(side_by_side):
        alone = queueing.simulate(exponential, rate[i], **{key: value[i] if key not in ("queries", "seed") else value
                                                           for key, value in kwargs.items()})
        assert np.array_equal(run.latencies_s, alone.latencies_s), CONFIGS[i]


def test_statistics_are_nearest_rank_after_the_warm_up(exponential) -> None:
    run = queueing.simulate(exponential, 0.5, queries=4000, seed=1)
    assert len(run.latencies_s) == 4000 - 200
    ordered = sorted(run.latencies_s)
    assert run.p99_s == percentile(ordered, 99) and run.p50_s == percentile(ordered, 50)
    assert run.mean_latency_s == pytest.approx(np.mean(run.latencies_s))


def test_a_load_beyond_the_stability_limit_is_unstable_with_infinite_p99(exponential) -> None:
    run = queueing.simulate(exponential, 2.1 / exponential.mean(), max_batch=2)
    assert not run.stable and run.p99_s == math.inf


def test_capacity_grows_with_the_slo() -> None:
    service = np.random.default_rng(2).gamma(4.0, 0.025, 500)  # mean 0.1 s, some spread
    slos = [0.3, 0.4, 0.8, 1.6]  # its p99 alone is 0.27 s
    caps = queueing.capacities(service, slos, queries=5000, tolerance=0.01)
    rates = [cap.rate_qps for cap in caps]
    assert all(cap.status is CapacityStatus.MET for cap in caps)
    assert rates == sorted(rates) and rates[0] < rates[-1]
    assert all(cap.p99_s <= slo and cap.rate_qps < cap.stability_limit_qps for cap, slo in zip(caps, slos))
    assert all(cap.bracket_qps[1] <= cap.bracket_qps[0] * 1.01 for cap in caps)


def test_pooled_servers_carry_at_least_their_share(exponential) -> None:
    one, four = queueing.capacities(exponential, 8.0, servers=[1, 4], queries=5000)
    assert four.rate_qps >= 0.9 * 4 * one.rate_qps  # one queue for four does better than four queues
    assert four.rate_qps <= 4 * one.stability_limit_qps


def test_servers_needed_is_the_smallest_count_that_meets_the_slo(exponential) -> None:
    rate, slo = 6.0, 8.0  # one exponential service time alone has p99 4.6
    count, run = queueing.servers_needed(exponential, rate, slo, queries=5000)
    assert count is not None and run.p99_s <= slo and run.servers == count
    assert count > math.floor(rate * exponential.mean())  # not below the stability bound
    fewer = queueing.simulate(exponential, rate, servers=count - 1, queries=5000)
    assert fewer.p99_s > slo


def test_an_slo_below_one_batchs_service_time_has_no_capacity() -> None:
    service = np.full(100, 0.5)
    cap = queueing.capacity(service, 0.4)
    assert cap.rate_qps == 0 and cap.status is CapacityStatus.SERVICE_OVER_SLO
    assert "0.5" in cap.reason and "0.4" in cap.reason
    assert queueing.servers_needed(service, 1.0, 0.4) == (None, None)


@pytest.mark.parametrize("bad", [dict(service_s=[]), dict(service_s=[-1.0]), dict(rate_qps=0.0),
                                 dict(max_batch=0), dict(servers=1.5), dict(max_wait_s=-1.0),
                                 dict(service_order="shuffled"), dict(queries=5)])
def test_bad_input_is_a_user_error(bad) -> None:
    args = dict(service_s=[0.1], rate_qps=1.0) | bad
    with pytest.raises(UserError):
        queueing.simulate(args.pop("service_s"), args.pop("rate_qps"), **args)
