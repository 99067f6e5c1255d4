"""Per-cell memory limits, and workers that import only our code (issue 10, items 8 and 9).

Memory sizes parse to bytes or are refused with one line naming the option;
`run --memory-limit` caps the worker (RLIMIT_AS) and a cell that needs more
becomes a `failed` record saying so, exit 1. A worker started from a folder
full of files named like the modules it imports never executes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aigcbench.bench import resources
from aigcbench.bench.config import RunConfig
from aigcbench.bench.errors import UserError
from aigcbench.bench.isolation import run_isolated, worker_argv
from aigcbench.bench.resources import format_bytes, parse_memory_limit
from aigcbench.bench.store import Store

from .test_cli import cli

GiB, MiB = 1024**3, 1024**2
QUICK = ["--duration", "0.05", "--min-iterations", "1", "--warmup", "0", "--warmup-duration", "0"]
TINY = ["run", "--workload", "dcgan", "--size", "tiny", "--backend", "null", *QUICK]
# The console script: its sys.path starts at its own folder, never at the current
# directory, so whatever the folder holds can only reach a worker that puts it there.
ENTRY_POINT = str(Path(sys.executable).with_name("aigcbench"))


# --- parsing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("8GiB", 8 * GiB), ("512MiB", 512 * MiB), ("1.5GB", 1_500_000_000), ("2G", 2 * GiB), ("2g", 2 * GiB),
    ("4294967296", 4 * GiB), (4 * GiB, 4 * GiB), ("64MiB", 64 * MiB), (" 1 GiB ", GiB), ("1.5GiB", 3 * GiB // 2),
    ("100MB", 100_000_000), ("65536K", 64 * MiB), ("102400KiB", 100 * MiB), ("1T", 1024 * GiB), ("1tb", 10**12),
    (".5GiB", GiB // 2), ("2.GiB", 2 * GiB), ("3000000000B", 3_000_000_000),
])
def test_memory_sizes_parse_to_bytes(value: object, expected: int) -> None:
    assert parse_memory_limit(value, "--memory-limit") == expected


@pytest.mark.parametrize("value, message", [
    ("", "cannot read ''"), ("lots", "cannot read 'lots'"), ("8 PiB", "cannot read '8 PiB'"),
    ("1e9", "cannot read '1e9'"), ("inf", "cannot read 'inf'"), ("nan", "cannot read 'nan'"),
    ("8GiB\nrm -rf /", "cannot read '8GiB\\nrm -rf /'"), ("1 GB GB", "cannot read"), ("0x10GiB", "cannot read"),
    ("-1GiB", "'-1GiB' must be positive"), ("0", "below the minimum 64 MiB"), (0, "below the minimum"),
    (-5, "below the minimum"), ("10MiB", "'10MiB' is below the minimum"), ("1.5", "fraction of a byte"),
    ("9" * 400 + ".0GiB", "not a finite size"), ("16EiB", "cannot read"), (2**63, "above the maximum"),
    ("9999999TiB", "above the maximum"), (True, "expected a memory size"), (1.5e9, "expected a memory size"),
    (None, "expected a memory size"), ({"gib": 8}, "expected a memory size"), (["8GiB"], "expected a memory size"),
])
def test_bad_memory_sizes_are_refused_naming_the_option(value: object, message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_memory_limit(value, "--memory-limit")
    text = str(caught.value)
    assert text.startswith("--memory-limit: ") and message in text
    assert "\n" not in text  # the value is quoted with repr: one line whatever it holds


@pytest.mark.parametrize("n, text", [
    (8 * GiB, "8 GiB"), (3 * GiB // 2, "1.5 GiB"), (512 * MiB, "512 MiB"), (100, "100 B"), (1_500_000_000, "1.4 GiB"),
    (1024 * GiB, "1 TiB"), (1023, "1023 B"), (0, "0 B"),
])
def test_format_bytes_uses_the_largest_binary_unit(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize("line, hit", [
    ("MemoryError", True),
    ("RuntimeError: [enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: ...", True),
    ("terminate called after throwing an instance of 'std::bad_alloc'", True),
    ("ImportError: libtorch_cpu.so: failed to map segment from shared object", True),
    ("libgomp: Thread creation failed: Resource temporarily unavailable", True),
    ("RuntimeError: can't start new thread", True),
    ("RuntimeError: null backend: injected exception at call 3", False),
    ("worker crashed: SIGSEGV (segmentation fault) during 'first call'", False),
    ("ValueError: shapes do not match", False),
])
def test_out_of_memory_is_told_from_other_failures(line: str, hit: bool) -> None:
    assert resources.out_of_memory(["Traceback (most recent call last):", line]) is hit


# --- run --memory-limit: refused in the parent --------------------------------------------------------

def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@pytest.mark.parametrize("args, message", [
    (["--memory-limit", "lots"], "--memory-limit: cannot read 'lots'"),
    (["--memory-limit", "0"], "below the minimum 64 MiB"),
    (["--memory-limit", "-1GiB"], "must be positive"),
    (["--memory-limit", "inf"], "cannot read 'inf'"),
    (["--memory-limit", "nan"], "cannot read 'nan'"),
    (["--memory-limit", "1.5"], "fraction of a byte"),
    (["--memory-limit", "8 PiB"], "cannot read '8 PiB'"),
    (["--memory-limit", "8GiB\nGiB"], "cannot read '8GiB\\nGiB'"),
    (["--memory-limit", "20EiB"], "cannot read"),
    (["--memory-limit", str(2**63)], "above the maximum"),
    (["--memory-limit", ""], "cannot read ''"),
    (["--memory-limit", "8GiB", "--in-process"], "cannot be combined with --in-process"),
    (["--memory-limit", "8GiB", "--device", "cuda"], "CUDA cannot initialise"),
    (["--memory-limit", "8GiB", "--device", "cuda:1"], "CUDA cannot initialise"),
])
def test_bad_memory_limits_are_refused_before_measuring(tmp_path: Path, args: list[str], message: str) -> None:
    store, target = tmp_path / "results.db", tmp_path / "record.json"
    Store.open(str(store)).close()
    target.write_text("untouched")
    before = digest(store), digest(target)
    result = cli(*TINY, *args, "--store", str(store), "--json", str(target))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert (digest(store), digest(target)) == before, "a refusal changed a file"


# --- run --memory-limit: applied to the worker ----------------------------------------------------

def test_a_cell_that_needs_more_than_its_limit_fails_saying_so(tmp_path: Path) -> None:
    # dcgan large at batch 64 allocates ~128 MiB tensors on top of torch's own
    # ~750 MiB of address space: past 1 GiB while it builds, on any machine.
    store, target = tmp_path / "results.db", tmp_path / "record.json"
    result = cli("run", "--workload", "dcgan", "--size", "large", "--backend", "pytorch", "--batch-size", "64", *QUICK,
                 "--memory-limit", "1GiB", "--store", str(store), "--json", str(target))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    record = json.loads(target.read_text())
    assert record["status"] == "failed"
    assert record["reason"] == "exceeded memory limit 1 GiB"
    applied = record["metadata"]["memory_limit"]
    assert applied["bytes"] == GiB and applied["mechanism"] == "rlimit_as"
    assert resources.out_of_memory([applied["error"]])  # the worker's own words are kept
    with Store.open(str(store)) as opened:
        [stored] = list(opened.records())
    assert stored.status == "failed" and stored.reason == "exceeded memory limit 1 GiB"


def test_a_cell_within_a_generous_limit_runs_and_says_which_limit_applied(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    result = cli("run", "--workload", "dcgan", "--size", "tiny", "--backend", "pytorch", *QUICK,
                 "--memory-limit", "8GiB", "--no-store", "--json", str(target))
    assert result.returncode == 0, result.stderr
    record = json.loads(target.read_text())
    assert record["status"] == "ok"
    assert record["metadata"]["memory_limit"] == {"bytes": 8 * GiB, "mechanism": "rlimit_as"}
    assert record["metrics"]["fidelity"]["passed"] is True


class Quiet:
    def stage(self, text: str) -> None:
        pass

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None:
        pass


def test_a_failure_that_is_not_about_memory_keeps_its_own_reason_under_a_limit() -> None:
    config = RunConfig.from_options({
        "workload": "dcgan", "backend": "null", "size": "tiny", "duration": 0.05, "min_iterations": 1,
        "warmup": 0, "warmup_duration": 0, "options": {"fault": "exception", "fault_at": "2"},
    })
    record = run_isolated(config, timeout_s=120, observer=Quiet(), memory_limit_bytes=8 * GiB)
    assert record.status == "failed"
    assert record.reason == "RuntimeError: null backend: injected exception at call 2"
    assert record.metadata["memory_limit"] == {"bytes": 8 * GiB, "mechanism": "rlimit_as"}


def test_without_a_limit_the_record_says_nothing_about_one() -> None:
    config = RunConfig.from_options({
        "workload": "dcgan", "backend": "null", "size": "tiny", "duration": 0.05, "min_iterations": 1,
        "warmup": 0, "warmup_duration": 0,
    })
    record = run_isolated(config, timeout_s=120, observer=Quiet())
    assert record.status == "ok" and "memory_limit" not in record.metadata


# --- the worker imports only our code ------------------------------------------------------------

# Modules the worker imports after start-up: the standard library's, the
# libraries', and our own package name (the editable install's finder comes
# after the path-based one, so a folder named like it would win).
SHADOWED = ("inspect.py", "json.py", "typing.py", "dataclasses.py", "numpy.py", "torch.py", "scipy.py",
            "sitecustomize.py", "usercustomize.py", "aigcbench/__init__.py")


def _trap(folder: Path, marker: Path) -> None:
    for name in SHADOWED:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n")


def test_python_dash_m_would_import_the_folders_files(tmp_path: Path) -> None:
    """The trap works: started the old way, a worker runs the folder's json.py (so the next test can fail)."""
    folder, marker = tmp_path / "here", tmp_path / "marker"
    folder.mkdir()
    _trap(folder, marker)
    subprocess.run([sys.executable, "-m", "aigcbench.bench.worker"], cwd=folder, capture_output=True, timeout=120)
    assert marker.exists()


def test_workers_never_import_from_the_current_directory(tmp_path: Path) -> None:
    folder, marker = tmp_path / "here", tmp_path / "marker"
    folder.mkdir()
    _trap(folder, marker)
    target = tmp_path / "record.json"
    result = subprocess.run([ENTRY_POINT, *TINY, "--no-store", "--json", str(target)],
                            cwd=folder, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), f"imported from the current directory: {marker.read_text()!r}"
    assert json.loads(target.read_text())["status"] == "ok"


def test_the_worker_command_line_never_uses_dash_m(tmp_path: Path) -> None:
    argv = worker_argv(sys.executable, tmp_path / "c.json", tmp_path / "r.json", 2 * GiB)
    assert "-m" not in argv and argv[-1] == f"--memory-limit-bytes={2 * GiB}"


# --- sweeps: memory_limit per cell ---------------------------------------------------------------

SWEEP = """\
[sweep]
timeout = 120
memory_limit = "1GiB"
[[cell]]
workload = "dcgan"
backend = "pytorch"
size = "large"
batch_size = 64
duration = 0.05
min_iterations = 1
warmup = 0
warmup_duration = 0
"""


def test_a_sweep_cell_over_its_memory_limit_is_stored_as_failed_saying_so(tmp_path: Path) -> None:
    path, store = tmp_path / "s.toml", tmp_path / "results.db"
    path.write_text(SWEEP)
    result = cli("sweep", str(path), "--store", str(store))
    assert result.returncode == 1, result.stderr
    with Store.open(str(store)) as opened:
        [stored] = list(opened.records())
    assert stored.status == "failed" and stored.reason == "exceeded memory limit 1 GiB"
    assert stored.metadata["memory_limit"]["mechanism"] == "rlimit_as"


def test_a_sweep_refuses_a_memory_limit_on_a_cuda_cell_before_running_anything(tmp_path: Path) -> None:
    from aigcbench.bench import sweep
    from aigcbench.bench.sweep_file import load_sweep

    path = tmp_path / "s.toml"
    path.write_text(SWEEP.replace('backend = "pytorch"', 'backend = "null"\ndevice = "cuda"'))
    # The limit is the CLI's own check, before the runtime checks that would find no GPU here.
    with pytest.raises(UserError, match=r"^cell #1 .*memory_limit: .*CUDA cannot initialise"):
        sweep.unavailable_cells(load_sweep(path))
