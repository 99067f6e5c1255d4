"""MLPerf Server: Poisson arrivals at a target rate, a dynamic batcher, latency from arrival.

Queries arrive as a seeded Poisson process (exponential gaps) at `rate_qps`,
independent of how fast the system answers — an open loop, unlike latency and
throughput. A dynamic batcher (as in Triton or TorchServe) dispatches when
`max_batch` queries wait or when the oldest has waited `max_wait_s`. Each
query's latency runs from its *scheduled* arrival to the completion of the
batch that carried it, so time spent queued — and any lateness of the harness
itself — is counted, never hidden (coordinated omission is impossible by
construction).

Batches are padded to `max_batch`: every backend then runs the one static
shape it was prepared for (TensorRT profiles, OpenVINO static reshapes,
torch.compile and CUDA graphs do not re-specialise mid-run), and the capacity
found is what a static-shape deployment would get — conservative for runtimes
with free dynamic shapes. Only real queries count as items.

Validity follows MLPerf: a run with an SLO is valid when the early-stopping
estimate of p99 (the latency that can be claimed at 99 % confidence from the
n queries measured, `stats.early_stopping_bound`) meets the SLO, which needs at
least 662 queries. `find_max_rate` brackets (doubling or halving from half the
measured single-batch capacity) and then bisects the rate until the bracket is
within `search_tolerance`; the highest passing rate is the capacity capacity
planning uses.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..clock import Clock
from ..errors import UserError
from ..measure import DeviceTimer, LoopResult, OnIteration
from ..stats import early_stopping_bound, early_stopping_min_samples, percentile
from ..stopping import StopRule
from .base import Scenario
from .server_outcome import SearchResult, ServerOutcome, TrialVerdict

P99 = 0.99
# A trial stops as soon as this share of its planned queries is already late:
# more than 1 % late means its p99 cannot meet the SLO, and an overloaded
# queue only grows. The margin absorbs the Poisson spread of the query count.
_ABORT_LATE_SHARE = 0.012
_CALIBRATION_CALLS = 3
# Halving below this fraction of the first guess means no useful rate exists.
_LOWEST_RATE_FRACTION = 1 / 64

_SPIN_NS = 1_000_000
Sleep = Callable[[int], None]  # sleep until this clock reading (ns)


@dataclass(frozen=True)
class ServerSettings:
    """How the server scenario offers load; validated once (durations in seconds, rates per second)."""

    rate_qps: float | None = None
    max_batch: int = 1
    max_wait_s: float = 0.0
    slo_p99_s: float | None = None
    find_max_rate: bool = False
    search_tolerance: float = 0.05
    max_trials: int = 14

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise UserError(f"--max-batch must be ≥ 1, got {self.max_batch}")
        if self.max_wait_s < 0:
            raise UserError(f"--max-wait must be ≥ 0, got {self.max_wait_s}")
        if self.rate_qps is not None and not self.rate_qps > 0:
            raise UserError(f"--rate must be > 0 queries/s, got {self.rate_qps}")
        if self.slo_p99_s is not None and not self.slo_p99_s > 0:
            raise UserError(f"--slo-p99 must be > 0, got {self.slo_p99_s}")
        if self.find_max_rate and self.slo_p99_s is None:
            raise UserError("--find-max-rate needs --slo-p99: the capacity is the highest rate meeting it")
        if not self.find_max_rate and self.rate_qps is None:
            raise UserError("--scenario server needs --rate (queries/s) or --slo-p99 with --find-max-rate")
        if not 0 < self.search_tolerance < 1:
            raise UserError(f"search tolerance must be in (0, 1), got {self.search_tolerance}")
        if self.max_trials < 2:
            raise UserError(f"max trials must be ≥ 2, got {self.max_trials}")


@dataclass
class Trial:
    """One run at one offered rate: per-query latencies and what they say about the SLO."""

    rate_qps: float
    latencies_ns: list[int]
    wall_ns: int
    batches: int
    stop_reason: str
    unfinished: int = 0
    late: int = 0
    p99_s: float | None = None
    p99_bound_s: float | None = None
    passed: bool | None = None
    verdict: TrialVerdict | None = None
    # Time of each dispatched batch: tells queueing apart from a batch itself
    # running slower than back to back (a CPU or GPU waking from idle).
    service_ns: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "rate_qps": self.rate_qps,
            "queries": len(self.latencies_ns),
            "achieved_qps": len(self.latencies_ns) / (self.wall_ns / 1e9) if self.wall_ns else None,
            "mean_batch_size": len(self.latencies_ns) / self.batches if self.batches else None,
            "p99_s": self.p99_s,
            "p99_bound_s": self.p99_bound_s,
            "service_p50_s": _quantile_s(self.service_ns, 50),
            "service_p99_s": _quantile_s(self.service_ns, 99),
            "late_queries": self.late,
            "unfinished_queries": self.unfinished,
            "passed": self.passed,
            "verdict": self.verdict.value if self.verdict else None,
            "stop_reason": self.stop_reason,
        }


def _quantile_s(values_ns: list[int], p: float) -> float | None:
    return percentile(sorted(values_ns), p) / 1e9 if values_ns else None


class _Arrivals:
    """Scheduled arrival times (ns) of a seeded Poisson process starting at `start_ns`."""

    def __init__(self, rate_qps: float, start_ns: int, seed: int) -> None:
        import numpy as np

        self._rng = np.random.default_rng(seed)
        self._mean_gap_ns = 1e9 / rate_qps
        self._gaps: list[float] = []
        self.next_ns = float(start_ns)
        self.advance()

    def advance(self) -> None:
        if not self._gaps:  # draw in blocks: one numpy call per 4096 arrivals
            self._gaps = self._rng.exponential(self._mean_gap_ns, 4096).tolist()[::-1]
        self.next_ns += self._gaps.pop()


def run_trial(
    step: Callable[[], object],
    rate_qps: float,
    settings: ServerSettings,
    rule: StopRule,
    clock: Clock,
    sleep: Sleep,
    seed: int,
    *,
    on_iteration: OnIteration | None = None,
) -> Trial:
    """Offer Poisson load at `rate_qps` until the rule's duration and query count are issued, then drain.

    Queries are issued while both the minimum duration and the minimum query
    count are unmet (MLPerf generates queries for min_duration and
    min_query_count); every issued query is then served, unless the hard
    duration cap or the overload rule ends the trial first.
    """
    slo_ns = settings.slo_p99_s * 1e9 if settings.slo_p99_s is not None else None
    min_queries = _min_queries(rule, settings)
    max_queries = max(rule.max_iterations, min_queries)  # the validity minimum overrides a lower cap
    max_wait_ns = settings.max_wait_s * 1e9
    planned = max(min_queries, rate_qps * rule.min_duration_s)
    abort_late = _ABORT_LATE_SHARE * planned + 2
    start = clock()
    arrivals = _Arrivals(rate_qps, start, seed)
    queue: list[float] = []  # scheduled arrival times of waiting queries, oldest first
    head = 0  # queue[head:] are waiting; a moving index instead of popping from the front
    latencies: list[int] = []
    service: list[int] = []
    issued, batches, late, closed = 0, 0, 0, False
    stop_reason = "min-duration-and-count"
    end = start
    while True:
        now = clock()
        if now - start >= rule.max_duration_s * 1e9:
            stop_reason = "max-duration"
            break
        while not closed and arrivals.next_ns <= now:
            queue.append(arrivals.next_ns)
            issued += 1
            elapsed_s = (arrivals.next_ns - start) / 1e9
            if (issued >= min_queries and elapsed_s >= rule.min_duration_s) or issued >= max_queries:
                closed = True
            else:
                arrivals.advance()
        waiting = len(queue) - head
        if waiting == 0:
            if closed:
                break
            sleep(math.ceil(arrivals.next_ns))
            continue
        if waiting < settings.max_batch and now < queue[head] + max_wait_ns:
            wake = queue[head] + max_wait_ns
            if not closed:
                wake = min(wake, arrivals.next_ns)
            sleep(math.ceil(wake))
            continue
        taken = queue[head : head + settings.max_batch]
        head += len(taken)
        dispatched = clock()
        step()
        end = clock()
        service.append(end - dispatched)
        batches += 1
        for arrival in taken:
            latency = int(end - arrival)
            latencies.append(latency)
            if slo_ns is not None and latency > slo_ns:
                late += 1
        if len(queue) > 65536 and head > len(queue) // 2:
            del queue[:head]
            head = 0
        if on_iteration is not None:
            on_iteration(len(latencies), end - start)
        if slo_ns is not None:
            # Waiting queries already older than the SLO are late whatever happens next.
            overdue = bisect.bisect_left(queue, end - slo_ns, lo=head) - head
            if late + overdue > abort_late:
                stop_reason = "overloaded"
                break
    trial = Trial(
        rate_qps=rate_qps,
        latencies_ns=latencies,
        wall_ns=end - start,
        batches=batches,
        stop_reason=stop_reason,
        unfinished=len(queue) - head,
        late=late,
        service_ns=service,
    )
    _judge(trial, settings)
    return trial


def _min_queries(rule: StopRule, settings: ServerSettings) -> int:
    """With an SLO, enough queries for MLPerf's p99 early-stopping estimate to exist (662)."""
    if settings.slo_p99_s is None:
        return rule.min_iterations
    return max(rule.min_iterations, early_stopping_min_samples(P99))


def _judge(trial: Trial, settings: ServerSettings) -> None:
    """Fill in p99, its early-stopping bound and, with an SLO, whether the trial meets it."""
    ordered = sorted(trial.latencies_ns)
    if ordered:
        trial.p99_s = percentile(ordered, 99) / 1e9
        bound = early_stopping_bound(ordered, P99)
        trial.p99_bound_s = bound / 1e9 if bound is not None else None
    if settings.slo_p99_s is None:
        return
    if trial.stop_reason == "overloaded":
        trial.verdict = TrialVerdict.OVERLOADED
    elif trial.stop_reason == "max-duration":
        trial.verdict = TrialVerdict.MAX_DURATION
    elif trial.p99_bound_s is None:
        trial.verdict = TrialVerdict.TOO_FEW_QUERIES
    elif trial.p99_bound_s > settings.slo_p99_s:
        trial.verdict = TrialVerdict.OVER_SLO
    else:
        trial.verdict = TrialVerdict.PASSED
    trial.passed = trial.verdict is TrialVerdict.PASSED


def _real_sleep(clock: Clock) -> Sleep:
    """Sleep until a clock reading: the OS sleeps most of it, the last stretch is spun.

    A timed sleep wakes up late by 0.1–3 ms on a loaded VM, and that lateness
    would land in every query's latency as if the system under test caused it.
    Spinning the last `_SPIN_NS` costs a little CPU while the server is idle
    anyway, and keeps the dispatch within microseconds of the arrival.
    """

    def sleep(deadline_ns: int) -> None:
        remaining = deadline_ns - clock()
        if remaining > _SPIN_NS:
            time.sleep((remaining - _SPIN_NS) / 1e9)
        while clock() < deadline_ns:
            pass

    return sleep


class ServerScenario(Scenario):
    name = "server"
    description = "Poisson arrivals at --rate, dynamic batcher, latency from arrival (MLPerf Server)"
    default_batch_size = 1
    samples_are_service_times = False

    @classmethod
    def from_config(cls, config: Any, note: Callable[[str], None] | None = None) -> "ServerScenario":
        return cls(config.server, seed=config.seed, note=note)

    def __init__(
        self,
        settings: ServerSettings | None = None,
        seed: int = 0,
        sleep: Sleep | None = None,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings or ServerSettings(rate_qps=1.0)
        self.seed = seed
        self._sleep = sleep
        self._note = note or (lambda text: None)

    def run(
        self,
        step: Callable[[], object],
        rule: StopRule,
        clock: Clock,
        *,
        device_timer: DeviceTimer | None = None,
        on_iteration: OnIteration | None = None,
    ) -> LoopResult:
        # Device time per batch is not recorded here: a query's latency spans
        # queueing and several batches' worth of waiting, not one device call.
        # A clock may bring its own way to wait (a test's fake clock jumps ahead).
        sleep = self._sleep or getattr(clock, "sleep_until", None) or _real_sleep(clock)
        trial_number = 0

        def trial(rate: float) -> Trial:
            nonlocal trial_number
            trial_number += 1
            self._note(f"server trial {trial_number} at {rate:.4g} queries/s")
            # Each trial draws its own arrivals; the seed makes the whole search repeatable.
            return run_trial(
                step, rate, self.settings, rule, clock, sleep, self.seed + trial_number - 1, on_iteration=on_iteration
            )

        if not self.settings.find_max_rate:
            assert self.settings.rate_qps is not None
            only = trial(self.settings.rate_qps)
            return _result([only], only, ServerOutcome(self.settings, only.summary(), (only.summary(),)))
        calibration = _calibrate(step, clock)
        service_s = sorted(calibration)[len(calibration) // 2] / 1e9
        infeasible = _infeasible(service_s, self.settings, rule)
        if infeasible is not None:
            return _no_search(calibration, infeasible)
        return _search(trial, service_s, self.settings)


def _calibrate(step: Callable[[], object], clock: Clock) -> list[int]:
    """A few timed batches with nothing queued: the unit the search starts from."""
    times = []
    for _ in range(_CALIBRATION_CALLS):
        start = clock()
        step()
        times.append(clock() - start)
    return times


def _infeasible(service_s: float, settings: ServerSettings, rule: StopRule) -> ServerOutcome | None:
    """The outcome when no trial is worth running, or None: the answer is known from one batch's time.

    A batch slower than the SLO fails at any rate; and when even back-to-back
    batches cannot deliver the queries a p99 estimate needs within
    --max-duration, every trial would end at that cap, unjudged.
    """
    assert settings.slo_p99_s is not None
    base = ServerOutcome(settings, None, service_time_s=service_s, max_duration_s=rule.max_duration_s)
    if service_s > settings.slo_p99_s:
        return dataclasses.replace(base, search=SearchResult.BATCH_OVER_SLO)
    needed = _min_queries(rule, settings)
    shortest_s = needed * service_s / settings.max_batch
    if shortest_s > rule.max_duration_s:
        return dataclasses.replace(
            base, search=SearchResult.TOO_SLOW_FOR_ESTIMATE, needed_queries=needed, shortest_s=shortest_s
        )
    return None


def _no_search(calibration_ns: list[int], outcome: ServerOutcome) -> LoopResult:
    """An invalid result whose only samples are the calibration batches (latency with no queueing)."""
    return LoopResult(
        latencies_ns=tuple(calibration_ns),
        wall_ns=sum(calibration_ns),
        stop_reason="calibration-only",
        items=len(calibration_ns) * outcome.settings.max_batch,
        outcome=outcome,
    )


def _search(trial: Callable[[float], Trial], service_s: float, settings: ServerSettings) -> LoopResult:
    """Bracket the capacity by doubling/halving from half the single-batch rate, then bisect."""
    trials: list[Trial] = []

    def run(rate: float) -> Trial:
        trials.append(trial(rate))
        return trials[-1]

    first = 0.5 / max(service_s, 1e-9)
    lo: Trial | None = None
    hi: Trial | None = None
    current = run(first)
    if current.passed:
        lo = current
        while hi is None and len(trials) < settings.max_trials:
            current = run(current.rate_qps * 2)
            lo, hi = (current, hi) if current.passed else (lo, current)
    else:
        hi = current
        while lo is None and len(trials) < settings.max_trials and current.rate_qps > first * _LOWEST_RATE_FRACTION:
            current = run(current.rate_qps / 2)
            lo, hi = (current, hi) if current.passed else (lo, current)
    while lo is not None and hi is not None and hi.rate_qps / lo.rate_qps - 1 > settings.search_tolerance:
        if len(trials) >= settings.max_trials:
            break
        current = run((lo.rate_qps + hi.rate_qps) / 2)
        lo, hi = (current, hi) if current.passed else (lo, current)
    if lo is None:
        result = SearchResult.NO_PASSING_RATE
    elif hi is None:
        result = SearchResult.NO_FAILING_RATE
    elif hi.rate_qps / lo.rate_qps - 1 > settings.search_tolerance:
        result = SearchResult.TRIAL_CAP
    else:
        result = SearchResult.CONVERGED
    # With nothing passing, the slowest trial's samples are the ones shown.
    shown = lo if lo is not None else min(trials, key=lambda t: t.rate_qps)
    outcome = ServerOutcome(
        settings,
        shown.summary(),
        tuple(t.summary() for t in trials),
        search=result,
        bracket_qps=(lo.rate_qps if lo else None, hi.rate_qps if hi else None),
        service_time_s=service_s,
    )
    return _result(trials, shown, outcome)


def _result(trials: list[Trial], shown: Trial, outcome: ServerOutcome) -> LoopResult:
    """The shown trial's samples, and the typed outcome of the whole run."""
    return LoopResult(
        latencies_ns=tuple(shown.latencies_ns),
        wall_ns=shown.wall_ns,
        stop_reason=shown.stop_reason,
        items=len(shown.latencies_ns),
        total_items=sum(len(t.latencies_ns) for t in trials),
        outcome=outcome,
    )
