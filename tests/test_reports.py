"""Rendering: free text from records (reasons, warnings) is shown as written, never as markup."""

from __future__ import annotations

import dataclasses
import signal

from rich.console import Console

from aigcbench.bench.config import RunConfig
from aigcbench.bench.isolation import _failure_reason, _Outcome
from aigcbench.bench.runner import failure_record
from aigcbench.reports.listing import backends_table
from aigcbench.reports.table import result_notes


def _render(renderable) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def test_reasons_and_warnings_keep_their_brackets() -> None:
    config = RunConfig(workload="dcgan", backend="pytorch", size="tiny")
    record = failure_record(config, "needs pip install 'aigcbench[tensorrt]'", metadata={})
    record = dataclasses.replace(record, warnings=("[bold]not markup[/]",))
    text = "\n".join(_render(line) for line in result_notes(record))
    assert "aigcbench[tensorrt]" in text and "[bold]not markup[/]" in text


def test_backend_listing_keeps_the_extra_in_the_reason() -> None:
    rows = [{"name": "tensorrt", "available": False, "reason": "pip install 'aigcbench[tensorrt]'", "precisions": []}]
    assert "aigcbench[tensorrt]" in _render(backends_table(rows))


def test_a_sigkill_is_explained_as_a_likely_oom_kill() -> None:
    outcome = _Outcome(returncode=-signal.SIGKILL, last_stage="measuring (latency)")
    reason = _failure_reason(outcome, ["some line"], timeout_s=None)
    assert reason.startswith("worker crashed: SIGKILL") and "out-of-memory" in reason and "measuring" in reason
