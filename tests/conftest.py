"""Shared fixtures: every test gets its own cache, store and spool, never the user's."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # One cache for the session keeps FLOP counts cached across tests, as in real use.
    cache = tmp_path_factory.getbasetemp() / "aigcbench-cache"
    monkeypatch.setenv("AIGCBENCH_CACHE", str(cache))
    monkeypatch.delenv("AIGCBENCH_STORE", raising=False)
    # A spool per test (made only if a test spools): what one test spooled is not the next one's to send.
    monkeypatch.setenv("AIGCBENCH_SPOOL", str(tmp_path_factory.getbasetemp() / "spools" / uuid.uuid4().hex))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "results.db"
