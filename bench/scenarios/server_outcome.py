"""What a server run found, as data: trial verdict codes, how a capacity search ended, the numbers.

The server scenario (`server.py`) returns a `ServerOutcome` and never writes
prose; `aigcbench.reports.server_text` turns it into the sentences a record
carries (a trial's why, the search's result, the record's reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .server import ServerSettings


class TrialVerdict(str, Enum):
    """How a trial was judged against the SLO (the sentence for each is in reports/server_text.py)."""

    PASSED = "passed"
    OVERLOADED = "overloaded"  # stopped early: too many queries already late
    MAX_DURATION = "max-duration"  # stopped at --max-duration with queries unserved
    TOO_FEW_QUERIES = "too-few-queries"  # fewer than a p99 early-stopping estimate needs
    OVER_SLO = "over-slo"  # the p99 early-stopping estimate exceeds the SLO


class SearchResult(str, Enum):
    """How a capacity search ended."""

    CONVERGED = "converged"  # bracket within the tolerance
    NO_PASSING_RATE = "no-passing-rate"  # halved down to the floor, nothing passed
    NO_FAILING_RATE = "no-failing-rate"  # trial cap reached while every rate passed
    TRIAL_CAP = "trial-cap"  # trial cap reached with the bracket still wider than the tolerance
    BATCH_OVER_SLO = "batch-over-slo"  # one batch alone is slower than the SLO: no trial run
    TOO_SLOW_FOR_ESTIMATE = "too-slow-for-estimate"  # 662 queries cannot fit in --max-duration: no trial run


@dataclass(frozen=True)
class ServerOutcome:
    """What a server run found, as data: every trial's numbers, the chosen one, the search's end.

    `details()` is the record's `metrics.server` without prose; the sentences
    (a trial's why, the search's result, the record's reason) are written by
    `aigcbench.reports.server_text` from these fields.
    """

    settings: ServerSettings
    shown: Mapping[str, Any] | None  # the trial whose samples are the record's (None: no trial ran)
    trials: tuple[Mapping[str, Any], ...] = ()
    search: SearchResult | None = None  # None: a single trial at a fixed rate
    bracket_qps: tuple[float | None, float | None] = (None, None)  # highest passing, lowest failing
    service_time_s: float | None = None  # one batch back to back (the search's calibration)
    needed_queries: int | None = None
    shortest_s: float | None = None
    max_duration_s: float | None = None

    @property
    def capacity_qps(self) -> float | None:
        """The highest passing rate of a search (None when nothing passed, or no search ran)."""
        return self.bracket_qps[0] if self.search is not None else None

    @property
    def valid(self) -> bool:
        if self.settings.find_max_rate:
            return self.capacity_qps is not None
        return self.settings.slo_p99_s is None or bool(self.shown and self.shown["passed"])

    def details(self) -> dict[str, Any]:
        settings = self.settings
        shown = dict(self.shown or {})
        details: dict[str, Any] = {
            "rate_qps": shown.get("rate_qps"),
            "max_batch": settings.max_batch,
            "max_wait_s": settings.max_wait_s,
            "slo_p99_s": settings.slo_p99_s,
            "batching": "padded to max_batch",
            **({k: v for k, v in shown.items() if k != "rate_qps"} if shown else {"queries": 0}),
        }
        if settings.find_max_rate:
            capacity = shown if self.capacity_qps is not None else {}
            details["capacity_items_per_s"] = self.capacity_qps
            details["capacity_p99_s"] = capacity.get("p99_s")
            details["capacity_p99_bound_s"] = capacity.get("p99_bound_s")
            details["capacity_samples"] = capacity.get("queries")
            details["search"] = {
                "service_time_s": self.service_time_s,
                "tolerance": settings.search_tolerance,
                "outcome": self.search.value if self.search else None,
                "trials": [dict(t) for t in self.trials],
            }
        return details
