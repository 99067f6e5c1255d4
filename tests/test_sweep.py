"""Sweeps: resume, force, retry, skip, verdict and Ctrl-C with a fake executor; end to end in workers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.probes.environment import fingerprint
from aigcbench.bench.record import Record
from aigcbench.bench.runner import failure_record
from aigcbench.bench.store import Store
from aigcbench.bench.sweep import run_sweep, unavailable_cells, verdict
from aigcbench.bench.sweep_file import SweepCell, load_sweep

SWEEP = """
[sweep]
name = "t"
[defaults]
size = "tiny"
duration = 0.2
min_iterations = 5
[matrix]
workload = ["dcgan"]
backend = ["pytorch", "null"]
batch_size = [1, 2]
"""


class FakeExecutor:
    """Returns a record at once: failed for cells whose batch size is in `failing`."""

    def __init__(self, failing: tuple[int, ...] = (), interrupt_at: int | None = None) -> None:
        self.ran: list[SweepCell] = []
        self.failing = failing
        self.interrupt_at = interrupt_at

    def run(self, cell: SweepCell, observer) -> Record:
        if self.interrupt_at is not None and len(self.ran) == self.interrupt_at:
            raise KeyboardInterrupt
        self.ran.append(cell)
        record = failure_record(cell.config, "fake failure", metadata={})
        if cell.config.effective_batch_size in self.failing and cell.config.backend == "null":
            return record
        return dataclasses.replace(record, status="ok", reason=None)


class Quiet:
    def cell_started(self, index, cell):
        return self

    def cell_done(self, index, result) -> None:
        pass

    def stage(self, text: str) -> None:
        pass

    def loop(self, *args) -> None:
        pass


@pytest.fixture
def plan(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    return load_sweep(path)


def _run(plan, store: Store, executor: FakeExecutor, **kwargs):
    return run_sweep(plan, store, fingerprint()["hardware_key"], Quiet(), executor=executor, skip={}, **kwargs)


def test_every_cell_is_stored_and_a_rerun_measures_nothing(plan, store_path: Path) -> None:
    with Store.open(str(store_path)) as store:
        first = FakeExecutor(failing=(2,))
        results = _run(plan, store, first)
        assert [r.action for r in results] == ["ran"] * 4 and len(first.ran) == 4
        assert store.count() == 4
        assert verdict(results) == 1  # one failed cell
        again = FakeExecutor()
        rerun = _run(plan, store, again)
        assert again.ran == [] and [r.action for r in rerun] == ["stored"] * 4
        assert verdict(rerun) == 1  # the stored failure still decides the verdict
        assert store.count() == 4


def test_retry_failed_and_force(plan, store_path: Path) -> None:
    with Store.open(str(store_path)) as store:
        _run(plan, store, FakeExecutor(failing=(2,)))
        retry = FakeExecutor()
        results = _run(plan, store, retry, retry_failed=True)
        assert [(c.config.backend, c.config.effective_batch_size) for c in retry.ran] == [("null", 2)]
        assert verdict(results) == 0  # the latest record of that cell is now ok
        forced = FakeExecutor()
        _run(plan, store, forced, force=True)
        assert len(forced.ran) == 4 and store.count() == 4 + 1 + 4


def test_a_config_change_or_other_hardware_is_a_new_cell(plan, store_path: Path) -> None:
    with Store.open(str(store_path)) as store:
        _run(plan, store, FakeExecutor())
        relabelled = dataclasses.replace(plan, cells=tuple(
            dataclasses.replace(c, config=dataclasses.replace(c.config, labels={"commit": "abc"})) for c in plan.cells
        ))
        executor = FakeExecutor()
        _run(relabelled, store, executor)
        assert len(executor.ran) == 4
        other = FakeExecutor()
        run_sweep(plan, store, "another-machine", Quiet(), executor=other, skip={})
        assert len(other.ran) == 4


def test_ctrl_c_keeps_every_finished_cell(plan, store_path: Path) -> None:
    with Store.open(str(store_path)) as store:
        with pytest.raises(KeyboardInterrupt):
            _run(plan, store, FakeExecutor(interrupt_at=2))
        assert store.count() == 2
        executor = FakeExecutor()
        _run(plan, store, executor)
        assert len(executor.ran) == 2  # the rerun continues where it stopped


def test_a_backend_missing_here_is_skipped_not_failed(tmp_path: Path, store_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.replace('["pytorch", "null"]', '["pytorch", "tensorrt"]'))
    plan = load_sweep(path)
    skip = unavailable_cells(plan)
    assert sorted(skip) == [2, 3] and all("tensorrt" in why for why in skip.values())
    with Store.open(str(store_path)) as store:
        executor = FakeExecutor()
        results = run_sweep(plan, store, "hw", Quiet(), executor=executor, skip=skip)
    assert [r.action for r in results] == ["ran", "ran", "skipped", "skipped"]
    assert verdict(results) == 0


def test_a_malformed_sweep_is_refused_before_anything_runs(tmp_path: Path, store_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SWEEP.replace("batch_size = [1, 2]", "batch_size = [1, 0]"))
    result = CliRunner().invoke(app, ["sweep", str(path), "--store", str(store_path)])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "bad.toml:11: matrix.batch_size" in line and "batch" in line
    assert not store_path.exists()


def test_a_bad_backend_option_is_refused_before_anything_runs(tmp_path: Path, store_path: Path) -> None:
    path = tmp_path / "opt.toml"
    path.write_text(SWEEP + '[[override]]\nwhere = { backend = "null" }\nset = { options = { fualt = "hang" } }\n')
    result = CliRunner().invoke(app, ["sweep", str(path), "--store", str(store_path)])
    assert result.exit_code == 2 and "fualt" in result.stderr and "opt.toml: matrix #3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sweep_end_to_end_isolates_a_segfault_and_a_hang(tmp_path: Path, store_path: Path) -> None:
    path = tmp_path / "iso.toml"
    path.write_text(SWEEP + """
[[override]]
where = { backend = "null", batch_size = 1 }
set = { options = { fault = "segfault" } }
[[override]]
where = { backend = "null", batch_size = 2 }
set = { options = { fault = "hang" }, timeout = 6 }
[[cell]]
workload = "dcgan"
backend = "null"
batch_size = 4
options = { fault = "exception", fault_at = 2 }
""")
    out = tmp_path / "all.json"
    args = ["sweep", str(path), "--store", str(store_path), "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output + result.stderr
    records = json.loads(out.read_text())
    statuses = sorted((r["backend"]["name"], r["scenario"]["batch_size"], r["status"]) for r in records)
    assert statuses == [
        ("null", 1, "failed"), ("null", 2, "failed"), ("null", 4, "failed"), ("pytorch", 1, "ok"), ("pytorch", 2, "ok")
    ]
    reasons = {r["scenario"]["batch_size"]: r["reason"] for r in records if r["status"] == "failed"}
    assert "SIGSEGV" in reasons[1] and reasons[2].startswith("timeout") and "injected exception" in reasons[4]
    assert "2 ok, 0 invalid, 3 failed, 0 skipped (5 measured now, 0 already stored)" in result.output
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 1
    assert "(0 measured now, 5 already stored)" in rerun.output
    with Store.open(str(store_path)) as store:
        assert store.count() == 5


def test_sigint_stops_the_sweep_keeps_finished_cells_and_leaves_no_worker(tmp_path: Path, store_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    path = tmp_path / "stop.toml"
    path.write_text(SWEEP.replace('["pytorch", "null"]', '["null"]') + """
[[override]]
where = { batch_size = 2 }
set = { options = { fault = "hang" }, timeout = 300 }
""")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("aigcbench")), "sweep", str(path), "--store", str(store_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        # Wait until the first cell is stored and the hanging second cell's worker is running.
        while time.monotonic() < deadline:
            workers = psutil.Process(proc.pid).children(recursive=True)
            if store_path.exists() and workers:
                with Store.open(str(store_path)) as store:
                    if store.count() == 1:
                        break
            time.sleep(0.2)
        else:
            pytest.fail("the first cell never finished")
        time.sleep(2)  # let the second worker get going
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted; 1 of 2 cells finished" in stderr
    with Store.open(str(store_path)) as store:
        assert [r.status for r in store.records()] == ["ok"]
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


def test_dry_run_lists_what_would_run_and_touches_nothing(plan, store_path: Path) -> None:
    args = ["sweep", str(plan.path), "--store", str(store_path), "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert result.output.count("run (timeout 1800 s)") == 4
    assert not store_path.exists()
    with Store.open(str(store_path)) as store:
        _run(plan, store, FakeExecutor(failing=(2,)))
    result = CliRunner().invoke(app, args + ["--retry-failed"])
    assert result.output.count("stored (ok)") == 3 and result.output.count("run (timeout") == 1
