"""When a measured loop stops.

The loop stops when **both** a minimum duration and a minimum count are met
(MLPerf, trtexec): duration alone gives too few samples for slow models, count
alone gives too short a window for fast ones. An optional adaptive rule stops
earlier once the spread is small enough — the relative IQR (IQR/median) under a
target, as torch.utils.benchmark's `adaptive_autorange` does. Hard caps on
count and duration bound every loop, adaptive or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .errors import UserError
from .stats import relative_iqr

# The adaptive rule needs enough samples for quartiles to mean something.
ADAPTIVE_MIN_SAMPLES = 10


@dataclass(frozen=True)
class StopRule:
    """Stop conditions of one loop (durations in seconds)."""

    min_duration_s: float = 5.0
    min_iterations: int = 10
    max_iterations: int = 100_000
    max_duration_s: float = 600.0
    target_rel_iqr: float | None = None

    def __post_init__(self) -> None:
        if not self.min_duration_s >= 0:
            raise UserError(f"--duration must be ≥ 0 seconds, got {self.min_duration_s}")
        if self.min_iterations < 1:
            raise UserError(f"--min-iterations must be ≥ 1, got {self.min_iterations}")
        if self.max_iterations < self.min_iterations:
            raise UserError(
                f"--max-iterations ({self.max_iterations}) must be ≥ --min-iterations ({self.min_iterations})"
            )
        if not self.max_duration_s > 0:
            raise UserError(f"--max-duration must be > 0 seconds, got {self.max_duration_s}")
        if self.target_rel_iqr is not None and not 0 < self.target_rel_iqr < 1:
            raise UserError(f"--target-rel-iqr must be in (0, 1), got {self.target_rel_iqr}")

    def should_stop(self, samples_ns: Sequence[int], elapsed_ns: int) -> bool:
        """Decide after each iteration; `samples_ns` are the loop's latencies so far."""
        n = len(samples_ns)
        elapsed_s = elapsed_ns / 1e9
        if n >= self.max_iterations or elapsed_s >= self.max_duration_s:
            return True
        if n < self.min_iterations:
            return False
        if elapsed_s >= self.min_duration_s:
            return True
        return self._spread_is_small(samples_ns)

    def _spread_is_small(self, samples_ns: Sequence[int]) -> bool:
        n = len(samples_ns)
        if self.target_rel_iqr is None or n < ADAPTIVE_MIN_SAMPLES:
            return False
        # Sorting every iteration would make long loops quadratic; checking at
        # intervals that grow with n (~16 checks per doubling) keeps it n log n.
        if n % max(1, n // 16):
            return False
        return relative_iqr(samples_ns) <= self.target_rel_iqr

    def stop_reason(self, samples_ns: Sequence[int], elapsed_ns: int) -> str:
        """Why the loop stopped (recorded, so a short run explains itself)."""
        n, elapsed_s = len(samples_ns), elapsed_ns / 1e9
        if n >= self.max_iterations:
            return "max-iterations"
        if elapsed_s >= self.max_duration_s:
            return "max-duration"
        if elapsed_s >= self.min_duration_s and n >= self.min_iterations:
            return "min-duration-and-count"
        return "adaptive-rel-iqr"


@dataclass(frozen=True)
class WarmupRule:
    """Warm-up: at least `iterations` calls and at least `duration_s` seconds, capped by `max_duration_s`."""

    iterations: int = 2
    duration_s: float = 1.0
    max_duration_s: float = 60.0

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise UserError(f"--warmup must be ≥ 0, got {self.iterations}")
        if not self.duration_s >= 0:
            raise UserError(f"--warmup-duration must be ≥ 0 seconds, got {self.duration_s}")

    def should_stop(self, count: int, elapsed_ns: int) -> bool:
        """Checked before each warm-up call, so `iterations=0, duration_s=0` means no warm-up."""
        elapsed_s = elapsed_ns / 1e9
        if elapsed_s >= self.max_duration_s:
            return True
        return count >= self.iterations and elapsed_s >= self.duration_s
