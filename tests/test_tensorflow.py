"""The tensorflow and litert backends: refusals here, real runs in their own environment.

The shared contract (test_backends.py) skips both where TensorFlow is not
installed, which is the main environment. What the main environment can check
runs here without TensorFlow: the reason that names `make env-tensorflow`, the
exit 3, the refusals of bad options and devices, the static graph given to
onnx2tf. The runs need the environment (`make env-tensorflow`) and are skipped, with
the path looked at, when it is not built: DCGAN from this environment's CLI,
which runs the cell in the backend's own interpreter, and the others through
that environment's own `aigcbench`.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.backends import onnx_export
from aigcbench.backends import registry as backends
from aigcbench.backends import tf_convert
from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.interpreters import environment_python
from aigcbench.workloads import registry as workloads

NAMES = ("tensorflow", "litert")
FAST = ["--size", "tiny", "--duration", "0", "--min-iterations", "3", "--warmup", "1", "--warmup-duration", "0",
        "--no-store"]
HERE_HAS_TENSORFLOW = find_spec("tensorflow") is not None


def _env_python() -> Path:
    python = environment_python(tf_convert.ENVIRONMENT)
    if not python.exists():
        pytest.skip(f"the tensorflow environment is not built ({python} is absent; make env-tensorflow)")
    return python


def _in_env(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """The environment's own `aigcbench`, in a subprocess (the cache and store paths are the test's)."""
    executable = _env_python().parent / "aigcbench"
    return subprocess.run([str(executable), *args], capture_output=True, text=True, timeout=timeout)


def _run_record(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "r.json"
    result = _in_env(["run", *args, *FAST, "--json", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


def _run_here(tmp_path: Path, *args: str) -> dict:
    """`aigcbench run` from this (the main) environment: the harness runs the cell in the backend's own."""
    _env_python()
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["run", *args, *FAST, "--json", str(out)])
    assert result.exit_code == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_declares_its_environment_and_fp32(name: str) -> None:
    backend = backends.get(name)
    assert backend.environment == "tensorflow"
    assert backend.input_format == "onnx" and backend.precisions == ("fp32",)


@pytest.mark.skipif(HERE_HAS_TENSORFLOW, reason="this Python has TensorFlow: nothing is unavailable to show")
@pytest.mark.parametrize("name", NAMES)
def test_unavailable_until_its_environment_is_made(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGCBENCH_ENVS", str(tmp_path / "no-envs"))  # not made: the cell stays here
    reason = backends.get(name).available()
    assert reason is not None and "make env-tensorflow" in reason and "\n" not in reason
    result = CliRunner().invoke(app, ["run", "-w", "dcgan", "-b", name, *FAST])
    assert result.exit_code == 3
    assert "make env-tensorflow" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("name", "options", "match"), [
    ("tensorflow", {"strict": "maybe"}, "--option strict=maybe: expected true or false"),
    ("tensorflow", {"intra_op_threads": "0"}, "--option intra_op_threads=0: expected an integer"),
    ("litert", {"num_threads": "many"}, "--option num_threads=many: expected an integer"),
])
def test_bad_option_values_are_one_line_errors(name: str, options: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        backends.get(name).check_options(options)


@pytest.mark.parametrize(("name", "device", "match"), [
    ("tensorflow", "gpu", "runs on cpu or cuda"), ("tensorflow", "cuda:x", "runs on cpu or cuda"),
    ("litert", "cuda", "runs on cpu"),
])
def test_refuses_a_device_it_cannot_name(name: str, device: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        backends.get(name).check_device(device, "fp32")


def test_the_graph_given_to_onnx2tf_has_a_static_batch() -> None:
    pytest.importorskip("onnx")
    workload = workloads.build("dcgan", "tiny", 0)
    component, module = next(iter(workload.components().items()))
    graph = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    model, _ = tf_convert.static_graph(graph.path, 3)
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_value == 3
    # onnx2tf reads intermediate shapes too: none may still name the exporter's symbolic batch.
    assert all(not d.dim_param for v in model.graph.value_info for d in v.type.tensor_type.shape.dim)


def test_dcgan_run_from_here_passes_the_fidelity_gate_in_its_environment(tmp_path: Path) -> None:
    # Batch 3: the check runs batch 2, so the session converts a second static-shape variant on demand.
    record = _run_here(tmp_path, "-w", "dcgan", "-b", "tensorflow", "--batch-size", "3",
                       "--option", "intra_op_threads=1")
    assert record["status"] == "ok" and record["metrics"]["fidelity"]["passed"]
    options = record["backend"]["options"]
    assert options["precision_run"] == "fp32" and options["conversion"]["batch"] == 3
    assert options["conversion"]["output_transposed"]  # DCGAN's image came out NHWC and was turned back
    assert options["intra_op_threads"] == 1 and options["inter_op_threads"] == "tf-default"  # as run
    # The record describes the interpreter the cell ran in, not this one.
    assert record["environment"]["packages"]["tensorflow"] == record["backend"]["version"]
    assert record["environment"]["packages"]["torch"].startswith("2.13.0")


def test_litert_runs_the_same_conversion_in_its_environment(tmp_path: Path) -> None:
    record = _run_record(tmp_path, "-w", "dcgan", "-b", "litert", "--option", "num_threads=1")
    assert record["status"] == "ok" and record["metrics"]["fidelity"]["passed"]
    options = record["backend"]["options"]
    assert options["num_threads"] == 1 and options["tflite"]["path"].endswith(".tflite")


@pytest.mark.slow
@pytest.mark.parametrize("backend", NAMES)
@pytest.mark.parametrize("workload", ["vae", "ddpm"])
def test_vae_and_ddpm_pass_the_fidelity_gate_in_its_environment(tmp_path: Path, backend: str, workload: str) -> None:
    steps = ["--steps", "2"] if workload == "ddpm" else []
    record = _run_record(tmp_path, "-w", workload, "-b", backend, *steps)
    assert record["status"] == "ok", record.get("reason")
    assert record["metrics"]["fidelity"]["passed"]


@pytest.mark.slow
def test_a_gpu_tensorflow_does_not_see_is_unavailable(tmp_path: Path) -> None:
    result = _in_env(["run", "-w", "dcgan", "-b", "tensorflow", "--device", "cuda", *FAST])
    if result.returncode == 0:
        pytest.skip("TensorFlow sees a GPU in this environment")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "GPU(s) here" in result.stderr and "Traceback" not in result.stderr

