"""The stopping rule and the measured loop, driven by a fake clock."""

from __future__ import annotations

import itertools

import pytest

from aigcbench.bench.errors import UserError
from aigcbench.bench.measure import measure, warm_up
from aigcbench.bench.stopping import StopRule, WarmupRule

from .fakes import FakeClock, ServiceTimes

MS = 1_000_000


def test_needs_both_min_duration_and_min_count() -> None:
    rule = StopRule(min_duration_s=1.0, min_iterations=10)
    assert not rule.should_stop([MS] * 9, 5 * 10**9)  # long enough, too few
    assert not rule.should_stop([MS] * 50, 10**9 - 1)  # enough, too short
    assert rule.should_stop([MS] * 10, 10**9)


def test_hard_caps_end_any_loop() -> None:
    rule = StopRule(min_duration_s=100, min_iterations=10, max_iterations=20, max_duration_s=2)
    assert rule.should_stop([MS] * 20, 0)
    assert rule.should_stop([MS] * 3, 2 * 10**9)
    assert rule.stop_reason([MS] * 20, 0) == "max-iterations"


def test_adaptive_rule_stops_early_on_a_tight_distribution_only() -> None:
    rule = StopRule(min_duration_s=100, min_iterations=10, target_rel_iqr=0.05)
    assert rule.should_stop([MS] * 32, 10**8)
    assert rule.stop_reason([MS] * 32, 10**8) == "adaptive-rel-iqr"
    spread = [MS, 2 * MS] * 16
    assert not rule.should_stop(spread, 10**8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_duration_s": -1},
        {"min_iterations": 0},
        {"min_iterations": 10, "max_iterations": 5},
        {"target_rel_iqr": 0},
        {"max_duration_s": 0},
    ],
)
def test_invalid_rules_name_the_bad_value(kwargs: dict) -> None:
    with pytest.raises(UserError) as error:
        StopRule(**kwargs)
    assert str(next(iter(kwargs.values()))) in str(error.value)


def test_measure_records_each_service_time_exactly() -> None:
    clock = FakeClock()
    times = [3 * MS, 1 * MS, 2 * MS] * 10
    step = ServiceTimes(clock, times)
    result = measure(step, StopRule(min_duration_s=0.05, min_iterations=5), clock)
    # 0.05 s at 2 ms mean needs 25 calls: 3+1+2 = 6 ms per three calls → 27 calls reach 54 ms
    assert result.latencies_ns == tuple(times[: result.iterations])
    assert sum(result.latencies_ns) >= 50 * MS and sum(result.latencies_ns[:-1]) < 50 * MS
    assert result.wall_ns == sum(result.latencies_ns)
    assert result.stop_reason == "min-duration-and-count"


def test_throughput_wall_time_includes_time_between_calls() -> None:
    clock = FakeClock()
    step = ServiceTimes(clock, itertools.repeat(MS))
    # Harness work between calls (here: 1 ms per iteration in the progress hook) is in the wall time.
    result = measure(step, StopRule(min_duration_s=0, min_iterations=10), clock, on_iteration=lambda n, t: clock.advance(MS))
    assert result.iterations == 10
    assert result.latencies_ns == (MS,) * 10
    assert result.wall_ns == 10 * MS + 9 * MS  # the last hook runs after the last call ends


def test_warm_up_meets_count_and_duration() -> None:
    clock = FakeClock()
    step = ServiceTimes(clock, itertools.repeat(100 * MS))
    count, elapsed = warm_up(step, WarmupRule(iterations=2, duration_s=0.5), clock)
    assert (count, elapsed) == (5, 500 * MS)
    none, _ = warm_up(ServiceTimes(clock, itertools.repeat(MS)), WarmupRule(iterations=0, duration_s=0), clock)
    assert none == 0
