"""Test doubles for the harness: a clock the test controls."""

from __future__ import annotations

from typing import Iterable, Iterator


class FakeClock:
    """A nanosecond clock that only moves when told to (torch.utils.benchmark's `timer=` idea)."""

    def __init__(self, start_ns: int = 1_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns

    def sleep_until(self, deadline_ns: int) -> None:
        """What the server scenario calls to wait for the next arrival: time jumps there."""
        self.now = max(self.now, int(deadline_ns))


class ServiceTimes:
    """A step whose every call 'takes' the next service time on the fake clock."""

    def __init__(self, clock: FakeClock, times_ns: Iterable[int]) -> None:
        self.clock = clock
        self._times: Iterator[int] = iter(times_ns)
        self.calls = 0

    def __call__(self) -> None:
        self.clock.advance(next(self._times))
        self.calls += 1
