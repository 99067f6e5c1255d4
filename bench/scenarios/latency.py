"""Single-stream latency: one query in flight, the next issued when the last completes.

MLPerf's SingleStream. The headline is the latency distribution of one batch
(batch 1 by default, one image per call), the number an interactive user feels.
"""

from __future__ import annotations

from .closed_loop import ClosedLoopScenario


class LatencyScenario(ClosedLoopScenario):
    name = "latency"
    description = "closed loop, one batch in flight (MLPerf SingleStream); batch 1 by default"
    default_batch_size = 1
