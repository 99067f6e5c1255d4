"""Sweep files: expansion, merging and the one-line refusals, checked without running any model."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from aigcbench.backends import registry as backends
from aigcbench.bench.errors import UserError
from aigcbench.bench.sweep_file import DEFAULT_TIMEOUT_S, SweepPlan, load_sweep

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def refusal(tmp_path: Path, text: str) -> str:
    """The message `load_sweep` refuses the file with; it must be one line naming the file."""
    path = write(tmp_path, text)
    with pytest.raises(UserError) as caught:
        load_sweep(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}:"), message
    return message


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle` in the dedented text (what `write` stores)."""
    lines = textwrap.dedent(text).lstrip("\n").splitlines()
    return next(n for n, line in enumerate(lines, 1) if needle in line)


def keys(plan: SweepPlan, *names: str) -> list[tuple]:
    return [tuple(getattr(cell.config, name) for name in names) for cell in plan.cells]


# --- Expansion and merging ----------------------------------------------------------------------


def test_matrix_is_the_cross_product_in_key_order_last_key_fastest(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [defaults]
        size = "tiny"
        [matrix]
        workload = ["vae", "dcgan"]
        backend = ["pytorch", "onnxruntime"]
        batch_size = [4, 1]
    """))
    expected = list(itertools.product(["vae", "dcgan"], ["pytorch", "onnxruntime"], [4, 1]))
    assert keys(plan, "workload", "backend", "batch_size") == expected
    assert [cell.origin for cell in plan.cells] == [f"matrix #{n}" for n in range(1, 9)]
    assert all(cell.config.size == "tiny" and cell.timeout_s == DEFAULT_TIMEOUT_S for cell in plan.cells)


def test_sweep_settings_and_defaults(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [sweep]
        description = "two cells"
        timeout = "90s"
        [defaults]
        workload = "dcgan"
        size = "tiny"
        duration = 2
        min_iterations = 7
        [matrix]
        backend = ["pytorch", "openvino"]
    """, name="my-sweep.toml"))
    assert plan.name == "my-sweep" and plan.description == "two cells"
    assert plan.path == tmp_path / "my-sweep.toml"
    assert [c.timeout_s for c in plan.cells] == [90.0, 90.0]
    assert all(c.config.stop.min_duration_s == 2.0 and c.config.stop.min_iterations == 7 for c in plan.cells)


@pytest.mark.parametrize(("written", "seconds"), [(600, 600.0), (2.5, 2.5), ('"10m"', 600.0), ('"1h"', 3600.0)])
def test_timeout_takes_seconds_or_durations(tmp_path: Path, written: object, seconds: float) -> None:
    plan = load_sweep(write(tmp_path, f"""
        [sweep]
        timeout = {written}
        [[cell]]
        workload = "dcgan"
        backend = "pytorch"
    """))
    assert plan.cells[0].timeout_s == seconds


def test_labels_and_options_merge_other_keys_replace(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [defaults]
        size = "tiny"
        labels = { suite = "nightly", owner = "ci" }
        options = { threads = 2 }
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]
        labels = [{ owner = "alice" }, { team = "gen" }]
        [[cell]]
        workload = "vae"
        backend = "pytorch"
        size = "base"
        labels = { suite = "weekly" }
        options = { channels_last = true }
        [[override]]
        where = { workload = "vae" }
        set = { labels = { extra = "x" }, options = { threads = 4 } }
    """))
    assert [dict(c.config.labels) for c in plan.cells] == [
        {"suite": "nightly", "owner": "alice"},
        {"suite": "nightly", "owner": "ci", "team": "gen"},
        {"suite": "weekly", "owner": "ci", "extra": "x"},
    ]
    assert [dict(c.config.options) for c in plan.cells] == [
        {"threads": "2"}, {"threads": "2"}, {"threads": "4", "channels_last": "true"},
    ]
    assert [c.config.size for c in plan.cells] == ["tiny", "tiny", "base"]


def test_exclude_matches_every_key_and_a_list_means_any_of(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [defaults]
        workload = "dcgan"
        [matrix]
        backend = ["pytorch", "openvino"]
        precision = ["fp32", "fp16", "bf16"]
        [[exclude]]
        backend = "openvino"
        precision = ["fp16", "bf16"]
    """))
    assert keys(plan, "backend", "precision") == [
        ("pytorch", "fp32"), ("pytorch", "fp16"), ("pytorch", "bf16"), ("openvino", "fp32"),
    ]
    # Origins keep their place in the full cross product: excluding never renumbers.
    assert [c.origin for c in plan.cells] == ["matrix #1", "matrix #2", "matrix #3", "matrix #4"]


def test_exclude_sees_defaults_and_compares_types(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [defaults]
        size = "tiny"
        [matrix]
        workload = ["dcgan", "vae"]
        backend = ["pytorch"]
        batch_size = [1, 2]
        [[exclude]]
        size = "tiny"
        workload = "vae"
        batch_size = 2.0
    """))
    assert keys(plan, "workload", "batch_size") == [("dcgan", 1), ("dcgan", 2), ("vae", 1)]


def test_override_sets_keys_options_and_timeout(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [sweep]
        timeout = 60
        [defaults]
        size = "tiny"
        [matrix]
        workload = ["dcgan", "ddpm"]
        backend = ["pytorch", "onnxruntime"]
        [[override]]
        where = { workload = "ddpm" }
        set = { steps = 4, timeout = "10s", options = { threads = 1 } }
        [[override]]
        where = { workload = "ddpm", backend = ["onnxruntime"] }
        set = { steps = 3 }
    """))
    assert keys(plan, "workload", "backend", "steps") == [
        ("dcgan", "pytorch", None), ("dcgan", "onnxruntime", None), ("ddpm", "pytorch", 4), ("ddpm", "onnxruntime", 3),
    ]
    assert [c.timeout_s for c in plan.cells] == [60.0, 60.0, 10.0, 10.0]
    assert [dict(c.config.options) for c in plan.cells] == [{}, {}, {"threads": "1"}, {"threads": "1"}]


def test_where_sees_the_cell_as_written_not_earlier_overrides(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch", "openvino"]
        [[override]]
        where = { backend = "pytorch" }
        set = { batch_size = 8 }
        [[override]]
        where = { batch_size = 8 }
        set = { size = "tiny" }
        [[cell]]
        workload = "vae"
        backend = "pytorch"
        batch_size = 8
    """))
    assert keys(plan, "workload", "batch_size", "size") == [("dcgan", 8, "base"), ("dcgan", None, "base"), ("vae", 8, "tiny")]


def test_explicit_cells_take_defaults_then_own_keys_then_overrides(tmp_path: Path) -> None:
    text = """
        [defaults]
        size = "tiny"
        duration = 1
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]

        [[cell]]
        workload = "ddpm"
        backend = "pytorch"
        duration = 3

        [[cell]]
        workload = "vae"
        backend = "onnxruntime"
        [[override]]
        where = { workload = "ddpm" }
        set = { steps = 2 }
    """
    plan = load_sweep(write(tmp_path, text))
    assert keys(plan, "workload", "backend", "size", "steps") == [
        ("dcgan", "pytorch", "tiny", None), ("ddpm", "pytorch", "tiny", 2), ("vae", "onnxruntime", "tiny", None),
    ]
    assert [c.config.stop.min_duration_s for c in plan.cells] == [1.0, 3.0, 1.0]
    second = line_of(text, "workload = \"vae\"") - 1
    assert [c.origin for c in plan.cells] == ["matrix #1", f"cell #1 (line {line_of(text, '[[cell]]')})", f"cell #2 (line {second})"]


def test_cells_without_a_matrix(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [[cell]]
        workload = "dcgan"
        backend = "pytorch"
    """))
    assert len(plan.cells) == 1 and plan.cells[0].origin == "cell #1 (line 1)"


# --- Refusals -----------------------------------------------------------------------------------


def test_identical_cells_are_refused_naming_both(tmp_path: Path) -> None:
    text = """
        [defaults]
        size = "tiny"
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch", "onnxruntime"]
        [[cell]]
        workload = "dcgan"
        backend = "onnxruntime"
        size = "tiny"
    """
    message = refusal(tmp_path, text)
    assert f":{line_of(text, '[[cell]]')}:" in message
    assert "cell #1" in message and "matrix #2" in message and "identical" in message


def test_cells_made_identical_by_an_override_are_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, """
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]
        batch_size = [1, 2]
        [[override]]
        where = { batch_size = 2 }
        set = { batch_size = 1 }
    """)
    assert "matrix #2" in message and "matrix #1" in message


def test_same_config_with_a_different_timeout_is_allowed(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, """
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]
        timeout = [10, 20]
    """))
    assert [c.timeout_s for c in plan.cells] == [10.0, 20.0]


def test_unknown_top_level_table(tmp_path: Path) -> None:
    text = """
        [sweep]
        name = "x"

        [matirx]
        workload = ["dcgan"]
    """
    message = refusal(tmp_path, text)
    assert f":{line_of(text, '[matirx]')}: matirx: unknown table" in message
    assert "did you mean 'matrix'" in message


def test_unknown_key_in_a_table(tmp_path: Path) -> None:
    text = """
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]
        batchsize = [1, 2]
    """
    message = refusal(tmp_path, text)
    assert f":{line_of(text, 'batchsize')}: matrix.batchsize: unknown key (did you mean 'batch_size'?)" in message


def test_unknown_key_inside_an_inline_table_has_a_column(tmp_path: Path) -> None:
    text = """
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]

        [[override]]
        where = { workload = "dcgan" }
        set = { step = 4 }
    """
    message = refusal(tmp_path, text)
    assert f":{line_of(text, 'set =')}:9: override #1.set.step: unknown key" in message


def test_unknown_key_in_sweep_and_override(tmp_path: Path) -> None:
    assert "sweep.title: unknown key" in refusal(tmp_path, '[sweep]\ntitle = "x"\n')
    message = refusal(tmp_path, '[matrix]\nworkload = ["dcgan"]\nbackend = ["pytorch"]\n[[override]]\nif = { size = "tiny" }\n')
    assert ":5: override #1.if: unknown key" in message


def test_bad_value_names_the_line_and_key(tmp_path: Path) -> None:
    text = """
        [defaults]
        size = "tiny"

        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]
        batch_size = [1, 0]
    """
    message = refusal(tmp_path, text)
    assert f"s.toml:{line_of(text, 'batch_size')}: matrix.batch_size: --batch-size must be from 1 to 65536, got 0" in message


def test_bad_value_from_defaults_names_the_cell(tmp_path: Path) -> None:
    text = """
        [defaults]
        size = "huge"
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]
    """
    message = refusal(tmp_path, text)
    assert f":{line_of(text, 'huge')}: defaults.size: --size 'huge'" in message
    assert "(in matrix #1 (workload=dcgan, backend=pytorch))" in message


def test_bad_value_in_an_override_points_inside_its_inline_table(tmp_path: Path) -> None:
    text = """
        [matrix]
        workload = ["ddpm"]
        backend = ["pytorch"]
        [[override]]
        where = { workload = "ddpm" }
        set = { steps = 0 }
    """
    message = refusal(tmp_path, text)
    assert f":{line_of(text, 'steps = 0')}:9: override #1.set.steps: --steps must be from 1 to 10000, got 0" in message


def test_unknown_backend_in_the_matrix(tmp_path: Path) -> None:
    text = """
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch", "tensorrtt"]
    """
    message = refusal(tmp_path, text)
    assert f":{line_of(text, 'tensorrtt')}: matrix.backend: unknown backend 'tensorrtt'; choose from:" in message


def test_a_per_workload_choice_is_checked(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[[cell]]\nworkload = "ddpm"\nbackend = "pytorch"\nscheduler = "nope"\n')
    assert ":4: cell #1.scheduler: unknown scheduler 'nope' for ddpm" in message


def test_missing_required_key_points_at_the_cell(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[sweep]\nname = "x"\n\n[[cell]]\nworkload = "dcgan"\n')
    assert message.endswith(":4: cell #1: backend is required")


def test_error_about_a_combination_blames_the_key_the_cell_sets(tmp_path: Path) -> None:
    text = """
        [defaults]
        scenario = "server"
        slo_p99 = "50ms"
        find_max_rate = true
        [matrix]
        workload = ["dcgan"]
        backend = ["pytorch"]
        batch_size = [2]
    """
    message = refusal(tmp_path, text)
    assert f":{line_of(text, 'batch_size')}: matrix.batch_size: the server scenario" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[matrix]\nworkload = "dcgan"\nbackend = ["pytorch"]\n', ":2: matrix.workload: must be a non-empty list"),
        ('[matrix]\nworkload = []\nbackend = ["pytorch"]\n', ":2: matrix.workload: must be a non-empty list"),
        ('[matrix]\nworkload = ["dcgan", "dcgan"]\nbackend = ["pytorch"]\n', ":2: matrix.workload: 'dcgan' is listed twice"),
        ("[matrix]\n", ":1: matrix: is empty"),
        ('sweep = "x"\n', ":1: sweep: must be a [sweep] table"),
        ('exclude = { backend = "x" }\n', ":1: exclude: must be [[exclude]] tables"),
        ('[sweep]\nname = ""\n', ":2: sweep.name: must be a non-empty string"),
        ('[sweep]\ntimeout = 0\n', ":2: sweep.timeout: expected seconds > 0"),
        ('[sweep]\ntimeout = "soon"\n', ":2: sweep.timeout: expected seconds > 0"),
        ('[defaults]\nlabels = "nightly"\n', ":2: defaults.labels: must be a table"),
        ('[defaults]\noptions = { fault = ["a"] }\n', ":2:13: defaults.options.fault: values must be strings, numbers or booleans"),
        ('[defaults]\nduration = "2s"\n[[cell]]\nworkload = "dcgan"\nbackend = "pytorch"\n', ":2: defaults.duration: --duration must be a number"),
        ('[[override]]\nwhere = { workload = "dcgan" }\n', ":1: override #1: needs both where"),
        ('[[override]]\nwhere = {}\nset = { steps = 1 }\n', ":2: override #1.where: must be a non-empty table"),
        ('[[exclude]]\nbackend = []\n', ":2: exclude #1.backend: an empty list matches nothing"),
        ('[[exclude]]\nbackend = { a = 1 }\n', ":2: exclude #1.backend: must be a value or a list of values"),
    ],
)
def test_wrong_types_and_shapes(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in refusal(tmp_path, body)


def test_invalid_toml_gives_line_and_column(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[sweep]\nname = "x"\ntimeout 600\n')
    assert message == f"{tmp_path / 's.toml'}:3:9: invalid TOML: Expected '=' after a key in a key/value pair"


def test_invalid_toml_at_end_of_document(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[matrix]\nworkload = [\n')
    assert ":2: invalid TOML:" in message


def test_duplicate_key_is_invalid_toml(tmp_path: Path) -> None:
    assert ":3:" in refusal(tmp_path, '[defaults]\nsize = "tiny"\nsize = "base"\n')


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.toml: no such sweep file$"):
        load_sweep(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="is a directory"):
        load_sweep(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b'[sweep]\nname = "\xff"\n')
    with pytest.raises(UserError, match="not UTF-8"):
        load_sweep(path)


def test_a_sweep_without_cells_is_refused(tmp_path: Path) -> None:
    assert "the sweep has no cells" in refusal(tmp_path, '[sweep]\nname = "empty"\n')
    assert "the sweep has no cells" in refusal(tmp_path, "")


def test_excluding_every_cell_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[matrix]\nworkload = ["dcgan"]\nbackend = ["pytorch"]\n[[exclude]]\nworkload = "dcgan"\n')
    assert ":1: the [[exclude]] tables drop every matrix cell" in message


def test_exclude_or_override_that_matches_nothing_is_refused(tmp_path: Path) -> None:
    matrix = '[matrix]\nworkload = ["dcgan"]\nbackend = ["pytorch", "openvino"]\n'
    message = refusal(tmp_path, matrix + '[[exclude]]\nworkload = "dcgan"\nbackend = "onnxruntime"\n')
    assert ":6: exclude #1.backend: 'onnxruntime' matches no matrix cell" in message
    message = refusal(tmp_path, matrix + '[[override]]\nwhere = { workload = "ddpm" }\nset = { steps = 4 }\n')
    assert ":5:11: override #1.where.workload: 'ddpm' matches no cell" in message
    # Each key matches some cell, but no cell has both values.
    message = refusal(tmp_path, matrix + '[[cell]]\nworkload = "vae"\nbackend = "pytorch"\n'
                      '[[override]]\nwhere = { workload = "vae", backend = "openvino" }\nset = { steps = 4 }\n')
    assert ":8: override #1.where: no cell has all of these values" in message


# --- The shipped example files ------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_sweep_loads(path: Path) -> None:
    if "null" in path.read_text(encoding="utf-8") and "null" not in backends.names():
        pytest.skip("the null backend (backends/null.py) is not registered yet")
    plan = load_sweep(path)
    assert plan.cells and plan.name == path.stem and plan.description


def test_examples_exist() -> None:
    assert {p.name for p in SWEEPS.glob("*.toml")} >= {"cpu-matrix.toml", "isolation-check.toml", "server-capacity.toml"}


def test_cpu_matrix_example() -> None:
    plan = load_sweep(SWEEPS / "cpu-matrix.toml")
    assert len(plan.cells) == 18
    assert {c.config.backend for c in plan.cells} == {"pytorch", "onnxruntime", "openvino"}
    assert all(c.config.size == "tiny" and c.config.precision == "fp32" and c.config.scenario == "latency" for c in plan.cells)
    assert all(c.config.stop.min_duration_s == 2 and c.config.stop.min_iterations == 10 for c in plan.cells)
    assert {c.config.steps for c in plan.cells if c.config.workload == "ddpm"} == {4}


def test_server_capacity_example() -> None:
    plan = load_sweep(SWEEPS / "server-capacity.toml")
    assert keys(plan, "workload", "backend") == [
        ("dcgan", "pytorch"), ("dcgan", "onnxruntime"), ("vae", "pytorch"), ("vae", "onnxruntime"),
    ]
    for cell in plan.cells:
        assert cell.config.scenario == "server" and cell.config.size == "tiny"
        assert cell.config.server is not None and cell.config.server.find_max_rate
        assert cell.config.server.slo_p99_s == pytest.approx(0.05)


def test_isolation_check_example() -> None:
    if "null" not in backends.names():
        pytest.skip("the null backend (backends/null.py) is not registered yet")
    plan = load_sweep(SWEEPS / "isolation-check.toml")
    assert len(plan.cells) == 12
    assert plan.description and "10 ok" in plan.description and "2 failed" in plan.description
    faults = {(c.config.workload, c.config.backend, c.config.batch_size): (c.config.options.get("fault"), c.timeout_s)
              for c in plan.cells}
    assert faults.pop(("dcgan", "null", 2)) == ("segfault", 120.0)
    assert faults.pop(("vae", "null", 2)) == ("hang", 10.0)
    assert all(value == (None, 120.0) for value in faults.values())
    for cell in plan.cells:
        assert cell.config.size == "tiny" and cell.config.warmup.iterations == 1 and cell.config.warmup.duration_s == 0
        assert cell.config.stop.min_duration_s == 0.5 and cell.config.stop.min_iterations == 5
        assert cell.config.steps == (2 if cell.config.workload == "ddpm" else None)
