"""Statistics against known distributions and MLPerf's published early-stopping numbers."""

from __future__ import annotations

import math
import random

import pytest

from aigcbench.bench.stats import (
    early_stopping_bound,
    early_stopping_discarded,
    early_stopping_min_samples,
    instability_warning,
    percentile,
    relative_iqr,
    summarize,
)


def test_nearest_rank_percentiles_of_1_to_100() -> None:
    values = list(range(1, 101))
    assert [percentile(values, p) for p in (0, 1, 25, 50, 90, 99, 100)] == [1, 1, 25, 50, 90, 99, 100]


def test_nearest_rank_returns_observed_values_not_interpolations() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 20.0  # rank ceil(0.5 * 4) = 2
    assert percentile(values, 51) == 30.0  # rank ceil(2.04) = 3
    assert percentile(values, 99) == 40.0


@pytest.mark.parametrize("bad", [-1, 100.5])
def test_percentile_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], bad)


def test_summary_of_a_shuffled_uniform_grid_is_exact() -> None:
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1000 ms
    random.Random(3).shuffle(values)
    s = summarize(values)
    assert s.n == 1000
    assert (s.p50, s.p90, s.p95, s.p99) == (0.5, 0.9, 0.95, 0.99)
    assert (s.min, s.max) == (0.001, 1.0)
    assert s.mean == pytest.approx(0.5005)
    assert s.stdev == pytest.approx(math.sqrt((1000**2 - 1) / 12) / 1000 * math.sqrt(1000 / 999), rel=1e-9)
    assert s.iqr == pytest.approx(0.75 - 0.25)
    assert s.rel_iqr == pytest.approx(1.0)


def test_summary_of_one_sample_has_zero_spread() -> None:
    s = summarize([0.25])
    assert (s.p50, s.p99, s.stdev, s.iqr) == (0.25, 0.25, 0.0, 0.0)
    assert s.early_stopping_p90 is None


def test_early_stopping_minimum_samples_match_mlperf() -> None:
    # MLPerf LoadGen: "Processed at least 64 queries" (p90); 662 for p99.
    assert early_stopping_min_samples(0.90) == 64
    assert early_stopping_min_samples(0.99) == 662


@pytest.mark.parametrize(
    ("n", "discarded"),
    # From published MLPerf SingleStream summaries ("Would discard N highest latency queries").
    [(2048, 172), (2116, 178), (2145, 181), (4_776_846, 476_158)],
)
def test_early_stopping_discard_counts_match_published_mlperf_runs(n: int, discarded: int) -> None:
    assert early_stopping_discarded(n, 0.90) == discarded


def test_early_stopping_needs_enough_samples() -> None:
    assert early_stopping_bound(list(range(63)), 0.90) is None
    assert early_stopping_bound(list(range(64)), 0.90) == 63  # t = 1: nothing discarded, the maximum
    assert early_stopping_bound(list(range(661)), 0.99) is None
    assert early_stopping_bound(list(range(662)), 0.99) == 661


def test_early_stopping_bound_is_the_sample_above_the_discarded_tail() -> None:
    values = list(range(1, 2049))
    bound = early_stopping_bound(values, 0.90)
    assert bound == 2048 - 172
    # The bound is conservative: at or above the plain p90.
    assert bound >= percentile(values, 90)


def test_summary_reports_early_stopping_only_when_claimable() -> None:
    s = summarize([float(i) for i in range(1, 101)])
    assert s.early_stopping_p90 is not None and s.early_stopping_p90 >= s.p90
    assert s.early_stopping_p99 is None


def test_relative_iqr_and_instability_warning() -> None:
    steady = [1.0, 1.0, 1.01, 1.02, 0.99, 1.0, 1.0, 1.0]
    noisy = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    assert relative_iqr(steady) < 0.1
    assert instability_warning(summarize(steady)) is None
    warning = instability_warning(summarize(noisy))
    assert warning is not None and "IQR/median = 1.00" in warning


@pytest.mark.parametrize("n", [2, 3, 1000, 100_000])
def test_the_summary_stdev_agrees_with_the_exact_one(n: int) -> None:
    import statistics

    rng = random.Random(n)
    values = sorted(rng.lognormvariate(-7.0, 0.6) for _ in range(n))
    assert summarize(values).stdev == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert summarize([0.5]).stdev == 0.0
