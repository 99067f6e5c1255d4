"""A cell imports only what it uses (issue 11, item 4).

Importing diffusers, onnx/onnxscript or a runtime costs a worker seconds
before it measures anything, so a cell that does not use one must not import
it. Each case runs one tiny cell in a fresh interpreter (the cold path: an
empty cache, so FLOPs are counted and ONNX graphs exported there too) and
reads `sys.modules` at the end. `required` is the positive control: the
modules the cell does use must show up, or the check would pass vacuously.

The parent validates a cell (workload, size, steps, scheduler) from the
workload modules alone, which import no torch (issue 11, item 2); what a cell
imports to build its model is declared in `Workload.model_modules`, which the
pre-imported worker imports before it forks cells.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aigcbench.backends import registry as backend_registry
from aigcbench.workloads import registry as workload_registry

# One cell, as a worker runs it, then every imported module's name into the file argv[2].
CELL_DRIVER = """
import json, sys
from aigcbench.bench.config import RunConfig
from aigcbench.bench.runner import run_cell
record = run_cell(RunConfig.from_options(json.loads(sys.argv[1])))
with open(sys.argv[2], "w") as stream:
    json.dump({"status": record.status, "modules": sorted(sys.modules)}, stream)
"""

# Code run in the parent before anything is measured, then the same report.
PARENT_DRIVER = """
import json, sys
exec(sys.argv[1])
with open(sys.argv[2], "w") as stream:
    json.dump({"status": "ok", "modules": sorted(sys.modules)}, stream)
"""

# Build a tiny workload and run one eager batch after importing its `model_modules` (and its own
# module, as the pre-imported worker does): the modules imported by the build and the run go to argv[2].
MODEL_DRIVER = """
import importlib, json, sys
import torch
from aigcbench.workloads import registry
workload_class = registry.get(sys.argv[1])
for name in workload_class.model_modules:
    importlib.import_module(name)
before = set(sys.modules)
workload = registry.build(sys.argv[1], "tiny", steps=2 if workload_class.iterative else None)
with torch.inference_mode():
    workload.run(dict(workload.components()), workload.make_batch(1, 0))
with open(sys.argv[2], "w") as stream:
    json.dump({"status": "ok", "modules": sorted(set(sys.modules) - before)}, stream)
"""

TINY = {"size": "tiny", "duration": 0.05, "min_iterations": 1, "warmup": 0, "warmup_duration": 0}
ONNX = ("onnx", "onnxscript")
RUNTIMES = ("onnxruntime", "openvino", "tensorrt")
LIBRARIES = ("torch", "diffusers", "transformers", *ONNX, *RUNTIMES)
NO_TORCH = ("torch", "numpy", "diffusers")
REGISTRY = "from aigcbench.workloads import registry; "

CELLS = [
    # (options, required, forbidden)
    ({"workload": "dcgan", "backend": "pytorch"}, ("torch",), ("diffusers", "transformers", *ONNX, *RUNTIMES)),
    ({"workload": "dcgan", "backend": "null"}, (), ("diffusers", "transformers", *ONNX, *RUNTIMES)),
    # diffusers imports transformers itself where it is installed (diffusers.quantizers reads its quantization
    # config class), and it is: sd, llm and vocoder need it. So only cells without diffusers can go without it.
    ({"workload": "vae", "backend": "pytorch"}, ("diffusers",), (*ONNX, *RUNTIMES)),
    ({"workload": "ddpm", "backend": "pytorch", "steps": 2}, ("diffusers",), (*ONNX, *RUNTIMES)),
    ({"workload": "dcgan", "backend": "onnxruntime"}, ("onnxruntime",),
     ("diffusers", "transformers", "openvino", "tensorrt")),
    ({"workload": "dcgan", "backend": "openvino"}, ("openvino",),
     ("diffusers", "transformers", "onnxruntime", "tensorrt")),
]

PARENT_CODE = [
    # What the parent imports to validate a cell: names, sizes, steps and schedulers need no model library.
    ("import aigcbench.bench.runner", (), LIBRARIES),
    ("from aigcbench.workloads import registry; registry.check('vae', 'tiny')", (), ("diffusers", "transformers")),
    ("from aigcbench.workloads import registry; registry.check('ddpm', 'tiny', steps=2, scheduler='ddim')",
     (), ("diffusers", "transformers")),
    # The workload modules themselves: declarations and pipelines, the torch side in their *_model modules.
    (REGISTRY + "[registry.check(n, 'tiny') for n in registry.names()]", (), NO_TORCH),
    (REGISTRY + "registry.check('ddpm', 'base', steps=3, scheduler='ddim')", (), NO_TORCH),
    (REGISTRY + "[(registry.get(n).unit, registry.get(n).family, registry.get(n).model_modules) "
     "for n in registry.names()]", (), NO_TORCH),
    ("import aigcbench.workloads.gan, aigcbench.workloads.vae, aigcbench.workloads.diffusion", (), NO_TORCH),
    ("import aigcbench.workloads.weights, aigcbench.workloads.checkpoint, aigcbench.workloads.flops", (), NO_TORCH),
]


def report(driver: str, argument: str, tmp_path: Path) -> dict:
    """Run `driver` in a fresh interpreter with an empty cache; what it wrote (a status and module names)."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "AIGCBENCH_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", driver, argument, str(out)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


def imported(driver: str, argument: str, tmp_path: Path) -> tuple[str, list[str]]:
    """`driver`'s status and the top-level packages it imported."""
    found = report(driver, argument, tmp_path)
    return found["status"], sorted({name.partition(".")[0] for name in found["modules"]})


def check_modules(packages: list[str], required: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    missing = [name for name in required if name not in packages]
    assert not missing, f"the check cannot see these imports, which the cell does use: {missing}"
    leaked = [name for name in forbidden if name in packages]
    assert not leaked, f"imported without being used: {leaked}"


def cell_id(case: tuple) -> str:
    options = case[0]
    return "-".join(str(options[key]) for key in ("workload", "backend"))


@pytest.mark.parametrize("case", CELLS, ids=[cell_id(case) for case in CELLS])
def test_a_cell_imports_only_what_it_uses(case: tuple, tmp_path: Path) -> None:
    options, required, forbidden = case
    why = backend_registry.get(options["backend"]).available()
    if why is not None:
        pytest.skip(f"backend {options['backend']} unavailable: {why}")
    status, packages = imported(CELL_DRIVER, json.dumps({**options, **TINY}), tmp_path)
    assert status == "ok"
    check_modules(packages, required, forbidden)


@pytest.mark.parametrize("case", PARENT_CODE, ids=[code for code, _, _ in PARENT_CODE])
def test_validating_a_cell_imports_no_model_library(case: tuple, tmp_path: Path) -> None:
    code, required, forbidden = case
    _, packages = imported(PARENT_DRIVER, code, tmp_path)
    check_modules(packages, required, forbidden)


@pytest.mark.parametrize("name", workload_registry.names())
def test_model_modules_are_all_a_cell_imports_to_build(name: str, tmp_path: Path) -> None:
    # The pre-imported worker imports `model_modules` before forking; a module missing there is imported
    # again in every cell, which is the cost the worker exists to avoid.
    late = [m for m in report(MODEL_DRIVER, name, tmp_path)["modules"]
            if m.startswith(("aigcbench.workloads", "diffusers"))]
    assert not late, f"{name} imports these while it builds and runs, not in its model_modules: {late}"
