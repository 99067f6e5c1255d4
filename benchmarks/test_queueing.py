"""What the planner's queueing simulation costs: capacities over a catalog-sized set of configurations.

`aigcbench plan` finds, per device and batch size, the highest Poisson rate
meeting a p99 SLO. Here 30 made-up devices × 4 batch sizes (per-batch service
times from 20 ms to 2 s, 5 % spread, 200 samples each) are searched in one
`capacities` call, the way the planner calls it. Next to it, one configuration
simulated by a plain Python loop over batches (the batcher written out
directly) and by `simulate`, which must agree to rounding. Timings are printed
at the end of `make bench`; nothing is asserted about speed.
"""

from __future__ import annotations

import bisect
import math
import time

import numpy as np

from aigcbench.reports.plan import queueing

DEVICES, BATCHES, SLO_S, MAX_WAIT_S = 30, (1, 2, 4, 8), 2.0, 0.05


def _catalog() -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(0)
    sets, batches = [], []
    for base in np.exp(rng.uniform(math.log(0.02), math.log(0.4), DEVICES)):
        for batch in BATCHES:
            sets.append(base * (0.4 + 0.6 * batch) * rng.lognormal(0, 0.05, 200))
            batches.append(batch)
    return sets, batches


def test_capacities_over_a_catalog(benchmark, overhead_lines) -> None:
    sets, batches = _catalog()
    benchmark.group = "queueing"
    caps = benchmark.pedantic(queueing.capacities, args=(sets, SLO_S),
                              kwargs=dict(max_batch=batches, max_wait_s=MAX_WAIT_S), rounds=1, iterations=1)
    met = [cap for cap in caps if cap.status is queueing.CapacityStatus.MET]
    assert met and all(0 < cap.rate_qps < cap.stability_limit_qps for cap in met)
    overhead_lines.append(f"queueing: capacities of {len(sets)} configurations "
                          f"({queueing.QUERIES} queries per trial): {benchmark.stats.stats.max:.2f} s")


def _plain_loop(arrivals: np.ndarray, service: np.ndarray, batch: int, max_wait: float) -> np.ndarray:
    """The batcher, one batch per Python iteration, with `simulate`'s service keys (see `lockstep._run`)."""
    n, free, head, key = len(arrivals), -math.inf, 0, 0
    latencies = np.empty(n)
    while head < n:
        last = head + batch - 1
        ready = min(arrivals[head] + max_wait, arrivals[last] if last < n else math.inf)
        key = head if free <= ready else key
        start = max(free, ready)
        done = start + service[key]
        taken = bisect.bisect_right(arrivals, start, head, min(head + batch, n)) - head
        latencies[head : head + taken] = done - arrivals[head : head + taken]
        free, head, key = done, head + taken, key + 1
    return latencies


def test_one_configuration_against_a_plain_loop(benchmark, overhead_lines) -> None:
    sets, _ = _catalog()
    samples, batch, rate = sets[5], 2, 0.8 * 2 / sets[5].mean()
    unit, uniforms = queueing._streams(0, queueing.QUERIES, None)
    arrivals, service = unit / rate, queueing._table([samples], uniforms, False)[0]
    start = time.perf_counter()
    plain = _plain_loop(list(arrivals), service, batch, MAX_WAIT_S)
    plain_s = time.perf_counter() - start
    benchmark.group = "queueing"
    run = benchmark.pedantic(queueing.simulate, args=(samples, rate),
                             kwargs=dict(max_batch=batch, max_wait_s=MAX_WAIT_S), rounds=3, iterations=1)
    warm = len(plain) - len(run.latencies_s)
    assert np.allclose(run.latencies_s, plain[warm:], rtol=1e-9, atol=1e-12)
    overhead_lines.append(f"queueing: one configuration, {queueing.QUERIES} queries: plain Python loop "
                          f"{plain_s * 1e3:.0f} ms, simulate {benchmark.stats.stats.min * 1e3:.0f} ms")
