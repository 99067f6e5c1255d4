"""Worker-process isolation: whatever a cell's worker does, the parent gets a record and goes on.

These spawn real workers (a fresh interpreter each, a few seconds) with the
null backend's fault injection, the same way a sweep runs them.
"""

from __future__ import annotations

import os
import time

import pytest

from aigcbench.bench.config import RunConfig
from aigcbench.bench.isolation import run_isolated


class Recorder:
    def __init__(self, interrupt_at: str | None = None) -> None:
        self.stages: list[str] = []
        self.interrupt_at = interrupt_at

    def stage(self, text: str) -> None:
        self.stages.append(text)
        if self.interrupt_at and text.startswith(self.interrupt_at):
            raise KeyboardInterrupt

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None:
        pass


def _config(fault: str = "none", **options: str) -> RunConfig:
    return RunConfig.from_options({
        "workload": "dcgan", "backend": "null", "size": "tiny", "duration": 0.2, "min_iterations": 5,
        "warmup": 1, "warmup_duration": 0, "options": {"fault": fault, **options},
    })


def test_a_healthy_worker_returns_its_record_with_the_kernels_accounting() -> None:
    observer = Recorder()
    record = run_isolated(_config(), timeout_s=120, observer=observer)
    assert record.status == "ok", record.reason
    assert record.metrics["iterations"] >= 5
    worker = record.metadata["worker"]
    assert worker["exit_code"] == 0 and worker["peak_rss_bytes"] > 10 * 2**20
    assert worker["user_cpu_s"] > 0
    assert any(s.startswith("measuring") for s in observer.stages)  # progress came through the pipe
    assert record.metrics["fidelity"]["passed"] is None and "does not compute" in record.metrics["fidelity"]["skipped"]
    assert record.metrics["achieved_flops_per_s"] is None  # no model work, no model FLOPs


def test_a_segfault_becomes_a_failed_record_naming_the_signal() -> None:
    record = run_isolated(_config("segfault"), timeout_s=120, observer=Recorder())
    assert record.status == "failed"
    assert "SIGSEGV" in record.reason and "first call" in record.reason
    assert any("Segmentation fault" in line for line in record.metadata["stderr_tail"])
    assert record.metadata["worker"]["exit_code"] < 0
    assert record.config == _config("segfault").to_dict()


def test_an_exception_in_the_backend_becomes_a_failed_record_with_its_traceback() -> None:
    record = run_isolated(_config("exception", fault_at="3"), timeout_s=120, observer=Recorder())
    assert record.status == "failed"
    assert record.reason == "RuntimeError: null backend: injected exception at call 3"
    assert "Traceback" in record.metadata["traceback"]


def test_a_hang_is_killed_at_the_timeout_and_says_where_it_hung() -> None:
    start = time.monotonic()
    # Long enough for a slow CI machine to import torch and reach the hanging call.
    record = run_isolated(_config("hang"), timeout_s=15, observer=Recorder())
    elapsed = time.monotonic() - start
    assert record.status == "failed"
    assert record.reason.startswith("timeout: worker still running after 15 s")
    assert "null.py" in record.reason  # faulthandler's stack, dumped on SIGUSR1 before the kill
    assert elapsed < 15 + 10  # killed, not waited for


def test_ctrl_c_kills_the_worker_and_propagates() -> None:
    observer = Recorder(interrupt_at="measuring")
    with pytest.raises(KeyboardInterrupt):
        run_isolated(_config(), timeout_s=120, observer=observer)
    # The worker was reaped: no child of ours is left running.
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_a_worker_dies_with_its_parent() -> None:
    """A parent killed outright (SIGKILL, the OOM killer) must not leave its worker measuring for nobody."""
    import signal
    import subprocess
    import sys

    import psutil

    code = (
        "from aigcbench.bench.config import RunConfig\n"
        "from aigcbench.bench.isolation import run_isolated\n"
        "class Q:\n    def stage(self, t): pass\n    def loop(self, *a): pass\n"
        "c = RunConfig.from_options({'workload': 'dcgan', 'backend': 'null', 'size': 'tiny',"
        " 'options': {'fault': 'hang'}})\n"
        "run_isolated(c, timeout_s=600, observer=Q())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not workers:
            workers = psutil.Process(parent.pid).children()
            time.sleep(0.2)
        assert workers, "the parent never started a worker"
        time.sleep(3)  # the worker is now hanging in the null backend
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
    finally:
        parent.kill()
        for worker in workers:  # on failure, do not leave an orphan hanging
            try:
                worker.kill()
            except psutil.NoSuchProcess:
                pass
