"""Measurement validity: the real scenario code, fed a known distribution, reports the truth.

A step that 'takes' service times drawn from a known distribution on a fake
clock is driven by the real latency, throughput and server scenarios; the
percentiles they report must match the distribution's quantiles within the
stated tolerances (sampling error at these n is well inside them; the seeds
are fixed so the tests are deterministic).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from aigcbench.bench.scenarios import SCENARIOS
from aigcbench.bench.scenarios.server import ServerSettings, run_trial
from aigcbench.bench.stats import summarize
from aigcbench.bench.stopping import StopRule

from .fakes import FakeClock, ServiceTimes

N = 20_000
# Relative tolerance per percentile: the standard error of a sample quantile
# grows in the tail (≈ 1 % at p50, ≈ 3 % at p99 for n = 20 000 lognormal draws).
TOLERANCE = {"p50": 0.02, "p90": 0.03, "p99": 0.06}


def _rule(n: int) -> StopRule:
    return StopRule(min_duration_s=0, min_iterations=n, max_iterations=n)


@pytest.mark.parametrize("scenario", ["latency", "throughput"])
def test_closed_loop_percentiles_match_a_lognormal_service_time(scenario: str) -> None:
    sigma, median_s = 0.4, 0.010
    truth = scipy_stats.lognorm(s=sigma, scale=median_s)
    draws = truth.rvs(size=N, random_state=np.random.default_rng(1))
    clock = FakeClock()
    step = ServiceTimes(clock, (int(d * 1e9) for d in draws))
    loop = SCENARIOS[scenario]().run(step, _rule(N), clock)
    summary = summarize([ns / 1e9 for ns in loop.latencies_ns])
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        assert getattr(summary, name) == pytest.approx(truth.ppf(q), rel=TOLERANCE[name]), name
    assert summary.mean == pytest.approx(truth.mean(), rel=0.02)
    # Throughput is items over the loop's wall time, which here is the sum of service times.
    assert loop.wall_ns == sum(loop.latencies_ns)


def test_server_sojourn_times_match_the_mm1_distribution() -> None:
    """M/M/1: the time in system is exponential with rate μ − λ, so p50 and p99 are known exactly."""
    # Queue waits are strongly autocorrelated (busy periods), so the tail needs
    # far more queries than independent draws would: 100 000 at ρ = 0.6.
    n, mu, lam = 100_000, 100.0, 60.0
    rng = np.random.default_rng(2)
    clock = FakeClock()
    step = ServiceTimes(clock, (int(x * 1e9) for x in rng.exponential(1 / mu, size=2 * n)))
    trial = run_trial(step, lam, ServerSettings(rate_qps=lam), _rule(n), clock, clock.sleep_until, seed=5)
    summary = summarize([ns / 1e9 for ns in trial.latencies_ns])
    rate = mu - lam
    assert summary.mean == pytest.approx(1 / rate, rel=0.05)
    assert summary.p50 == pytest.approx(math.log(2) / rate, rel=0.05)
    assert summary.p99 == pytest.approx(math.log(100) / rate, rel=0.10)
