"""Every second of a command is in its record (issue 11, item 1), and the CLI never imports torch (item 2).

`metadata.wall_s` holds the parts of a record's wall time (`bench/walltime.py`).
The end-to-end cases time the whole command from outside, as a user's shell
would, and require the parts to add up to it within 5 %: what no part covers
(appending to the store, printing the table, the interpreter's exit) must stay
small, and a part that double-counts shows as a sum above the command's time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aigcbench.bench import walltime
from aigcbench.bench.store import Store
from aigcbench.bench.walltime import PARTS, Timeline, parts_of

# The console script a user types (`aigcbench.bench.cli:main`), installed beside this interpreter.
CLI = [str(Path(sys.executable).with_name("aigcbench"))]
TINY_RUN = ["run", "--workload", "dcgan", "--backend", "null", "--size", "tiny", "--duration", "0.2"]
# The part each kind of command must show (beside what any cell shows).
CELL_PARTS = ("worker_start", "worker_imports", "preflight", "build", "describe", "first_call", "warmup", "measure",
              "record", "worker_exit")


def test_parts_last_until_the_next_mark_and_recurring_parts_add_up():
    marks = [("start", 0), ("check", 1_000_000_000), ("prepare", 1_500_000_000), ("export", 1_750_000_000),
             ("prepare", 2_000_000_000), ("measure", 2_250_000_000)]
    assert parts_of(marks, 3_250_000_000) == {
        "start": 1.0, "check": 0.5, "export": 0.25, "prepare": 0.5, "measure": 1.0,
    }


def test_marks_from_two_processes_are_ordered_by_time_not_by_arrival():
    marks = [("check", 0), ("measure", 3_000_000_000), ("worker_start", 1_000_000_000)]
    assert parts_of(marks, 4_000_000_000) == {"check": 1.0, "worker_start": 2.0, "measure": 1.0}


def test_an_unknown_part_is_refused_and_a_sink_sees_every_mark():
    seen: list[tuple[str, int]] = []
    timeline = Timeline(sink=lambda part, at: seen.append((part, at)))
    timeline.mark("build", 5)
    timeline.extend([("measure", 9)])
    assert seen == [("build", 5), ("measure", 9)] and timeline.marks == tuple(seen)
    with pytest.raises(ValueError, match="unknown wall-time part"):
        timeline.mark("lunch")


def test_this_process_started_before_now_and_after_the_interpreter_was_launched():
    started = walltime.process_start_ns()
    assert started is not None
    age_s = (walltime.now_ns() - started) / 1e9
    assert 0 < age_s < time.process_time() + 3600  # a real age, not a stamp on another clock


def _timed(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    return done, time.monotonic() - start


def _stored(store: Path) -> list:
    with Store.open(str(store)) as opened:
        return list(opened.records())


def test_a_runs_parts_add_up_to_the_commands_wall_time(tmp_path):
    # Read back from the store, not --json: a JSON file is written after the record is final, outside its parts.
    done, wall = _timed([*CLI, *TINY_RUN, "--store", str(tmp_path / "s.db")], tmp_path)
    assert done.returncode == 0, done.stderr
    [record] = [r.to_dict() for r in _stored(tmp_path / "s.db")]
    parts = record["metadata"]["wall_s"]
    assert set(parts) <= set(PARTS)
    assert {"start", "check", "zygote_start", *CELL_PARTS} <= set(parts)
    assert sum(parts.values()) == pytest.approx(wall, rel=0.05), (parts, wall)
    assert parts["measure"] >= record["metrics"]["loop_wall_s"]  # the loop is inside its part
    assert "s of it measuring" in done.stdout  # the table's note says the total beside the measured time


def test_an_in_process_run_accounts_for_its_time_too(tmp_path):
    # An in-process run has imported torch into the command itself, so its interpreter's exit (torch's
    # teardown, after the record is final) is long and varies with the machine's load. The parts must
    # add up to the time until the record was written (the JSON file's mtime, on the same wall clock),
    # and never exceed the whole command.
    out = tmp_path / "r.json"
    began_ns = time.time_ns()
    done, wall = _timed([*CLI, *TINY_RUN, "--in-process", "--no-store", "--json", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    parts = json.loads(out.read_text())["metadata"]["wall_s"]
    assert list(parts)[:3] == ["start", "check", "preflight"] and "worker_start" not in parts
    until_written = (out.stat().st_mtime_ns - began_ns) / 1e9
    assert sum(parts.values()) == pytest.approx(until_written, rel=0.05), (parts, until_written)
    assert sum(parts.values()) <= wall, (parts, wall)


SWEEP = """
[sweep]
name = "wall"
[defaults]
workload = "dcgan"
backend = "null"
size = "tiny"
duration = 0.05
min_iterations = 3
[matrix]
seed = [0, 1, 2]
"""


def test_a_sweeps_cells_add_up_to_the_sweeps_wall_time(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP)
    done, wall = _timed([*CLI, "sweep", "s.toml", "--store", "s.db"], tmp_path)
    assert done.returncode == 0, done.stderr
    cells = [record.metadata["wall_s"] for record in _stored(tmp_path / "s.db")]
    first, *rest = cells
    assert {"start", "check", "zygote_start", *CELL_PARTS} <= set(first)
    assert all("sweep" in cell and "start" not in cell and "zygote_start" not in cell for cell in rest)
    assert sum(sum(cell.values()) for cell in cells) == pytest.approx(wall, rel=0.05), (cells, wall)


# The CLI in this process, then the names of the heavy libraries it imported, as the last stdout line.
IMPORTS_DRIVER = """
import json, sys
from aigcbench.bench.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = ("torch", "numpy", "diffusers", "onnx", "onnxruntime", "openvino", "tensorrt", "transformers")
print(json.dumps({"code": code, "heavy": sorted(m for m in heavy if m in sys.modules)}))
"""


def _cli_imports(args: list[str], cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", IMPORTS_DRIVER, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args, code", [
    (TINY_RUN, 0),
    (["run", "--workload", "ddpm", "--backend", "pytorch", "--size", "tiny", "--steps", "2", "--duration", "0.05",
      "--warmup", "0", "--warmup-duration", "0", "--min-iterations", "1"], 0),
    # Refused in the worker (the batch's memory floor exceeds any machine's memory): exit 2, one line, no torch here.
    (["run", "--workload", "ddpm", "--backend", "pytorch", "--size", "large", "--batch-size", "65536"], 2),
    # A device torch does not see: exit 3, decided in the worker.
    (["run", "--workload", "dcgan", "--backend", "pytorch", "--size", "tiny", "--device", "cuda:7"], 3),
], ids=["null", "ddpm-pytorch", "too-big", "no-device"])
def test_the_cli_process_never_imports_torch_or_a_runtime(tmp_path, args, code):
    found = _cli_imports([*args, "--store", str(tmp_path / "s.db")], tmp_path)
    assert found == {"code": code, "heavy": []}
    assert (tmp_path / "s.db").exists() == (code == 0)  # a refused run leaves no store behind


def test_a_sweep_checks_its_cells_without_torch_in_the_cli(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP)
    found = _cli_imports(["sweep", "s.toml", "--store", "s.db"], tmp_path)
    assert found == {"code": 0, "heavy": []}


def test_a_sweep_cell_refused_by_the_runtime_check_stops_the_sweep_before_any_cell(tmp_path):
    too_big = '[[override]]\nwhere = { seed = 2 }\nset = { workload = "ddpm", size = "large", batch_size = 65536 }\n'
    (tmp_path / "s.toml").write_text(SWEEP.replace('backend = "null"', 'backend = "pytorch"') + too_big)
    found = _cli_imports(["sweep", "s.toml", "--store", "s.db"], tmp_path)
    assert found == {"code": 2, "heavy": []}
    assert not (tmp_path / "s.db").exists()  # refused before the store was opened, so nothing measured
