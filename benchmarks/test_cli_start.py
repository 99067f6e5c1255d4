"""What a user waits for at the prompt: `aigcbench run` as a whole command, and `aigcbench --help`.

Issue 11: on 2 cores a tiny `null` run should take ≤ 3 s from the shell's
point of view, and `--help` ≤ 0.3 s. Both are timed here as subprocesses of
the venv's `aigcbench` script, a few times each, next to references timed in
this same run with the same interpreter: a bare `python -c pass` (the floor of
any command) and a bare `import torch` (what a command that needs torch pays
at least once). This machine varies 10–30 % between runs, so compare within
the run only; nothing here asserts a time.

Where the record carries `metadata.wall_s` (bench/walltime.py), its parts
are printed under the run figure, largest first, with their sum next to the
measured wall: what the record does not cover (the store append, the table,
the exit) is the difference.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

AIGCBENCH = Path(sys.executable).parent / "aigcbench"
RUN = ["run", "--workload", "dcgan", "--backend", "null", "--size", "tiny", "--duration", "0.2"]
RUN_TIMES, HELP_TIMES, PASS_TIMES, TORCH_TIMES = 3, 5, 5, 3
RUN_TARGET_S, HELP_TARGET_S = 3.0, 0.3  # issue 11


def _wall(argv: list[str], cwd: Path) -> float:
    """Seconds `argv` took, start to exit; it must exit 0."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return seconds


def _record(path: Path) -> dict:
    record = json.loads(path.read_text())
    assert record["status"] == "ok", record.get("reason")
    return record


def _runs(tmp_path: Path) -> tuple[list[float], list[dict]]:
    """The whole `aigcbench run` command's walls, and the record each wrote."""
    walls, records = [], []
    for i in range(RUN_TIMES):
        out = tmp_path / f"r{i}.json"
        walls.append(_wall([str(AIGCBENCH), *RUN, "--store", str(tmp_path / "s.db"), "--json", str(out)], tmp_path))
        records.append(_record(out))
    return walls, records


def _figure(what: str, walls: list[float], target: str, refs: str) -> str:
    return (
        f"  {what:<34} {statistics.median(walls):6.2f} s median of {len(walls)}, min {min(walls):.2f} s"
        f"  (target {target}; {refs})"
    )


def _wall_parts(walls: list[float], records: list[dict]) -> list[str]:
    """The median run's `metadata.wall_s`, largest part first; nothing if the record has none."""
    i = sorted(range(len(walls)), key=walls.__getitem__)[len(walls) // 2]
    parts = records[i].get("metadata", {}).get("wall_s")
    if not isinstance(parts, dict) or not parts:
        return []
    lines = [
        f"    its metadata.wall_s (the median run): parts sum {sum(parts.values()):.2f} s"
        f" of {walls[i]:.2f} s measured (the rest is outside the marks: the store append, the table, the exit)"
    ]
    lines.extend(f"      {name:<20} {seconds:6.3f} s" for name, seconds in sorted(parts.items(), key=lambda p: -p[1]))
    return lines


@pytest.mark.slow
def test_run_command_and_help_next_to_bare_python_and_import_torch(tmp_path: Path, startup_lines: list[str]) -> None:
    bare_pass = [_wall([sys.executable, "-c", "pass"], tmp_path) for _ in range(PASS_TIMES)]
    bare_torch = [_wall([sys.executable, "-c", "import torch"], tmp_path) for _ in range(TORCH_TIMES)]
    helps = [_wall([str(AIGCBENCH), "--help"], tmp_path) for _ in range(HELP_TIMES)]
    walls, records = _runs(tmp_path)
    refs = (
        f"python -c pass {statistics.median(bare_pass):.2f} s, "
        f"import torch {statistics.median(bare_torch):.2f} s, medians of {PASS_TIMES} and {TORCH_TIMES}"
    )
    startup_lines.append(_figure("`aigcbench run` (whole command)", walls, f"≤ {RUN_TARGET_S:g} s", refs))
    startup_lines.extend(_wall_parts(walls, records))
    startup_lines.append(_figure("`aigcbench --help`", helps, f"≤ {HELP_TARGET_S:g} s", refs))
