"""The pre-imported worker (bench/zygote.py): containment, survival, restart, and nothing leaking between children.

A zygote takes seconds to import torch, so most tests share one (module
scope); those that kill it start their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from aigcbench.bench.config import RunConfig
from aigcbench.bench.isolation import run_isolated
from aigcbench.bench.launchers import COLD, FORKED, FORKED_AFTER_RESTART, WorkerJob, ZygoteLauncher
from aigcbench.bench.probes.environment import fingerprint
from aigcbench.bench.store import Store
from aigcbench.bench.sweep import LocalWorkers, run_sweep
from aigcbench.bench.sweep_file import load_sweep

from .test_cli import cli

REPO = Path(__file__).resolve().parents[1]
PROBE_VARIABLE = "AIGCBENCH_ZYGOTE_PROBE"


class Quiet:
    def __init__(self, on_stage=None) -> None:
        self.on_stage = on_stage

    def stage(self, text: str) -> None:
        if self.on_stage is not None:
            self.on_stage(text)

    def loop(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def zygote():
    # The probe entry point below lives in this test module: the zygote must be able to import `tests`.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO.parent), str(REPO), old) if p)
    launcher = ZygoteLauncher()
    try:
        yield launcher
    finally:
        launcher.close()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _config(fault: str = "none", duration: float = 0.05, **options: str) -> RunConfig:
    return RunConfig.from_options({
        "workload": "dcgan", "backend": "null", "size": "tiny", "duration": duration, "min_iterations": 3,
        "warmup": 0, "warmup_duration": 0, "options": {"fault": fault, **options},
    })


# --- containment: a sweep served by the zygote --------------------------------------------------

SWEEP = """
[sweep]
name = "z"
[defaults]
size = "tiny"
duration = 0.05
min_iterations = 3
warmup = 0
warmup_duration = 0
[matrix]
workload = ["dcgan"]
backend = ["null"]
batch_size = [1, 2, 3, 4, 5]
[[override]]
where = { batch_size = 2 }
set = { options = { fault = "segfault" } }
[[override]]
where = { batch_size = 3 }
set = { options = { fault = "hang" }, timeout = 4 }
[[override]]
where = { batch_size = 4 }
set = { options = { fault = "exception" } }
"""


class PidProgress:
    """Notes the zygote's pid after every cell."""

    def __init__(self, launcher: ZygoteLauncher) -> None:
        self.launcher, self.pids = launcher, []

    def cell_started(self, index, cell):
        return Quiet()

    def cell_done(self, index, result) -> None:
        self.pids.append(self.launcher.pid)


def test_crashing_hanging_and_raising_cells_fail_alone_and_the_zygote_survives(zygote, tmp_path: Path) -> None:
    path = tmp_path / "z.toml"
    path.write_text(SWEEP)
    progress = PidProgress(zygote)
    with Store.open(str(tmp_path / "r.db")) as store:
        results = run_sweep(load_sweep(path), store, fingerprint()["hardware_key"], progress,
                            executor=LocalWorkers(zygote), skip={})
    records = {r.cell.config.batch_size: r.record for r in results}
    assert {b: r.status for b, r in records.items()} == {1: "ok", 2: "failed", 3: "failed", 4: "failed", 5: "ok"}
    assert "SIGSEGV" in records[2].reason
    assert records[3].reason.startswith("timeout: worker still running after 4 s") and "null.py" in records[3].reason
    assert "injected exception" in records[4].reason
    assert {r.metadata["worker"]["start"] for r in records.values()} == {FORKED}
    assert len(set(progress.pids)) == 1 and psutil.pid_exists(progress.pids[0])  # one zygote, still there
    assert psutil.Process(progress.pids[0]).children() == []  # every child reaped, the hung one's group killed


# --- nothing leaks between children ------------------------------------------------------------

def probe(argv: list[str], parent: int | None = None) -> int:
    """Runs in a forked child instead of the worker: reports its inherited state, then changes some."""
    import numpy
    import torch

    seen = {
        "threads_at_start": len(os.listdir("/proc/self/task")),
        "variable": os.environ.get(PROBE_VARIABLE),
        "random": random.random(),
        "numpy": float(numpy.random.random()),
        "torch": float(torch.rand(1)),
        "torch_threads": torch.get_num_threads(),
        "cuda_initialized": torch.cuda.is_initialized(),
        "parent_is_zygote": os.getppid() == parent,
        "own_session_and_group": os.getsid(0) == os.getpid() == os.getpgid(0),
        "open_files": sorted(os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")),
    }
    os.environ[PROBE_VARIABLE] = "set by a previous child"
    torch.set_num_threads(1)
    seen["torch_threads_after_set"] = torch.get_num_threads()
    Path(argv[1]).write_text(json.dumps(seen))
    return 0


def _probe(launcher: ZygoteLauncher, tmp_path: Path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    with open(tmp_path / f"{name}.log", "wb") as stderr:
        worker = launcher.launch(WorkerJob(tmp_path / "unused", out, entry="tests.test_zygote:probe"), stderr.fileno())
        assert worker.start in (FORKED, FORKED_AFTER_RESTART), worker.start_reason
        assert worker.wait(120)
        code, usage = worker.finish()
    assert code == 0, (tmp_path / f"{name}.log").read_text()
    assert usage.ru_maxrss > 0  # the zygote's wait4 of this child
    return json.loads(out.read_text())


def test_no_state_leaks_from_one_child_to_the_next(zygote, tmp_path: Path) -> None:
    first, second = _probe(zygote, tmp_path, "first"), _probe(zygote, tmp_path, "second")
    cold = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                          capture_output=True, text=True, timeout=120, check=True)
    for seen in (first, second):
        assert seen["variable"] is None  # the first child set it; the second forked from the pristine zygote
        assert seen["threads_at_start"] == 1 and not seen["cuda_initialized"]
        assert seen["torch_threads"] == int(cold.stdout)  # torch's default, as in a fresh interpreter
        assert seen["torch_threads_after_set"] == 1  # and set_num_threads works in the child
        assert seen["parent_is_zygote"] and seen["own_session_and_group"]
        assert not any(f.endswith(".db") for f in seen["open_files"])
    # The zygote itself loaded no runtime and no database driver (so it holds no store connection).
    # (The probe cannot tell: importing this test module in the child imports the store.)
    mapped = Path(f"/proc/{zygote.pid}/maps").read_text()
    for library in ("onnxruntime", "openvino", "tensorrt", "_sqlite3", "psycopg"):
        assert library not in mapped, library
    assert not any(f.path.endswith(".db") for f in psutil.Process(zygote.pid).open_files())
    for source in ("random", "numpy", "torch"):
        assert first[source] != second[source], source  # reseeded from os.urandom in each child


# --- the zygote dies: restarted, the cell retried once, the record says so ---------------------------

def test_a_zygote_killed_between_cells_is_restarted_and_the_record_says_so() -> None:
    launcher = ZygoteLauncher()
    try:
        first = run_isolated(_config(), timeout_s=120, observer=Quiet(), launcher=launcher)
        old = launcher.pid
        os.kill(old, signal.SIGKILL)
        psutil.Process(old).wait(10) if psutil.pid_exists(old) else None
        second = run_isolated(_config(), timeout_s=120, observer=Quiet(), launcher=launcher)
        third = run_isolated(_config(), timeout_s=120, observer=Quiet(), launcher=launcher)
        assert launcher.pid not in (None, old)
    finally:
        launcher.close()
    assert [r.status for r in (first, second, third)] == ["ok", "ok", "ok"]
    assert [r.metadata["worker"]["start"] for r in (first, second, third)] == [FORKED, FORKED_AFTER_RESTART, FORKED]


def test_a_zygote_killed_under_a_running_cell_is_restarted_and_the_cell_retried_once() -> None:
    launcher = ZygoteLauncher()
    killed: list[int] = []

    def kill_zygote_once(stage: str) -> None:
        if stage.startswith("measuring") and not killed:
            killed.append(launcher.pid)
            os.kill(launcher.pid, signal.SIGKILL)

    try:
        record = run_isolated(_config(duration=3), timeout_s=120, observer=Quiet(kill_zygote_once), launcher=launcher)
        assert launcher.pid not in (None, killed[0])
    finally:
        launcher.close()
    assert record.status == "ok", record.reason
    assert record.metadata["worker"]["start"] == FORKED_AFTER_RESTART


def test_accelerator_cells_start_cold_and_say_why(zygote, tmp_path: Path) -> None:
    with open(tmp_path / "e.log", "wb") as stderr:
        worker = zygote.launch(WorkerJob(tmp_path / "missing.json", tmp_path / "r.json", device="cuda:0"),
                               stderr.fileno())
        worker.wait(120)
        worker.finish()
    assert worker.start == COLD and "cuda:0" in worker.start_reason


def test_closing_the_launcher_ends_the_zygote() -> None:
    launcher = ZygoteLauncher()
    run_isolated(_config(), timeout_s=120, observer=Quiet(), launcher=launcher)
    pid = launcher.pid
    launcher.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_zygote_and_its_child_die_with_the_cli() -> None:
    """A CLI killed outright takes the zygote with it, and the zygote's hanging child with that."""
    code = (
        "from aigcbench.bench.config import RunConfig\n"
        "from aigcbench.bench.isolation import run_isolated\n"
        "from aigcbench.bench.launchers import ZygoteLauncher\n"
        "class Q:\n    def stage(self, t): pass\n    def loop(self, *a): pass\n"
        "c = RunConfig.from_options({'workload': 'dcgan', 'backend': 'null', 'size': 'tiny',"
        " 'options': {'fault': 'hang'}})\n"
        "run_isolated(c, timeout_s=600, observer=Q(), launcher=ZygoteLauncher())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(family) < 2:  # the zygote and its forked child
            family = psutil.Process(parent.pid).children(recursive=True)
            time.sleep(0.2)
        assert len(family) >= 2, "the zygote never forked a child"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive
    finally:
        parent.kill()
        for process in family:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass


# --- through the real CLI: refusals and memory limits keep their contract ---------------------------

def _digest(*paths: Path) -> list[str | None]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_refusal_inside_a_forked_worker_exits_2_and_stores_nothing(tmp_path: Path, command: str) -> None:
    store, target = tmp_path / "results.db", tmp_path / "out.json"
    if command == "run":
        args = ["run", "--workload", "dcgan", "--backend", "null", "--size", "tiny", "--option", "fault=refuse",
                "--duration", "0.05", "--warmup", "0", "--warmup-duration", "0", "--store", str(store),
                "--json", str(target)]
    else:
        path = tmp_path / "r.toml"
        path.write_text('[[cell]]\nworkload = "dcgan"\nbackend = "null"\nsize = "tiny"\n'
                        'options = { fault = "refuse" }\nduration = 0.05\nwarmup = 0\nwarmup_duration = 0\n')
        args = ["sweep", str(path), "--store", str(store), "--json", str(target)]
    before = _digest(store, target)
    result = cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if command == "run":
        assert len(result.stderr.strip().splitlines()) == 1 and "refuse" in result.stderr
    if store.exists():
        with Store.open(str(store)) as opened:
            assert opened.count() == 0
    else:
        assert _digest(store) == before[:1]
    assert not target.exists() or json.loads(target.read_text()) == []


def test_a_forked_cell_over_its_memory_limit_fails_saying_so(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    result = cli("run", "--workload", "dcgan", "--size", "large", "--backend", "pytorch", "--batch-size", "64",
                 "--duration", "0.05", "--min-iterations", "1", "--warmup", "0", "--warmup-duration", "0",
                 "--memory-limit", "1GiB", "--no-store", "--json", str(target))
    assert result.returncode == 1, result.stderr
    record = json.loads(target.read_text())
    assert record["status"] == "failed" and record["reason"] == "exceeded memory limit 1 GiB"
    assert record["metadata"]["worker"]["start"] == FORKED
