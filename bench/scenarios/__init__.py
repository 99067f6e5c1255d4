"""Scenario registry: name → class. Choices for `--scenario` come from here."""

from __future__ import annotations

from typing import Any, Callable

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

__all__ = ["SCENARIOS", "Scenario", "ServerSettings", "build"]


def build(config: Any, note: Callable[[str], None] | None = None) -> Scenario:
    """The scenario a run config asks for, set up from it (the server takes its load settings)."""
    if config.scenario not in SCENARIOS:
        raise UserError(f"unknown scenario {config.scenario!r}; choose from: {', '.join(SCENARIOS)}")
    return SCENARIOS[config.scenario].from_config(config, note=note)
