"""Bad sweep files are refused whole, in one line, before anything is built, stored or measured.

One parametrized test per class of bad input (unknown names in every place,
matrices over the cell cap, non-finite numbers, bad memory limits), each case
through `aigcbench sweep FILE --store DB`: exit 2, one stderr line naming the
file and line, no traceback, no store created, the file untouched. Then a
hypothesis fuzz of the parser: random documents from the format's grammar
load into a plan or raise `UserError`, nothing else.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aigcbench.backends import registry as backends
from aigcbench.bench import config as config_module
from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.sweep_file import CELL_KEYS, SWEEP_KEYS, TABLES, SweepPlan, load_sweep
from aigcbench.workloads import registry as workloads

from .test_cli import cli

# Lines 1-7; the cases below append from line 8.
BASE = """\
[sweep]
timeout = 60
[defaults]
size = "tiny"
[matrix]
workload = ["dcgan", "ddpm"]
backend = ["pytorch", "null"]
"""


def in_sweep(line: str) -> str:
    """BASE with `line` in [sweep] instead of its timeout (line 2)."""
    return BASE.replace("timeout = 60", line)


def in_defaults(line: str) -> str:
    """BASE with `line` added to [defaults] (line 5; [matrix] moves down a line)."""
    return BASE.replace('size = "tiny"', 'size = "tiny"\n' + line)


def with_cell(*lines: str) -> str:
    """BASE and a [[cell]] of vae on null (lines 8-10) with `lines` from line 11."""
    return BASE + '[[cell]]\nworkload = "vae"\nbackend = "null"\n' + "".join(line + "\n" for line in lines)


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def refused(tmp_path: Path, text: str, *extra: str) -> str:
    """Run `aigcbench sweep` on `text`; assert the refusal contract; return the one stderr line."""
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    store = tmp_path / "x.db"
    before = digest(path)
    result = CliRunner().invoke(app, ["sweep", str(path), "--store", str(store), *extra], catch_exceptions=False)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert not store.exists() and digest(path) == before
    assert lines[0].startswith(f"aigcbench: error: {path}:"), lines[0]
    return lines[0]


# --- Unknown names, wherever they are written -----------------------------------------------------

def excluding(line: str, base: str = BASE) -> str:
    """`base` and an [[exclude]] (line 8 after BASE) holding `line` (line 9)."""
    return base + "[[exclude]]\n" + line + "\n"


def overriding(where: str, changes: str = "steps = 2", base: str = BASE) -> str:
    """`base` and an [[override]] (line 8 after BASE): `where` at line 9, `set` at line 10, both inline."""
    return base + f"[[override]]\nwhere = {{ {where} }}\nset = {{ {changes} }}\n"


UNKNOWN_NAMES = {
    "matrix backend": (BASE.replace('"null"]', '"tensorrtt"]'), ":7: matrix.backend: unknown backend 'tensorrtt'"),
    "matrix workload": (BASE.replace('"ddpm"]', '"ddmp"]'), ":6: matrix.workload: unknown workload 'ddmp'"),
    "defaults scenario": (in_defaults('scenario = "offline"'), ":5: defaults.scenario: --scenario 'offline'"),
    "cell precision": (with_cell('precision = "fp33"'), ":11: cell #1.precision: --precision 'fp33'"),
    "cell backend": (with_cell().replace('"null"\n', '"onnxrt"\n'), ":10: cell #1.backend: unknown backend 'onnxrt'"),
    "cell size": (with_cell('size = "small"'), ":11: cell #1.size"),
    "cell scheduler": (with_cell('scheduler = "eulr"').replace('"vae"', '"ddpm"'),
                       ":11: cell #1.scheduler: unknown scheduler 'eulr' for ddpm"),
    "set backend": (overriding('workload = "ddpm"', 'backend = "openvnio"'),
                    ":10:9: override #1.set.backend: unknown backend 'openvnio'"),
    # The bug this class is about: one bad value in an any-of list used to be accepted silently.
    "exclude backend in a list": (excluding('backend = ["null", "tensorrtt"]'),
                                  ":9: exclude #1.backend: unknown backend 'tensorrtt'; choose from: "),
    "exclude backend did you mean": (excluding('backend = "pytorh"'), "(did you mean 'pytorch'?)"),
    "exclude workload": (excluding('workload = ["ddpm", "dgcan"]'), ":9: exclude #1.workload: unknown workload"),
    "exclude size": (excluding('size = "huge"'), ":9: exclude #1.size: unknown size 'huge'"),
    "exclude precision": (excluding('precision = ["fp16", "int4"]'), "unknown precision 'int4'"),
    "exclude scenario": (excluding('scenario = "serving"'), "exclude #1.scenario: unknown scenario 'serving'"),
    "exclude scheduler": (excluding('scheduler = "nope"'), "exclude #1.scheduler: unknown scheduler 'nope'"),
    "exclude name not a string": (excluding("backend = 3"), "exclude #1.backend: must be a string, got 3"),
    "where backend": (overriding('backend = ["null", "nul"]'), ":9:11: override #1.where.backend: unknown backend"),
    "where workload": (overriding('workload = "VAE"'), ":9:11: override #1.where.workload: unknown workload 'VAE'"),
    "where dotted keys": (BASE + '[[override]]\nwhere.precision = "fp8"\nset.steps = 2\n', "unknown precision 'fp8'"),
    # Values no registry holds are still checked: each value of an any-of list must match some cell.
    "exclude option table no cell has": (
        excluding('options = [{ fault = "none" }, { fualt = "none" }]', in_defaults('options = { fault = "none" }')),
        "exclude #1.options: {'fualt': 'none'} matches no matrix cell",
    ),
    "exclude device no cell has": (excluding('device = ["cpu", "cdua"]', in_defaults('device = "cpu"')),
                                   "'cdua' matches no matrix cell"),
    "where batch no cell has": (
        overriding("batch_size = [2, 3]", base=BASE.replace('["pytorch", "null"]', '["null"]\nbatch_size = [1, 2]')),
        "override #1.where.batch_size: 3 matches no cell",
    ),
}


@pytest.mark.parametrize(("text", "expected"), UNKNOWN_NAMES.values(), ids=UNKNOWN_NAMES.keys())
def test_unknown_names_are_refused_where_they_are_written(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


# --- The cell cap, from the matrix's sizes, before any cell is built ---------------------------------

_TEN_KEYS = ("seed", "batch_size", "steps", "duration", "warmup", "min_iterations", "max_iterations",
             "max_duration", "warmup_duration", "target_rel_iqr")
HUGE = '[defaults]\nworkload = "dcgan"\nbackend = "null"\n[matrix]\n' + "".join(
    f"{key} = {list(range(1, 11))}\n" for key in _TEN_KEYS
)
OVER_CAP = {
    "10^10 cells": (HUGE, (), "10,000,000,000 cells (" + " × ".join(["10"] * 10) + " matrix cells)"),
    "one cell over the default": (
        '[defaults]\nworkload = "dcgan"\nbackend = "null"\n[matrix]\nseed = ' + str(list(range(10_001))) + "\n",
        (), ":4: 10,001 cells (10001 matrix cells) exceed the cap of 10,000; raise it with --max-cells N",
    ),
    "a lowered cap": (BASE, ("--max-cells", "3"), ":5: 4 cells (2 × 2 matrix cells) exceed the cap of 3"),
    "explicit cells count too": (
        BASE + '[[cell]]\nworkload = "vae"\nbackend = "null"\n', ("--max-cells", "4"),
        "5 cells (2 × 2 matrix cells + 1 [[cell]] tables) exceed the cap of 4",
    ),
    "only explicit cells": ('[[cell]]\nworkload = "vae"\nbackend = "null"\n' * 3, ("--max-cells", "2"),
                            ": 3 cells (3 [[cell]] tables) exceed the cap of 2"),
    "a zero cap": (BASE, ("--max-cells", "0"), "--max-cells must be an integer ≥ 1, got 0"),
    "a negative cap": (BASE, ("--max-cells", "-5"), "--max-cells must be an integer ≥ 1, got -5"),
}


@pytest.mark.parametrize(("text", "extra", "expected"), OVER_CAP.values(), ids=OVER_CAP.keys())
def test_a_sweep_over_the_cell_cap_is_refused_with_its_count(
    tmp_path: Path, text: str, extra: tuple[str, ...], expected: str
) -> None:
    if expected.startswith("--max-cells"):  # refused before the file is read: no file position
        path = tmp_path / "s.toml"
        path.write_text(text)
        result = CliRunner().invoke(app, ["sweep", str(path), "--store", str(tmp_path / "x.db"), *extra])
        assert result.exit_code == 2 and result.stderr.strip() == f"aigcbench: error: {expected}"
        assert not (tmp_path / "x.db").exists()
        return
    assert expected in refused(tmp_path, text, *extra)


def test_the_cap_is_checked_before_any_cell_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a timing: building even one cell of the 10^10 would fail the test.
    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cell was built")

    monkeypatch.setattr(config_module.RunConfig, "from_options", never)
    path = tmp_path / "huge.toml"
    path.write_text(HUGE)
    with pytest.raises(UserError, match="10,000,000,000 cells"):
        load_sweep(path)


def test_raising_the_cap_admits_the_sweep(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE)
    with pytest.raises(UserError, match="exceed the cap of 3"):
        load_sweep(path, max_cells=3)
    assert len(load_sweep(path, max_cells=4).cells) == 4


# --- Numbers TOML allows and no option does -------------------------------------------------------

NON_FINITE = {
    "sweep timeout inf": (in_sweep("timeout = inf"), ":2: sweep.timeout: numbers must be finite, got inf"),
    "sweep timeout nan": (in_sweep("timeout = nan"), ":2: sweep.timeout: numbers must be finite, got nan"),
    "defaults duration": (in_defaults("duration = inf"), ":5: defaults.duration: numbers must be finite, got inf"),
    "defaults negative inf": (in_defaults("warmup_duration = -inf"), ":5: defaults.warmup_duration: numbers must be"),
    "matrix value": (BASE + "max_duration = [10, inf]\n", ":8: matrix.max_duration: numbers must be finite"),
    "matrix timeout": (BASE + "timeout = [nan]\n", ":8: matrix.timeout: numbers must be finite, got nan"),
    "cell rate": (with_cell('scenario = "server"', "rate = +inf"), ":12: cell #1.rate: numbers must be finite"),
    "cell slo": (with_cell('scenario = "server"', "rate = 5", "slo_p99 = nan"), ":13: cell #1.slo_p99: numbers must"),
    "set max_wait": (overriding('workload = "ddpm"', "max_wait = inf"), ":10:9: override #1.set.max_wait: numbers"),
    "set timeout": (overriding('workload = "ddpm"', "timeout = -nan"), ":10:9: override #1.set.timeout: numbers"),
    "where value": (overriding("target_rel_iqr = nan"), ":9:11: override #1.where.target_rel_iqr: numbers must be"),
    "exclude value": (excluding("duration = [1, inf]"), ":9: exclude #1.duration: numbers must be finite"),
    "label value": (in_defaults("labels = { x = inf }"), ":5:12: defaults.labels.x: numbers must be finite"),
    "option value": (with_cell("options = { fault_at = nan }"), ":11:13: cell #1.options.fault_at: numbers must be"),
    "memory limit": (in_sweep("memory_limit = inf"), ":2: sweep.memory_limit: numbers must be finite"),
    "integer beyond 64 bits": (in_sweep("timeout = 99999999999999999999999"), ":2: sweep.timeout: integer out of"),
    "huge seed": (BASE + "seed = [1, -99999999999999999999]\n", ":8: matrix.seed: integer out of TOML's 64-bit range"),
}


@pytest.mark.parametrize(("text", "expected"), NON_FINITE.values(), ids=NON_FINITE.keys())
def test_non_finite_numbers_are_refused_with_their_place(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


# --- memory_limit ---------------------------------------------------------------------------------

BAD_MEMORY = {
    "sweep words": (in_sweep('memory_limit = "lots"'), ":2: sweep.memory_limit: cannot read 'lots'"),
    "sweep negative": (in_sweep('memory_limit = "-1GiB"'), ":2: sweep.memory_limit: memory limit"),
    "sweep zero": (in_sweep("memory_limit = 0"), "below the minimum 64 MiB"),
    "too small": (in_sweep('memory_limit = "10MiB"'), "below the minimum"),
    "too large": (in_sweep("memory_limit = 9223372036854775807"), "above the maximum"),
    "fraction of a byte": (in_sweep('memory_limit = "1.5"'), "fraction of a byte"),
    "unknown unit": (in_sweep('memory_limit = "8 PiB"'), "cannot read '8 PiB'"),
    "a boolean": (in_defaults("memory_limit = true"), ":5: defaults.memory_limit: expected a memory size"),
    "a float": (in_defaults("memory_limit = 1.5e9"), "defaults.memory_limit: expected"),
    "a table": (in_defaults("memory_limit = { gib = 8 }"), "defaults.memory_limit"),
    "newline inside": (in_sweep('memory_limit = "8GiB\\nrm -rf"'), "cannot read '8GiB\\nrm -rf'"),
    "matrix": (BASE + 'memory_limit = ["1GiB", "lots"]\n', ":8: matrix.memory_limit: cannot read 'lots'"),
    "matrix list of lists": (BASE + 'memory_limit = [["1GiB"]]\n', ":8: matrix.memory_limit: expected a memory size"),
    "cell": (with_cell('memory_limit = "1 GB GB"'), ":11: cell #1.memory_limit: cannot read"),
    "set": (overriding('workload = "ddpm"', 'memory_limit = "1KiB"'),
            ":10:9: override #1.set.memory_limit: memory limit '1KiB' is below the minimum"),
}


@pytest.mark.parametrize(("text", "expected"), BAD_MEMORY.values(), ids=BAD_MEMORY.keys())
def test_bad_memory_limits_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


def test_memory_limits_reach_each_cell_and_are_part_of_its_identity(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    text = overriding('workload = "ddpm"', 'memory_limit = "512MiB"', base=in_sweep('memory_limit = "2GiB"'))
    path.write_text(text + '[[cell]]\nworkload = "dcgan"\nbackend = "null"\nsize = "tiny"\nmemory_limit = 1073741824\n')
    plan = load_sweep(path)
    limits = [(c.config.workload, c.config.backend, c.memory_limit_bytes) for c in plan.cells]
    assert limits == [
        ("dcgan", "pytorch", 2 * 1024**3), ("dcgan", "null", 2 * 1024**3),
        ("ddpm", "pytorch", 512 * 1024**2), ("ddpm", "null", 512 * 1024**2),
        ("dcgan", "null", 1024**3),  # the same config as matrix #2, with another limit: a cell of its own
    ]
    path.write_text(BASE + '[[cell]]\nworkload = "dcgan"\nbackend = "null"\nsize = "tiny"\n')
    with pytest.raises(UserError, match="identical to matrix #2"):
        load_sweep(path)


def test_without_a_memory_limit_cells_have_none(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE)
    assert {cell.memory_limit_bytes for cell in load_sweep(path).cells} == {None}


# --- The real entry point, one case of each class ---------------------------------------------------


@pytest.mark.parametrize("case", [
    UNKNOWN_NAMES["exclude backend in a list"], OVER_CAP["10^10 cells"][::2], NON_FINITE["defaults duration"],
    BAD_MEMORY["sweep words"],
], ids=["name", "cap", "number", "memory"])
def test_the_real_entry_point_refuses_in_one_line(tmp_path: Path, case: tuple[str, str]) -> None:
    text, expected = case
    path, store = tmp_path / "s.toml", tmp_path / "x.db"
    path.write_text(text)
    result = cli("sweep", str(path), "--store", str(store))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert not store.exists()


# --- Fuzz: documents from the grammar -------------------------------------------------------------


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def to_toml(document: dict[str, Any]) -> str:
    """A small TOML writer: top-level values first, then [tables] and [[arrays of tables]]."""
    head, body = [], []
    for name, value in document.items():
        if isinstance(value, dict):
            body.append(f"[{_key(name)}]")
            body += [f"{_key(k)} = {_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for item in value:
                body.append(f"[[{_key(name)}]]")
                body += [f"{_key(k)} = {_value(v)}" for k, v in item.items()]
        else:
            head.append(f"{_key(name)} = {_value(value)}")
    return "\n".join(head + body) + "\n"


def mostly(good: st.SearchStrategy[Any], other: st.SearchStrategy[Any], times: int = 6) -> st.SearchStrategy[Any]:
    """`good` `times` times as often as `other`: deep documents mostly, and anything at all now and then."""
    # sampled_from picks about uniformly; one_of would give each distinct branch an even chance.
    return st.sampled_from([good] * times + [other]).flatmap(lambda chosen: chosen)


SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.sampled_from(["10m", "90s", "1h", "0", "-1", "8GiB", "512MiB", "1.5GB", "lots", "50ms", "20000/h"]),
)
JUNK_KEYS = st.text(min_size=1, max_size=8)
KEYS = mostly(st.sampled_from(CELL_KEYS), JUNK_KEYS, times=30)
ANY_VALUE = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8
)
NAMES = {
    "workload": [*workloads.names(), "ddmp"],
    "backend": ["null", "null", "pytorch", "tensorrtt"],
    "size": ["tiny", "base", "huge"],
    "precision": ["fp32", "fp16", "int4"],
    "scenario": ["latency", "throughput", "server", "offline"],
    "scheduler": ["ddpm", "ddim", "nope"],
    "device": ["cpu", "cuda:0", "CPU!"],
}
SMALL_NUMBERS = mostly(st.integers(1, 6) | st.floats(0, 6), st.sampled_from([0, -1, math.inf, -math.inf, math.nan]), 30)
CORE_KEYS = ["workload", "backend", "size"]  # the keys without which a cell never builds


def plausible(key: str) -> st.SearchStrategy[Any]:
    """Values that reach deep into the loader for `key` most of the time, and anything else sometimes."""
    if key in NAMES:
        likely = st.sampled_from(NAMES[key])
    elif key in ("options", "labels"):
        likely = st.dictionaries(st.sampled_from(["fault", "fault_at", "threads", "x y"]), SCALARS, max_size=2)
    elif key == "memory_limit":
        likely = st.sampled_from(["1GiB", "512MiB", "100MiB", 2**30, "1.5GB", "2G", "10MiB", "lots"])
    elif key in ("timeout", "max_wait", "slo_p99", "rate"):
        likely = SMALL_NUMBERS | st.sampled_from(["10m", "50ms", "1x", "200/s", "90s", "1h"])
    else:
        likely = SMALL_NUMBERS
    return mostly(likely, ANY_VALUE, times=30)


def key_lists(max_size: int, core: list[str], min_size: int = 0) -> st.SearchStrategy[list[str]]:
    extra = st.lists(KEYS, min_size=min_size, max_size=max_size, unique=True)
    return mostly(extra.map(lambda keys: list(dict.fromkeys([*core, *keys]))), extra, times=2)


def cell_table(core: list[str] = CORE_KEYS) -> st.SearchStrategy[dict[str, Any]]:
    return key_lists(4, core).flatmap(lambda keys: st.fixed_dictionaries({k: plausible(k) for k in keys}))


def listed(key: str) -> st.SearchStrategy[Any]:
    distinct = st.lists(plausible(key), min_size=1, max_size=3, unique_by=repr)
    return mostly(distinct, st.lists(plausible(key), max_size=3) | ANY_VALUE)


def matrix_table() -> st.SearchStrategy[dict[str, Any]]:
    keys = key_lists(3, ["workload", "backend"])
    return keys.flatmap(lambda names: st.fixed_dictionaries({name: listed(name) for name in names}))


def criteria_table() -> st.SearchStrategy[dict[str, Any]]:
    return key_lists(2, [], min_size=1).flatmap(
        lambda keys: st.fixed_dictionaries({k: mostly(plausible(k), listed(k), times=2) for k in keys})
    )


def override_table() -> st.SearchStrategy[dict[str, Any]]:
    both = st.fixed_dictionaries({"where": criteria_table(), "set": cell_table([])})
    return mostly(both, st.fixed_dictionaries({}, optional={"where": ANY_VALUE, "set": ANY_VALUE, "if": ANY_VALUE}))


TABLE_STRATEGIES = {
    "sweep": st.fixed_dictionaries({}, optional={
        "name": mostly(st.text(min_size=1, max_size=8), SCALARS, times=20),
        "description": mostly(st.text(max_size=8), SCALARS, times=20),
        **{key: plausible(key) for key in SWEEP_KEYS if key in CELL_KEYS},
    }),
    "defaults": cell_table(["workload", "size"]),
    "matrix": matrix_table(),
    "exclude": st.lists(criteria_table(), max_size=2),
    "override": st.lists(override_table(), max_size=2),
    "cell": st.lists(cell_table(), max_size=3),
}
assert set(TABLE_STRATEGIES) == set(TABLES)
_TABLES = {name: mostly(table, ANY_VALUE, 30) for name, table in TABLE_STRATEGIES.items()}
DOCUMENTS = mostly(
    st.fixed_dictionaries({"matrix": _TABLES["matrix"]}, optional={k: v for k, v in _TABLES.items() if k != "matrix"})
    | st.fixed_dictionaries({}, optional=_TABLES),
    st.dictionaries(st.sampled_from(TABLES) | JUNK_KEYS, ANY_VALUE, max_size=4),
    times=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(document=DOCUMENTS)
def test_fuzz_the_loader_returns_a_plan_or_a_one_line_user_error(tmp_path_factory, document: dict[str, Any]) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    try:
        plan = load_sweep(path)
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path)), str(exc)
    else:
        assert isinstance(plan, SweepPlan) and plan.cells
        assert all(cell.config.backend in backends.names() for cell in plan.cells)
