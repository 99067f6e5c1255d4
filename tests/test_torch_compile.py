"""The torch.compile backend: option checking, compilation inside `prepare`, inductor's cache folder, a CLI run.

Inductor compiles C++ on the CPU, which takes seconds per graph on a small
machine, so these tests compile a two-layer module except for the one CLI run
(DCGAN tiny); the contract test in test_backends.py covers every workload.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aigcbench.backends import registry
from aigcbench.backends.base import PrepareContext
from aigcbench.backends.torch_compile import INDUCTOR_CACHE_ENV, CompileSettings, use_inductor_cache
from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError


def _small_module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "fastest"}, "--option mode=fastest: choose from default, reduce-overhead, max-autotune"),
        ({"fullgraph": "maybe"}, "--option fullgraph=maybe: expected true or false"),
        ({"dynamic": "2"}, "--option dynamic=2: expected true or false"),
        ({"threads": "0"}, "--option threads=0: expected an integer ≥ 1"),
    ],
)
def test_a_bad_option_value_is_a_one_line_user_error_before_compiling(options: dict, message: str) -> None:
    backend = registry.get("torch-compile")
    with pytest.raises(UserError, match=message) as raised:
        backend.prepare(_small_module(), (torch.ones(2, 8),), "fp32", "cpu", options, PrepareContext(batch_size=2))
    assert "\n" not in str(raised.value)


def test_defaults_and_parsed_values() -> None:
    assert CompileSettings.parse({}) == CompileSettings(mode="default", fullgraph=False, dynamic=False, threads=None)
    options = {"mode": "max-autotune-no-cudagraphs", "fullgraph": "true", "dynamic": "on", "threads": "2"}
    parsed = CompileSettings.parse(options)
    assert parsed == CompileSettings(mode="max-autotune-no-cudagraphs", fullgraph=True, dynamic=True, threads=2)


def test_prepare_compiles_into_the_cache_so_calls_do_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._dynamo.eval_frame import OptimizedModule
    from torch._dynamo.utils import counters
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    # What a fresh process has once torch._dynamo is imported (restored after the test).
    monkeypatch.setenv(INDUCTOR_CACHE_ENV, default_cache_dir())
    backend = registry.get("torch-compile")
    inputs = (torch.randn(3, 8),)
    expected = _small_module()(*inputs)
    session = backend.prepare(
        _small_module(), inputs, "fp32", "cpu", {"fullgraph": "true"}, PrepareContext(batch_size=3)
    )
    try:
        assert isinstance(session.module, OptimizedModule)
        info = session.info
        assert info["mode"] == "default" and info["fullgraph"] is True and info["dynamic"] is False
        inductor = Path(session.info["inductor_cache_dir"])
        assert inductor == tmp_path / "inductor" and str(inductor) == os.environ[INDUCTOR_CACHE_ENV]
        assert any(inductor.rglob("*")), "inductor wrote nothing into the cache folder it was given"
        compiled_frames = counters["frames"]["ok"]
        # The harness calls with tensors made inside and outside inference mode; neither may recompile.
        with torch.inference_mode():
            start = time.perf_counter()
            out = session(inputs[0])
            session(inputs[0] * 1)
            elapsed = time.perf_counter() - start
        session(inputs[0])
        assert counters["frames"]["ok"] == compiled_frames
        assert elapsed < 1.0
        assert torch.allclose(out, expected, rtol=1e-4, atol=1e-5)
    finally:
        session.close()


def test_a_user_chosen_inductor_cache_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "my-inductor-cache"
    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path / "aigcbench"))
    monkeypatch.setenv(INDUCTOR_CACHE_ENV, str(mine))
    assert use_inductor_cache() == str(mine)
    assert os.environ[INDUCTOR_CACHE_ENV] == str(mine)


def test_an_unset_inductor_cache_goes_into_aigcbench_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv(INDUCTOR_CACHE_ENV, raising=False)
    assert Path(use_inductor_cache()) == tmp_path / "inductor"
    # Importing inductor sets the variable to its default folder: that is not a user's choice.
    monkeypatch.setenv(INDUCTOR_CACHE_ENV, default_cache_dir())
    assert Path(use_inductor_cache()) == tmp_path / "inductor"


def test_without_a_cxx_compiler_it_is_unavailable_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++ to be found
    reason = registry.get("torch-compile").available()
    assert reason is not None
    assert reason.startswith("no C++ compiler (") and reason.endswith(") for inductor's CPU code")


def test_cli_run_compiles_measures_and_passes_fidelity(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        app,
        ["run", "-w", "dcgan", "-b", "torch-compile", "--size", "tiny", "--duration", "0", "--min-iterations", "3",
         "--no-store", "--json", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["status"] == "ok" and record["metrics"]["fidelity"]["passed"] is True
    options = record["backend"]["options"]
    assert options["compiler"] == "inductor" and options["mode"] == "default" and options["precision_run"] == "fp32"
    cold = record["metrics"]["cold_start_s"]
    # Compilation is cold start inside prepare: the first call after it is an ordinary call.
    assert cold["prepare"] > cold["first_call"]


@pytest.mark.slow
def test_dynamic_shapes_serve_every_batch_size_from_one_compile() -> None:
    from torch._dynamo.utils import counters

    backend = registry.get("torch-compile")
    session = backend.prepare(
        _small_module(), (torch.randn(4, 8),), "bf16", "cpu", {"dynamic": "true"}, PrepareContext(batch_size=4)
    )
    try:
        compiled_frames = counters["frames"]["ok"]
        # Batch 1 is left out: dynamo specialises sizes 0 and 1 even for dynamic shapes.
        for batch in (2, 3, 5, 7):
            assert session(torch.randn(batch, 8)).shape == (batch, 4)
        assert counters["frames"]["ok"] == compiled_frames
        assert session.info["precision_run"] == "bf16" and session.info["dynamic"] is True
    finally:
        session.close()


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_on_cuda_every_mode_passes_fidelity(mode: str) -> None:
    from aigcbench.bench.config import RunConfig
    from aigcbench.bench.runner import run_cell
    from aigcbench.bench.stopping import StopRule, WarmupRule

    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device visible to torch {torch.__version__}")
    # DDPM keeps the denoiser's output across calls (the fidelity check's single step), which a
    # CUDA graph's output buffer would not survive without the session's copy.
    record = run_cell(RunConfig(
        workload="ddpm", backend="torch-compile", size="tiny", device="cuda", precision="fp16", steps=2,
        options={"mode": mode}, stop=StopRule(min_duration_s=0.2, min_iterations=10),
        warmup=WarmupRule(iterations=2, duration_s=0),
    ))
    assert record.status == "ok", record.reason
    assert record.backend["options"]["cuda_graphs"] is (mode == "reduce-overhead")
