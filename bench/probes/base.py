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

    def result(self) -> dict[str, Any]:
        """The measurement, valid after `__exit__`; keys carry units."""


def unavailable(reason: str) -> str:
    """The canonical text of a source that cannot be read."""
    return f"unavailable: {reason}"
