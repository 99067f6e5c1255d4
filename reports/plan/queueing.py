"""Capacity under a p99 SLO: the `server` scenario's dynamic batcher as a discrete-event simulation.

The model is `bench/scenarios/server.run_trial`'s loop on a simulated clock,
with c identical servers behind its one FIFO queue. Queries arrive as a Poisson
process; a free server dispatches a batch when `max_batch` (B) queries wait or
when the oldest has waited `max_wait_s` (w); the batch carries the queries that
have arrived by then, at most B, and is padded to B, so its service time S does
not depend on how many real queries it holds. With the earliest-free server
free at f and the oldest waiting query's arrival a_h, that loop dispatches at

    d = max(f, a_h, min(a_h + w, a_{h+B-1}))

(it sleeps until the earlier of the oldest query's deadline and the next
arrival while fewer than B wait, and dispatches at once when a batch ends
after both). The batch completes at d + S, S drawn with replacement from the
given samples (`service_order="sequence"` uses them in order instead: the
proof, in the tests, that this is the scenario's own batcher). A query's
latency runs from its arrival to its batch's completion; its wait is d minus
its arrival (queueing plus the batching wait). The system starts empty, so
the first `WARMUP_SHARE` (5 %) of queries, which see a shorter queue than the
steady state, are left out of every statistic. p50/p99 are nearest-rank
(numpy's method="inverted_cdf"), as in `aigcbench.bench.stats.percentile`.

Common random numbers: arrival i is E_i / λ, E the unit-rate arrival times
drawn once from the seed, and service times come from one table of draws
indexed by a key: an idle dispatch (its server free before the batch was
ready) has the key of its head query, each busy one the key after the batch
before it. Keys never repeat, so service times stay iid, and a search over λ
sees the same randomness at every rate. The simulation runs in units where
the rate is 1 (service times scaled by λ), so every configuration compares
against the same exact E.

The engine (lanes, segments, bursts) is in `lockstep`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from ...bench.errors import UserError
from .lockstep import P_TAIL, SimResult, _dispatches, _measure, _nearest_rank, _streams, _table

WARMUP_SHARE = 0.05
QUERIES = 20_000
_MAX_ROUNDS = 40
_WINDOW = 4  # server counts tried at once by servers_needed




class CapacityStatus(enum.Enum):
    MET = "met"  # bisection converged on a rate meeting the SLO
    SERVICE_OVER_SLO = "service-over-slo"  # more than 1 % of batches alone take longer than the SLO
    NO_PASSING_RATE = "no-passing-rate"  # even the lowest rate tried missed the SLO (e.g. max_wait + service)


@dataclass(frozen=True, eq=False)
class Capacity:
    """The highest Poisson rate whose simulated p99 meets the SLO (one item per query)."""

    rate_qps: float
    items_per_s: float
    p99_s: float | None
    utilisation: float | None
    status: CapacityStatus
    reason: str | None  # one line, with the numbers, when rate_qps is 0
    bracket_qps: tuple[float, float]  # (highest passing, lowest failing) rate tried
    stability_limit_qps: float  # servers × B / mean service
    result: SimResult | None = field(default=None, repr=False)


def simulate(service_s, rate_qps: float, *, max_batch: int = 1, max_wait_s: float = 0.0, servers: int = 1,
             queries: int = QUERIES, seed: int = 0, arrivals_s=None, service_order: str = "resample",
             warmup: float = WARMUP_SHARE) -> SimResult:
    """One configuration: `simulate_many` with K = 1. `arrivals_s` replaces the Poisson arrivals."""
    return simulate_many([service_s], [rate_qps], max_batch=max_batch, max_wait_s=max_wait_s, servers=servers,
                         queries=queries, seed=seed, arrivals_s=arrivals_s, service_order=service_order,
                         warmup=warmup)[0]


def simulate_many(service_s, rate_qps, *, max_batch=1, max_wait_s=0.0, servers=1, queries: int = QUERIES,
                  seed=0, arrivals_s=None, service_order: str = "resample",
                  warmup: float = WARMUP_SHARE) -> tuple[SimResult, ...]:
    """K configurations in lockstep: every argument is a scalar or K values (service_s: one set or K sets).

    `seed` may differ per configuration (independent replications); configurations
    sharing a seed share their arrival stream and their resampling draws.
    With `arrivals_s` (times in seconds, sorted) all configurations use those
    arrivals; `rate_qps` then only decides stability.
    """
    if service_order not in ("resample", "sequence"):
        raise UserError(f"service_order must be 'resample' or 'sequence', got {service_order!r}")
    if not 0 <= warmup < 1:
        raise UserError(f"warm-up share must be in [0, 1), got {warmup}")
    sets, rate, bm, w, c, seeds = _configs(service_s, rate_qps=rate_qps, max_batch=max_batch,
                                           max_wait_s=max_wait_s, servers=servers, seed=seed)
    arrivals = None if arrivals_s is None else np.asarray(arrivals_s, dtype=float)
    if arrivals is not None:
        if arrivals.ndim != 1 or not np.isfinite(arrivals).all() or (np.diff(arrivals) < 0).any():
            raise UserError("arrival times must be finite and sorted")
        queries, seeds = len(arrivals), np.zeros_like(seeds)
    if queries < 20:
        raise UserError(f"a simulation needs at least 20 queries, got {queries}")
    stable = rate * np.array([s.mean() for s in sets]) < c * bm
    results: list[SimResult | None] = [None] * len(sets)
    for i in np.flatnonzero(~stable):
        results[i] = SimResult(float(rate[i]), int(bm[i]), int(c[i]), False, math.inf, math.inf, math.inf,
                               math.inf, 1.0, float(bm[i]), np.empty(0))
    sequence = service_order == "sequence"
    for value, many in {(s, m) for s, m in zip(seeds[stable], c[stable] > 1)}:  # one server has fast paths
        idx = np.flatnonzero(stable & (seeds == value) & ((c > 1) == many))
        e, u = _streams(int(value), queries, arrivals)
        scale = rate[idx] if arrivals is None else np.ones(len(idx))
        table = _table([sets[i] for i in idx], u, sequence)
        D, C, valid = _dispatches(e, table, scale, bm[idx], w[idx] * scale, c[idx], sequence)
        for i, r in zip(idx, _measure(e, scale, D, C, valid, warmup, (rate[idx], bm[idx], c[idx]))):
            results[i] = r
    return tuple(results)  # type: ignore[arg-type]


def capacity(service_s, slo_p99_s: float, *, max_batch: int = 1, max_wait_s: float = 0.0, servers: int = 1,
             tolerance: float = 0.01, queries: int = QUERIES, seed: int = 0) -> Capacity:
    """The highest rate meeting the SLO for one configuration: `capacities` with K = 1."""
    return capacities([service_s], slo_p99_s, max_batch=max_batch, max_wait_s=max_wait_s, servers=servers,
                      tolerance=tolerance, queries=queries, seed=seed)[0]


def capacities(service_s, slo_p99_s, *, max_batch=1, max_wait_s=0.0, servers=1, tolerance: float = 0.01,
               queries: int = QUERIES, seed: int = 0) -> tuple[Capacity, ...]:
    """Bisect λ in (0, servers·B/mean S) for K configurations at once, until hi/lo − 1 ≤ tolerance.

    Each round simulates every unfinished configuration at its midpoint in one
    `simulate_many` call. The search assumes p99 grows with the rate, which
    holds path by path for B = 1; with batching and max_wait > 0 light load can
    be slower than moderate load (partial batches wait out the timeout), so the
    answer is the highest passing rate the bisection met.
    """
    if not 0 < tolerance < 1:
        raise UserError(f"tolerance must be in (0, 1), got {tolerance}")
    sets, slo, bm, w, c = _configs(service_s, slo_p99_s=slo_p99_s, max_batch=max_batch, max_wait_s=max_wait_s,
                                  servers=servers)
    limit = c * bm / np.array([s.mean() for s in sets])
    tails = np.array([_nearest_rank(np.sort(s), P_TAIL) for s in sets])
    lo, hi, best = np.zeros(len(sets)), limit.copy(), [None] * len(sets)
    todo = tails <= slo
    for _ in range(_MAX_ROUNDS):
        todo &= ~((lo > 0) & (hi <= lo * (1 + tolerance))) & (hi > limit * 2.0**-20)
        idx = np.flatnonzero(todo)
        if not len(idx):
            break
        mid = (lo[idx] + hi[idx]) / 2
        runs = simulate_many([sets[i] for i in idx], mid, max_batch=bm[idx], max_wait_s=w[idx], servers=c[idx],
                             queries=queries, seed=seed)
        for i, m, run in zip(idx, mid, runs):
            if run.p99_s <= slo[i]:
                lo[i], best[i] = m, run
            else:
                hi[i] = m
    return tuple(_capacity(*args) for args in zip(lo, hi, best, limit, tails, slo))


def _capacity(lo, hi, best, limit, tail, slo) -> Capacity:
    lo, hi, limit, tail, slo = (float(x) for x in (lo, hi, limit, tail, slo))
    if best is not None:
        return Capacity(lo, lo, best.p99_s, best.utilisation, CapacityStatus.MET, None, (lo, hi), limit, best)
    if tail > slo:
        status, reason = CapacityStatus.SERVICE_OVER_SLO, (
            f"one batch alone takes {tail:.4g} s at p99, over the SLO of {slo:.4g} s")
    else:
        status, reason = CapacityStatus.NO_PASSING_RATE, (
            f"no rate tried, from {limit:.4g} down to {hi:.4g} queries/s, met the SLO of {slo:.4g} s")
    return Capacity(0.0, 0.0, None, None, status, reason, (0.0, hi), limit)


def servers_needed(service_s, rate_qps: float, slo_p99_s: float, *, max_batch: int = 1, max_wait_s: float = 0.0,
                   max_servers: int = 10_000, queries: int = QUERIES,
                   seed: int = 0) -> tuple[int | None, SimResult | None]:
    """The smallest server count whose p99 at `rate_qps` meets the SLO, and its run: `servers_needed_many`, K = 1."""
    return servers_needed_many([service_s], rate_qps, slo_p99_s, max_batch=max_batch, max_wait_s=max_wait_s,
                               max_servers=max_servers, queries=queries, seed=seed)[0]


def servers_needed_many(service_s, rate_qps, slo_p99_s, *, max_batch=1, max_wait_s=0.0, max_servers: int = 10_000,
                        queries: int = QUERIES, seed: int = 0) -> tuple[tuple[int | None, SimResult | None], ...]:
    """Per configuration, the smallest c meeting the SLO: (None, None) when the service alone misses it.

    Counts below the stability bound floor(a) + 1, a = λ·mean S / B, fail
    unseen. The first round tries `_WINDOW` counts from the square-root staffing
    guess ⌈a + √a⌉ down to the bound; then, while no count passed, windows
    further up with a doubling stride, and between the highest failing and the
    lowest passing count, `_WINDOW` evenly spaced counts until they are next to
    each other. It assumes p99 does not grow with more servers. No passing
    count up to `max_servers` gives (None, the run at max_servers).
    """
    sets, rate, slo, bm, w = _configs(service_s, rate_qps=rate_qps, slo_p99_s=slo_p99_s, max_batch=max_batch,
                                      max_wait_s=max_wait_s)
    if max_servers < 1:
        raise UserError(f"max_servers must be ≥ 1, got {max_servers}")
    load = rate * np.array([s.mean() for s in sets]) / bm
    tails = np.array([_nearest_rank(np.sort(s), P_TAIL) for s in sets])
    lo = np.floor(load).astype(np.int64)  # highest count known to fail
    hi = np.full(len(sets), max_servers + 1)  # lowest count known to pass
    runs: list = [None] * len(sets)
    stride = np.ones(len(sets), np.int64)
    guess = np.ceil(load + np.sqrt(load)).astype(np.int64)
    live = (tails <= slo) & (lo < max_servers)
    for round_ in range(_MAX_ROUNDS):
        idx = np.flatnonzero(live & (hi - lo > 1))
        if not len(idx):
            break
        span = np.arange(1, _WINDOW + 1)
        below = np.maximum(guess[idx, None] - _WINDOW + span, lo[idx, None] + span)
        upward = lo[idx, None] + stride[idx, None] * span
        between = lo[idx, None] + (hi[idx, None] - lo[idx, None]) * span // (_WINDOW + 1)
        counts = np.where((hi[idx] > max_servers)[:, None], below if round_ == 0 else upward, between)
        counts = np.clip(counts, lo[idx, None] + 1, np.minimum(hi[idx], max_servers + 1)[:, None] - 1)
        pairs = np.unique(np.stack([np.repeat(idx, _WINDOW), counts.ravel()], axis=1), axis=0)
        which, counts = pairs[:, 0], pairs[:, 1]
        for k, count, run in zip(which, counts, _probe(sets, which, counts, rate, bm, w, queries, seed)):
            if run.p99_s <= slo[k] and count < hi[k]:
                hi[k], runs[k] = count, run
            elif run.p99_s > slo[k]:
                lo[k] = max(lo[k], count)
                runs[k] = run if hi[k] > max_servers and count == max_servers else runs[k]
        stride[idx] *= 2
        lo = np.minimum(lo, hi - 1)
    return tuple((int(hi[k]), runs[k]) if hi[k] <= max_servers else (None, runs[k]) for k in range(len(sets)))


def _probe(sets, jobs, counts, rate, bm, w, queries, seed) -> tuple[SimResult, ...]:
    return simulate_many([sets[k] for k in jobs], rate[jobs], max_batch=bm[jobs], max_wait_s=w[jobs],
                         servers=counts, queries=queries, seed=seed)


def _configs(service_s, **named):
    """Sample sets and the named arguments broadcast to K configurations, validated once."""
    if isinstance(service_s, np.ndarray) and service_s.ndim == 2:
        sets = list(service_s)
    elif isinstance(service_s, (list, tuple)) and len(service_s) and np.ndim(service_s[0]) == 1:
        sets = list(service_s)
    else:
        sets = [service_s]
    sets = [np.asarray(s, dtype=float) for s in sets]
    for s in sets:
        if s.ndim != 1 or not len(s) or not np.isfinite(s).all() or not (s > 0).all():
            raise UserError("service times must be a non-empty list of positive, finite seconds")
    arrays = {name: np.atleast_1d(np.asarray(v, dtype=float)) for name, v in named.items()}
    k = max([len(sets)] + [len(a) for a in arrays.values()])
    sets = sets * k if len(sets) == 1 else sets
    try:
        if len(sets) != k:
            raise ValueError
        arrays = {name: np.broadcast_to(a, (k,)) for name, a in arrays.items()}
    except ValueError:
        raise UserError(f"configuration arguments must be one value or {k} values each") from None
    for name, a in arrays.items():
        if not np.isfinite(a).all() or (a < 0).any() or (name in _POSITIVE and (a <= 0).any()):
            raise UserError(f"{name} must be {'> 0' if name in _POSITIVE else '≥ 0'} and finite, got {a.min()}")
        if name in _WHOLE and ((a < 1) | (a != np.round(a))).any():
            raise UserError(f"{name} must be a whole number ≥ 1, got {a.min()}")
    return [sets] + [a.astype(np.int64) if name in _WHOLE or name == "seed" else a.astype(float)
                     for name, a in arrays.items()]


_POSITIVE = {"rate_qps", "slo_p99_s", "max_batch", "servers"}
_WHOLE = {"max_batch", "servers"}
