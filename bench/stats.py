"""Statistics derived from raw latency samples.

Percentiles use the **nearest-rank** definition: the p-th percentile of n
sorted samples is the value at 1-based rank ceil(p/100 * n). It always returns
a value that was actually observed (no interpolation), which is what a latency
SLO is about: "99 % of requests finished within this time".

The early-stopping bound follows MLPerf LoadGen (`loadgen/early_stopping.cc`):
treat each query as a Bernoulli trial that is "over latency" with probability
1 - p; the bound is the smallest observed latency L such that, with 99 %
confidence, the true p-th percentile is at most L. It needs a minimum number of
samples (64 for p90, 662 for p99) and is `None` below that.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

EARLY_STOPPING_CONFIDENCE = 0.99
INSTABILITY_REL_IQR = 0.10


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values, p in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _over_latency_odds(passing: int, over: int, p: float) -> float:
    """P(at most `over` over-latency queries among passing+over), each over with prob 1-p.

    This is the binomial CDF written as a regularized incomplete beta function,
    as MLPerf does: I_p(passing, over + 1).
    """
    from scipy.special import betainc

    return float(betainc(passing, over + 1, p))


def early_stopping_min_samples(p: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """Fewest samples for which an early-stopping bound at percentile p exists.

    With one over-latency query allowed (MLPerf's t = 1), the minimum is h + 1
    where h is the smallest count of passing queries with odds < 1 - confidence.
    """
    lo, hi = 1, 1
    while _over_latency_odds(hi, 1, p) >= 1 - confidence:
        lo, hi = hi, hi * 2
    while lo < hi:  # smallest h with odds < 1 - confidence
        mid = (lo + hi) // 2
        if _over_latency_odds(mid, 1, p) < 1 - confidence:
            hi = mid
        else:
            lo = mid + 1
    return lo + 1


def early_stopping_discarded(n: int, p: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int | None:
    """How many of the highest samples MLPerf would discard; None if n is too small.

    The largest t such that n - t passing queries with t over latency still
    give odds < 1 - confidence; the bound is then the t-th largest sample, and
    t - 1 samples above it are discarded. Odds grow with t, so bisection works.
    """
    if n < early_stopping_min_samples(p, confidence):
        return None
    lo, hi = 1, n - 1  # t = 1 passes (checked above); find the largest passing t
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _over_latency_odds(n - mid, mid, p) < 1 - confidence:
            lo = mid
        else:
            hi = mid - 1
    return lo - 1


def early_stopping_bound(sorted_values: Sequence[float], p: float) -> float | None:
    """MLPerf's early-stopping estimate of the p-quantile (p in (0, 1)); None if too few samples."""
    discarded = early_stopping_discarded(len(sorted_values), p)
    if discarded is None:
        return None
    return sorted_values[len(sorted_values) - 1 - discarded]


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one sample set, all in the samples' unit."""

    n: int
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    iqr: float
    rel_iqr: float | None
    early_stopping_p90: float | None
    early_stopping_p99: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def summarize(values: Sequence[float]) -> Summary:
    """Summarize raw samples (any unit); needs at least one sample."""
    if not values:
        raise ValueError("cannot summarize zero samples")
    ordered = sorted(values)
    median = percentile(ordered, 50)
    iqr = percentile(ordered, 75) - percentile(ordered, 25)
    return Summary(
        n=len(ordered),
        mean=statistics.fmean(ordered),
        stdev=_stdev(ordered),
        min=ordered[0],
        max=ordered[-1],
        p50=median,
        p90=percentile(ordered, 90),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        iqr=iqr,
        rel_iqr=iqr / median if median > 0 else None,
        early_stopping_p90=early_stopping_bound(ordered, 0.90),
        early_stopping_p99=early_stopping_bound(ordered, 0.99),
    )


def relative_iqr(values: Sequence[float]) -> float:
    """IQR divided by the median: the spread measure of the adaptive stop and the instability warning."""
    ordered = sorted(values)
    median = percentile(ordered, 50)
    if median <= 0:
        return math.inf
    return (percentile(ordered, 75) - percentile(ordered, 25)) / median


def instability_warning(summary: Summary, what: str = "latency") -> str | None:
    """A warning text when the spread is too large to trust a single number."""
    if summary.n >= 4 and summary.rel_iqr is not None and summary.rel_iqr > INSTABILITY_REL_IQR:
        return (
            f"unstable {what}: IQR/median = {summary.rel_iqr:.2f} > {INSTABILITY_REL_IQR:.2f}; "
            "the machine was noisy or the workload varies; compare within one run"
        )
    return None


def _stdev(values: Sequence[float]) -> float:
    """Sample standard deviation, two-pass with `math.fsum` (correctly rounded sums).

    `statistics.stdev` computes it in exact fractions, which costs a tenth of
    a second per 100 000 samples, and a record may hold millions; this agrees
    with it to within a few ulps on latency data.
    """
    n = len(values)
    if n < 2:
        return 0.0
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1))
