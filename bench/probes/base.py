"""The probe protocol: a context manager around the measured region.

A probe measures one thing (host memory, device memory, energy, clocks...)
over exactly the region the harness times, and reports it as a flat dict
whose keys carry their unit (`peak_host_memory_bytes`, `energy_j`). A probe
that cannot measure says why in a `*_source` or `*_status` string starting with
`"unavailable: "` and reports `None` for the value — it never invents a number.
"""

from __future__ import annotations

from typing import Any, Protocol


class Probe(Protocol):
    name: str

    def __enter__(self) -> "Probe": ...

    def __exit__(self, *exc: object) -> None: ...

    def result(self, elapsed_s: float | None = None) -> dict[str, Any]:
        """The measurement, valid after `__exit__`; keys carry units.

        `elapsed_s` is the region's duration as the harness's clock measured it
        (principle 2: the harness owns the clock); a probe that reports a rate
        over the region (mean power) divides by it, the others ignore it.
        """

    def warnings(self) -> list[str]:
        """Sentences the record should carry about the region (a throttled GPU), valid after `__exit__`."""


def unavailable(reason: str) -> str:
    """The canonical text of a source that cannot be read."""
    return f"unavailable: {reason}"
