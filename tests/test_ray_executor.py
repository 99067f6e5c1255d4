"""The Ray executor on a real two-node Ray cluster on this machine: placement, verdicts, resume, refusals.

The cluster is started once for the module: a head advertising the custom
resource `head-hw` and a second node advertising `node-b`, one CPU each,
under a temporary `--temp-dir`. Each `ray start --block` runs in a session of
its own, so teardown stops exactly these processes (SIGTERM, which drains
the node, then SIGKILL to what is left of each group) — never `ray stop`,
which would stop every Ray on the machine.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.ray_cluster import Node
from aigcbench.bench.ray_executor import _fits, _need
from aigcbench.bench.store import Store
from aigcbench.bench.sweep_file import load_sweep

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (aigcbench[ray])")

START_TIMEOUT_S = 120.0
# Prints {node id: its resources} once both nodes are up.
_NODES = (
    "import json, logging, sys, time, ray\n"
    "ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)\n"
    "deadline = time.monotonic() + float(sys.argv[2])\n"
    "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.monotonic() < deadline:\n"
    "    time.sleep(0.2)\n"
    "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))\n"
)

# Two cells, one on each node: the one on node-b segfaults.
PINNED = """
[sweep]
name = "two-nodes"
timeout = 120
[defaults]
size = "tiny"
duration = 0.2
min_iterations = 5
warmup = 1
warmup_duration = 0
[matrix]
workload = ["dcgan"]
backend = ["null"]
batch_size = [1, 2]
[[override]]
where = { batch_size = 2 }
set = { options = { fault = "segfault" } }
"""
PINS = """
[[override]]
where = { batch_size = 1 }
set = { hardware = "head-hw" }
[[override]]
where = { batch_size = 2 }
set = { hardware = "node-b" }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _ray_start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    ray = str(Path(sys.executable).with_name("ray"))
    with open(log, "wb") as out:
        return subprocess.Popen(
            [ray, "start", "--block", "--disable-usage-stats", "--num-cpus=1", "--object-store-memory=100000000",
             *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )


def _wait_started(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while b"Ray runtime started" not in log.read_bytes():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the node drains and stops its own processes
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of this node's session is left
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """(address, {resource: node id}) of a two-node cluster; stopped at the end, even on failure."""
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("ray")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    # The cells' workers inherit the cache; no token authentication (whatever ~/.ray holds): its drivers join as
    # the tests' drivers do, with no token.
    env.update(AIGCBENCH_CACHE=str(root / "cache"), RAY_TMPDIR=str(root), RAY_AUTH_MODE="disabled")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = f"--temp-dir={root / 't'}"
    procs = [_ray_start(["--head", f"--port={port}", "--include-dashboard=false", temp,
                         '--resources={"head-hw": 1}'], root / "head.log", env)]
    try:
        _wait_started(procs[0], root / "head.log")
        procs.append(_ray_start([f"--address={address}", temp, '--resources={"node-b": 1}'], root / "b.log", env))
        done = subprocess.run([sys.executable, "-c", _NODES, address, str(START_TIMEOUT_S)], capture_output=True,
                              text=True, timeout=START_TIMEOUT_S + 60, env=env)
        assert done.returncode == 0, done.stderr[-2000:] + (root / "head.log").read_text()[-2000:]
        nodes = json.loads(done.stdout.strip().splitlines()[-1])
        by_resource = {name: node for node, resources in nodes.items() for name in resources
                       if name in ("head-hw", "node-b")}
        assert set(by_resource) == {"head-hw", "node-b"}, nodes
        yield address, by_resource
    finally:
        _stop(list(reversed(procs)))


@pytest.fixture(autouse=True)
def _no_ray_of_the_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never join a cluster someone started on this machine, nor one $RAY_ADDRESS names.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")


def _sweep(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, as a user runs it (its Ray driver dies with it)."""
    aigcbench = str(Path(sys.executable).with_name("aigcbench"))
    return subprocess.run([aigcbench, "sweep", *args], capture_output=True, text=True, timeout=timeout)


def _verdicts(records: list[dict]) -> list[tuple]:
    """Per cell: batch size, status and the kind of failure (the reason up to its first colon)."""
    return sorted((r["scenario"]["batch_size"], r["status"], (r["reason"] or "").split(":")[0]) for r in records)


def test_cells_run_on_the_node_they_are_pinned_to_with_the_local_verdicts_and_resume(
    cluster, tmp_path: Path, store_path: Path
) -> None:
    address, by_resource = cluster
    path = tmp_path / "pinned.toml"
    path.write_text(PINNED + PINS)
    out = tmp_path / "ray.json"
    args = [str(path), "--executor", "ray", "--ray-address", address, "--store", str(store_path)]
    done = _sweep(*args, "--json", str(out))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 ok, 0 invalid, 1 failed, 0 skipped (2 measured now, 0 already stored)" in done.stdout
    records = json.loads(out.read_text())
    pinned = {1: "head-hw", 2: "node-b"}
    for record in records:
        executor = record["metadata"]["executor"]
        assert executor["name"] == "ray"
        assert executor["node"] == by_resource[pinned[record["scenario"]["batch_size"]]]
    assert "SIGSEGV" in next(r["reason"] for r in records if r["status"] == "failed")

    local_path = tmp_path / "local.toml"
    local_path.write_text(PINNED)  # the same cells, unpinned: the local executor measures them all here
    local_out = tmp_path / "local.json"
    local = CliRunner().invoke(app, ["sweep", str(local_path), "--store", str(tmp_path / "local.db"),
                                     "--json", str(local_out)])
    assert local.exit_code == 1, local.output + local.stderr
    assert _verdicts(json.loads(local_out.read_text())) == _verdicts(records)

    rerun = _sweep(*args)
    assert rerun.returncode == 1, rerun.stderr[-3000:]
    assert "(0 measured now, 2 already stored)" in rerun.stdout
    with Store.open(str(store_path)) as store:
        assert store.count() == 2


def test_a_resource_no_node_has_is_refused_before_anything_runs(cluster, tmp_path: Path, store_path: Path) -> None:
    address, _ = cluster
    path = tmp_path / "l4.toml"
    path.write_text(PINNED + PINS.replace('"node-b" }', '"nvidia-l4" }'))
    done = _sweep(str(path), "--executor", "ray", "--ray-address", address, "--store", str(store_path))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'nvidia-l4'" in lines[0] and "matrix #2" in lines[0], lines
    assert "head-hw" in lines[0] and "node-b" in lines[0]  # what the cluster has instead
    assert not store_path.exists()


@needs_ray
def test_an_address_nothing_answers_is_refused_at_once(tmp_path: Path, store_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(PINNED)
    start = time.monotonic()
    done = CliRunner().invoke(app, ["sweep", str(path), "--executor", "ray", "--ray-address",
                                    f"127.0.0.1:{_free_port()}", "--store", str(store_path)])
    assert done.exit_code == 2
    assert "nothing answers" in done.stderr and "Connection refused" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert time.monotonic() - start < 30
    assert not store_path.exists()


@needs_ray
def test_an_address_that_accepts_but_never_answers_is_refused_in_bounded_time(
    tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aigcbench.bench import ray_cluster

    monkeypatch.setattr(ray_cluster, "CONNECT_TIMEOUT_S", 3.0)
    path = tmp_path / "s.toml"
    path.write_text(PINNED)
    with socket.socket() as silent:  # accepts connections (the kernel does), never says a word
        silent.bind(("0.0.0.0", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        done = CliRunner().invoke(app, ["sweep", str(path), "--executor", "ray", "--ray-address", address,
                                        "--store", str(store_path)])
        took = time.monotonic() - start
    assert done.exit_code == 2, done.output
    assert address in done.stderr and "within 3 s" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert took < 20
    assert not store_path.exists()


def test_ray_address_without_the_ray_executor_is_refused(tmp_path: Path, store_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(PINNED)
    done = CliRunner().invoke(app, ["sweep", str(path), "--ray-address", "127.0.0.1:1", "--store", str(store_path)])
    assert done.exit_code == 2 and "--ray-address needs --executor ray" in done.stderr


def test_the_ray_executor_without_ray_installed_says_how_to_install_it(
    tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does where Ray is not installed
    path = tmp_path / "s.toml"
    path.write_text(PINNED)
    done = CliRunner().invoke(app, ["sweep", str(path), "--executor", "ray", "--store", str(store_path)])
    assert done.exit_code == 2
    assert done.stderr.strip() == (
        "aigcbench: error: --executor ray needs Ray, which is not installed here: pip install 'aigcbench[ray]'"
    )
    assert not store_path.exists()


def _node(resources: dict, hardware_key: str = "amd-epyc-2c") -> Node:
    return Node("n" * 56, "10.0.0.1", resources, {"hardware_key": hardware_key}, sys.executable)


def test_placement_needs_the_hardware_a_gpu_for_cuda_and_a_cpu(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    cuda_cell = '[[cell]]\nworkload = "dcgan"\nbackend = "null"\ndevice = "cuda"\nhardware = "nvidia-l4"\n'
    path.write_text(PINNED + PINS + cuda_cell)
    cells = load_sweep(path).cells
    head, cuda = cells[0], cells[-1]
    any_cell = dataclasses.replace(head, hardware=None)
    assert _fits(_node({"CPU": 4}), any_cell)
    assert not _fits(_node({"CPU": 0, "head-hw": 1}), any_cell)  # a head started with --num-cpus=0 stays free
    assert not _fits(_node({"CPU": 4, "node-b": 1}), head)  # head-hw is pinned
    assert _fits(_node({"CPU": 4}, hardware_key="head-hw"), head)  # a node whose hardware key is the name
    assert not _fits(_node({"CPU": 8, "nvidia-l4": 1}), cuda)  # the resource, but no GPU
    assert _fits(_node({"CPU": 8, "GPU": 1, "nvidia-l4": 1}), cuda)
    assert _need(cuda) == "hardware 'nvidia-l4' with a GPU (device cuda)"


def _cell_worker_of_ray(proc) -> bool:
    """A cell's worker process started by a Ray task (its parent is a Ray worker, `ray::measure_on_node`)."""
    import psutil

    try:
        return "aigcbench.bench.worker" in " ".join(proc.info["cmdline"] or []) and \
            proc.parent().cmdline()[0].startswith("ray::")
    except (psutil.Error, AttributeError, IndexError):
        return False


@pytest.mark.slow
def test_ctrl_c_cancels_every_running_task_and_keeps_what_finished(cluster, tmp_path: Path, store_path: Path) -> None:
    import psutil

    address, _ = cluster
    path = tmp_path / "hang.toml"
    path.write_text(PINNED.replace("[1, 2]", "[1, 2, 3]").replace('fault = "segfault"', 'fault = "hang"') + """
[[override]]
where = { batch_size = [1, 2] }
set = { hardware = "head-hw" }
[[override]]
where = { batch_size = 3 }
set = { hardware = "node-b", options = { fault = "hang" } }
""")
    aigcbench = str(Path(sys.executable).with_name("aigcbench"))
    proc = subprocess.Popen([aigcbench, "sweep", str(path), "--executor", "ray", "--ray-address", address,
                             "--store", str(store_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        workers: list = []
        while time.monotonic() < deadline:  # the first cell stored, both hanging cells' workers running
            workers = [p for p in psutil.process_iter(["cmdline"]) if _cell_worker_of_ray(p)]
            if store_path.exists() and len(workers) >= 2:
                with Store.open(str(store_path)) as store:
                    if store.count() == 1:
                        break
            time.sleep(0.5)
        else:
            pytest.fail("the sweep never had one cell stored and two running")
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted; 1 of 3 cells finished" in stderr
    time.sleep(1)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
