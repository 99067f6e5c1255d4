"""The sentences that describe a server run, written from its typed outcome.

The server scenario returns data (`bench.scenarios.server.ServerOutcome`:
every trial's numbers and verdict code, how the search ended); this module
says it in words — a trial's why, the search's result, the record's reason —
so scenarios never write prose and a reader could word it differently.
`record_details` is the record's `metrics.server` block: the outcome's
numbers plus these sentences under the keys earlier records carry (`why`,
`result`).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..bench.scenarios.server import P99, SearchResult, ServerOutcome, TrialVerdict
from ..bench.stats import early_stopping_min_samples


def trial_why(trial: Mapping[str, Any], slo_s: float | None) -> str | None:
    """Why a trial failed its SLO (None when it passed or had no SLO)."""
    verdict = trial.get("verdict")
    if verdict in (None, TrialVerdict.PASSED.value):
        return None
    if verdict == TrialVerdict.OVERLOADED.value:
        return f"overloaded: {trial['late_queries']} queries already over the SLO, trial stopped"
    if verdict == TrialVerdict.MAX_DURATION.value:
        return f"stopped at --max-duration after {trial['queries']} queries ({trial['unfinished_queries']} unserved)"
    if verdict == TrialVerdict.TOO_FEW_QUERIES.value:
        return (f"{trial['queries']} queries are too few for a p99 early-stopping estimate "
                f"(needs {early_stopping_min_samples(P99)})")
    return f"p99 early-stopping estimate {trial['p99_bound_s']:.4g} s exceeds the SLO {slo_s:.4g} s"


def search_text(outcome: ServerOutcome) -> str | None:
    """How the capacity search ended, in one clause (None when no search ran)."""
    kind, (lo, hi) = outcome.search, outcome.bracket_qps
    slo = outcome.settings.slo_p99_s
    if kind is None:
        return None
    if kind is SearchResult.BATCH_OVER_SLO:
        return f"one batch takes {outcome.service_time_s:.4g} s, over the SLO {slo:.4g} s: no arrival rate can meet it"
    if kind is SearchResult.TOO_SLOW_FOR_ESTIMATE:
        return (
            f"{outcome.needed_queries} queries (the p99 estimate's minimum) take at least {outcome.shortest_s:.4g} s "
            f"at {outcome.service_time_s:.4g} s a batch, over --max-duration {outcome.max_duration_s:g} s"
        )
    count = len(outcome.trials)
    if kind is SearchResult.NO_PASSING_RATE:
        return f"no rate down to {outcome.trials[-1]['rate_qps']:.4g} queries/s met the SLO"
    if kind is SearchResult.NO_FAILING_RATE:
        return f"stopped after {count} trials without finding a failing rate (capacity ≥ reported)"
    if kind is SearchResult.TRIAL_CAP:
        return f"stopped after {count} trials; bracket [{lo:.4g}, {hi:.4g}] queries/s"
    return f"converged: capacity in [{lo:.4g}, {hi:.4g}) queries/s"


def invalid_reason(outcome: ServerOutcome) -> str | None:
    """The record's reason when the run misses its own validity rule, else None."""
    if outcome.valid:
        return None
    if outcome.settings.find_max_rate:
        return f"server: {search_text(outcome)}"
    shown = outcome.shown or {}
    return f"server at {shown['rate_qps']:.4g} queries/s: {trial_why(shown, outcome.settings.slo_p99_s)}"


def record_details(outcome: ServerOutcome) -> dict[str, Any]:
    """`metrics.server` of a record: the outcome's numbers with each sentence next to what it describes."""
    slo = outcome.settings.slo_p99_s
    details = outcome.details()
    if outcome.shown is not None:
        details["why"] = trial_why(outcome.shown, slo)
    search = details.get("search")
    if search is not None:
        search["result"] = search_text(outcome)
        search["trials"] = [{**t, "why": trial_why(t, slo)} for t in search["trials"]]
    return details
