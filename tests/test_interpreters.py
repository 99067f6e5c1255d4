"""Cells in their own Python environment: `run --python PATH`, `python = "PATH"` on sweep cells.

The other interpreters here are real virtual environments made in the test:
one without aigcbench, one with another aigcbench version, and an overlay that
sees this environment's packages through a `.pth` file and holds one package
of its own (a distribution only it has), so a record can show whose packages
it lists. The runs go through the real entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from aigcbench.bench.errors import UserError
from aigcbench.bench.interpreters import check_python, environment_python, interpreter_for, own_version
from aigcbench.bench.store import Store
from aigcbench.bench.sweep import previous_record, stored_records
from aigcbench.bench.sweep_file import load_sweep

AIGCBENCH = [sys.executable, "-c", "import sys; from aigcbench.bench.cli import main; sys.exit(main())"]
# A distribution the overlay has and this environment does not: `environment.packages` names its version.
MARKER, MARKER_VERSION = "onnx2tf", "0.0.1+overlay"


def _venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    return path / "bin" / "python"


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _dist_info(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _overlay(path: Path) -> Path:
    """Another environment with this aigcbench: this one's packages through a .pth, plus a marker of its own."""
    python = _venv(path)
    site = _site_packages(python)
    # addsitedir, not a bare path: this environment's own .pth files (the editable aigcbench's) must run too.
    (site / "parent.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    _dist_info(site, MARKER, MARKER_VERSION)
    return python


@pytest.fixture(scope="module")
def overlay(tmp_path_factory) -> Path:
    return _overlay(tmp_path_factory.mktemp("overlay") / "env")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(AIGCBENCH + list(args), capture_output=True, text=True, timeout=300, cwd=cwd)


def test_a_missing_or_unusable_interpreter_is_refused_with_the_reason(tmp_path):
    with pytest.raises(UserError, match="no interpreter at") as missing:
        check_python(str(tmp_path / "nope" / "python"), "--python")
    assert missing.value.key == "python"
    with pytest.raises(UserError, match="is not an executable file"):
        check_python(str(tmp_path), "--python")
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\necho not python; exit 3\n")
    script.chmod(0o755)
    with pytest.raises(UserError, match=r"not a Python interpreter this can use \(exit 3: not python\)"):
        check_python(str(script), "--python")


def test_an_environment_without_aigcbench_or_with_another_version_is_refused(tmp_path):
    bare = _venv(tmp_path / "bare")
    with pytest.raises(UserError, match=r"has no aigcbench; install this aigcbench there: .* -m pip install"):
        check_python(str(bare), "--python")
    other = _venv(tmp_path / "other")
    site = _site_packages(other)
    for package in ("aigcbench", "aigcbench/bench"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    (site / "aigcbench" / "bench" / "worker.py").write_text("")
    _dist_info(site, "aigcbench", "0.0.1")
    with pytest.raises(UserError, match=f"has aigcbench 0.0.1, this is {own_version()}"):
        check_python(str(other), "--python")


def test_a_relative_path_is_taken_from_the_base_folder_and_symlinks_are_kept(overlay):
    env = overlay.parent.parent
    assert check_python("env/bin/python", "python", base=env.parent) == str(overlay)
    assert Path(check_python(str(overlay), "--python")).is_symlink()  # not resolved to the base interpreter


def test_a_backends_environment_is_used_only_once_made(tmp_path, monkeypatch, overlay):
    monkeypatch.setenv("AIGCBENCH_ENVS", str(tmp_path))
    assert interpreter_for("tensorflow", None) == sys.executable  # not made: the backend says it is unavailable
    assert interpreter_for(None, str(overlay)) == str(overlay)
    _overlay(tmp_path / "tensorflow")
    assert environment_python("tensorflow") == tmp_path / "tensorflow" / "bin" / "python"
    assert interpreter_for("tensorflow", None) == str(environment_python("tensorflow"))
    assert interpreter_for("tensorflow", str(overlay)) == str(overlay)  # the one named wins


def test_run_with_python_measures_in_that_environment_and_records_its_packages(tmp_path, overlay):
    out = cli("run", "-w", "dcgan", "-b", "pytorch", "--size", "tiny", "--duration", "0.2", "--min-iterations",
              "3", "--warmup", "1", "--warmup-duration", "0", "--python", str(overlay), "--json", "r.json",
              "--store", "s.db", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["status"] == "ok"
    assert record["environment"]["executable"] == str(overlay)
    assert record["environment"]["packages"][MARKER] == MARKER_VERSION  # the overlay's, not this environment's
    assert record["metrics"]["fidelity"]["passed"] is True


@pytest.mark.parametrize(("python", "said"), [
    ("missing/bin/python", "no interpreter at"),
    ("bare/bin/python", "has no aigcbench"),
])
def test_run_and_sweep_refuse_a_bad_interpreter_before_measuring(tmp_path, python, said):
    _venv(tmp_path / "bare")
    out = cli("run", "-w", "dcgan", "-b", "pytorch", "--size", "tiny", "--python", python, "--store", "s.db",
              cwd=tmp_path)
    assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    sweep = tmp_path / "bad.toml"
    sweep.write_text(f'[defaults]\nsize = "tiny"\n[matrix]\nworkload = ["dcgan"]\nbackend = ["pytorch"]\n'
                     f'python = ["{python}"]\n')
    out = cli("sweep", str(sweep), "--store", "s.db", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"bad.toml:6: matrix.python: " in out.stderr and said in out.stderr
    assert not (tmp_path / "s.db").exists()


def test_with_python_and_in_process_is_refused(tmp_path, overlay):
    out = cli("run", "-w", "dcgan", "-b", "pytorch", "--python", str(overlay), "--in-process", cwd=tmp_path)
    assert out.returncode == 2 and "cannot be combined with --in-process" in out.stderr


def test_a_sweep_runs_the_same_cell_in_two_interpreters_and_resumes_each(tmp_path, overlay):
    sweep = tmp_path / "ab.toml"
    sweep.write_text(
        '[defaults]\nsize = "tiny"\nduration = 0.2\nmin_iterations = 3\nwarmup = 1\nwarmup_duration = 0\n'
        f'[matrix]\nworkload = ["dcgan"]\nbackend = ["pytorch"]\npython = ["{sys.executable}", "{overlay}"]\n'
    )
    out = cli("sweep", str(sweep), "--store", "s.db", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    with Store.open(str(tmp_path / "s.db")) as store:
        records = store.records()
    assert [r.environment["executable"] for r in records] == [sys.executable, str(overlay)]
    assert records[0].config == records[1].config  # one cell key: compare matches the two sides
    assert [r.environment["packages"].get(MARKER) for r in records] == [None, MARKER_VERSION]
    # Resume: each cell finds its own side's record, by interpreter (what `sweep` does before measuring).
    with Store.open(str(tmp_path / "s.db")) as store:
        stored = stored_records(store, records[0].environment["hardware_key"])
    cells = load_sweep(sweep).cells
    assert [previous_record(stored, cell).run_id for cell in cells] == [r.run_id for r in records]


def test_cells_differing_only_in_interpreter_are_two_cells_and_a_relative_path_is_the_files(tmp_path, overlay):
    sweep = tmp_path / "ab.toml"
    relative = os.path.relpath(overlay, tmp_path)  # from the sweep file's folder, not the current directory
    head = '[defaults]\nsize = "tiny"\n[matrix]\nworkload = ["dcgan"]\nbackend = ["pytorch"]\n'
    sweep.write_text(head + f'python = ["{overlay}", "{relative}"]\n')
    with pytest.raises(UserError, match=r"is identical to matrix #1 \(.*\): same configuration, timeout, memory "
                                        "limit, interpreter and hardware"):
        load_sweep(sweep)
    sweep.write_text(head + f'python = ["{relative}", "{sys.executable}"]\n')
    assert [c.python for c in load_sweep(sweep).cells] == [str(overlay), sys.executable]
