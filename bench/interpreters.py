"""Which Python interpreter a cell's worker runs in.

A cell normally runs in the interpreter that runs aigcbench. Two things move
it elsewhere:

* the user names one: `aigcbench run --python PATH`, or `python = "PATH"` on
  a sweep cell (or as a matrix dimension) — a runtime-upgrade A/B runs the
  same cells in two virtual environments side by side;
* the backend declares a dedicated environment (`Backend.environment`, e.g.
  `tensorflow`, whose converter pins versions of onnx, onnxruntime and numpy
  that clash with ours): its cells run in `$AIGCBENCH_ENVS/NAME/bin/python`
  when that environment has been made (`make env-NAME`).

The worker is aigcbench's own code, so the other interpreter must have this
same aigcbench installed (`pip install -e REPO` there, or the same wheel).
That is checked in the parent, before anything is measured, without importing
anything heavy there: a missing interpreter, one without aigcbench, or one
with another aigcbench version is bad input (exit 2). The record's
`environment` then describes that interpreter (its packages, its Python),
because the worker fingerprints where it runs.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from .errors import UserError

ENVS_VAR = "AIGCBENCH_ENVS"
PYTHON_HELP = ("Run the worker in this Python interpreter (another virtual environment's bin/python, with this "
               "aigcbench installed there); the record's environment is that interpreter's [default: this one, or "
               "the backend's own environment].")
# Printing two metadata strings takes milliseconds; a broken interpreter that hangs must not hang the CLI.
PROBE_TIMEOUT_S = 60.0

# Run in the other interpreter: where aigcbench is and which version, without importing torch or any of ours.
_PROBE = (
    "import json, sys, importlib.metadata as m, importlib.util as u\n"
    "try:\n    v = m.version('aigcbench')\nexcept m.PackageNotFoundError:\n    v = None\n"
    "s = u.find_spec('aigcbench.bench.worker') if v else None\n"
    "print(json.dumps({'version': v, 'worker': bool(s), 'python': '%d.%d.%d' % sys.version_info[:3]}))\n"
)


def envs_dir() -> Path:
    """Where dedicated environments live: `$AIGCBENCH_ENVS`, else `$XDG_DATA_HOME/aigcbench/envs`."""
    explicit = os.environ.get(ENVS_VAR)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aigcbench" / "envs"


def environment_python(name: str) -> Path:
    """The interpreter of the dedicated environment `name` (it may not exist yet)."""
    return envs_dir() / name / "bin" / "python"


def own_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("aigcbench")
    except metadata.PackageNotFoundError:
        return None


def check_python(value: str, flag: str, base: Path | None = None) -> str:
    """`value` as an absolute interpreter path that can run this aigcbench's worker; else a `UserError`.

    A relative path is taken from `base` (a sweep file's folder) or the
    current directory. Symlinks are kept as written: a virtual environment's
    `bin/python` links to the base interpreter, and resolving it would lose
    the environment.
    """
    path = Path(value).expanduser()
    if not str(value).strip():
        raise UserError(f"{flag} must name a Python interpreter, got {value!r}", key="python")
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    path = Path(os.path.abspath(path))
    if not path.exists():
        raise UserError(f"{flag}: no interpreter at {path}", key="python")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise UserError(f"{flag}: {path} is not an executable file", key="python")
    _check_has_aigcbench(str(path), flag)
    return str(path)


@functools.lru_cache(maxsize=None)
def _probe(python: str) -> dict | str:
    """What the interpreter says about its aigcbench, or why it said nothing usable (cached per path)."""
    try:
        done = subprocess.run(
            [python, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"it did not answer within {PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"it does not start: {exc.strerror or exc}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        said = (done.stderr.strip().splitlines() or lines or ["no output"])[-1].strip()
        return f"it is not a Python interpreter this can use (exit {done.returncode}: {said})"
    try:
        return json.loads(lines[-1])
    except ValueError:
        return f"it is not a Python interpreter this can use (it printed {lines[-1][:80]!r})"


def _check_has_aigcbench(python: str, flag: str) -> None:
    probe = _probe(python)
    if isinstance(probe, str):
        raise UserError(f"{flag} {python}: {probe}", key="python")
    ours = own_version()
    how = f"install this aigcbench there: {_install_hint(python, ours)}"
    if probe.get("version") is None or not probe.get("worker"):
        raise UserError(f"{flag} {python} (Python {probe.get('python')}) has no aigcbench; {how}", key="python")
    if ours is not None and probe["version"] != ours:
        raise UserError(f"{flag} {python} has aigcbench {probe['version']}, this is {ours}: the worker must be "
                        f"the same version; {how}", key="python")


def _install_hint(python: str, version: str | None) -> str:
    """The command that puts this aigcbench into `python`'s environment: from this checkout, or this release."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists():
        return f"{python} -m pip install -e {checkout}"
    return f"{python} -m pip install 'aigcbench=={version}'" if version else f"{python} -m pip install aigcbench"


def interpreter_for(backend_environment: str | None, explicit: str | None) -> str:
    """The interpreter a cell runs in: the one named, else its backend's dedicated one if made, else this one.

    `explicit` has been checked by `check_python`. A backend's environment that
    has not been made leaves the cell here, where the backend then says it is
    unavailable and how to make the environment (exit 3).
    """
    if explicit is not None:
        return explicit
    if backend_environment is not None:
        candidate = environment_python(backend_environment)
        if candidate.exists():
            return check_python(str(candidate), f"the {backend_environment} environment")
    return sys.executable
