"""Scenario registry: name → class. Choices for `--scenario` come from here."""

from __future__ import annotations

from ..errors import UserError
from .base import Scenario
from .latency import LatencyScenario
from .server import ServerScenario, ServerSettings
from .throughput import ThroughputScenario

SCENARIOS: dict[str, type[Scenario]] = {
    LatencyScenario.name: LatencyScenario,
    ThroughputScenario.name: ThroughputScenario,
    ServerScenario.name: ServerScenario,
}

__all__ = ["SCENARIOS", "Scenario", "ServerSettings", "get"]


def get(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise UserError(f"unknown scenario {name!r}; choose from: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]()
