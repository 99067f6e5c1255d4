"""Collects the parity results of a `make bench` run and prints them as one table at the end.

The table goes through pytest's terminal summary, so it shows without `-s`
(pytest captures the tests' own output) and in one piece, whatever order the
tests ran in.
"""

from __future__ import annotations

import pytest

from parity import Parity
from parity_table import Skipped, format_table

PARITY_ROWS = pytest.StashKey["list[Parity | Skipped]"]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[PARITY_ROWS] = []


@pytest.fixture
def parity_rows(request: pytest.FixtureRequest) -> list[Parity | Skipped]:
    """Append a `Parity` or a `Skipped` here to put it in the end-of-run table."""
    return request.config.stash[PARITY_ROWS]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(PARITY_ROWS, [])
    if not rows:
        return
    terminalreporter.write_sep("=", "parity with the vendors' own benchmark loops")
    for line in format_table(rows):
        terminalreporter.write_line(line)
