"""Collects a `make bench` run's parity results, harness overhead and issue 11's figures; prints them at the end.

The table goes through pytest's terminal summary, so it shows without `-s`
(pytest captures the tests' own output) and in one piece, whatever order the
tests ran in.
"""

from __future__ import annotations

import pytest

from parity import Parity
from parity_table import Skipped, format_table

PARITY_ROWS = pytest.StashKey["list[Parity | Skipped]"]()
OVERHEAD_LINES = pytest.StashKey["list[str]"]()
STARTUP_LINES = pytest.StashKey["dict[str, list[str]]"]()
STARTUP_TITLE = "start-up and overhead (issue 11): targets and references, this run"
# The modules' lines print in the issue's order (cell cost, the CLI, the per-call overhead), whatever order they ran in.
STARTUP_ORDER = ("test_cell_start", "test_cli_start", "test_null_overhead")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[PARITY_ROWS] = []
    config.stash[OVERHEAD_LINES] = []
    config.stash[STARTUP_LINES] = {}


@pytest.fixture
def overhead_lines(request: pytest.FixtureRequest) -> list[str]:
    """Lines for the end-of-run section on the harness's own per-call overhead."""
    return request.config.stash[OVERHEAD_LINES]


@pytest.fixture
def startup_lines(request: pytest.FixtureRequest) -> list[str]:
    """Lines for the one section that gathers issue 11's four figures, each with its target and references."""
    return request.config.stash[STARTUP_LINES].setdefault(request.module.__name__.rpartition(".")[2], [])


@pytest.fixture
def parity_rows(request: pytest.FixtureRequest) -> list[Parity | Skipped]:
    """Append a `Parity` or a `Skipped` here to put it in the end-of-run table."""
    return request.config.stash[PARITY_ROWS]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    overhead = config.stash.get(OVERHEAD_LINES, [])
    if overhead:
        terminalreporter.write_sep("=", "aigcbench's own cost: the harness (null backend) and the readers")
        for line in overhead:
            terminalreporter.write_line(line)
    startup = config.stash.get(STARTUP_LINES, {})
    if any(startup.values()):
        terminalreporter.write_sep("=", STARTUP_TITLE)
        rank = {name: i for i, name in enumerate(STARTUP_ORDER)}
        for module in sorted(startup, key=lambda name: rank.get(name, len(rank))):
            for line in startup[module]:
                terminalreporter.write_line(line)
    rows = config.stash.get(PARITY_ROWS, [])
    if not rows:
        return
    terminalreporter.write_sep("=", "parity with the vendors' own benchmark loops")
    for line in format_table(rows):
        terminalreporter.write_line(line)
