"""What is refused before a cell is measured, and where each check runs.

* `check_config`, in the CLI: what the registries' declarations tell without
  importing torch or a runtime (names, sizes, steps, options, precisions).
* `preflight`, where the cell runs (its worker calls it first): what needs the
  runtimes — is the backend installed, is the device there, does the batch
  fit, do the weights match the model.
* `main`, for a sweep: `preflight` of every cell in one process started like a
  cell's worker (forked from the pre-imported zygote, or a fresh
  interpreter), before any cell starts, so a runtime's import never reaches
  the CLI or the zygote the cells fork from.

`main CONFIGS.json RESULTS.json` reads a JSON list of configs and writes one
result per config: `{"exit_code": 0}`, or the refusal as the CLI would have
made it, `{"exit_code": 2 or 3, "message": ..., "key": ...}`. An unexpected
error in one check gives `{"exit_code": null, "message": ...}`: that cell is
left to its own worker, which checks again and fails it with the traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends import onnx_export
from ..backends import registry as backend_registry
from ..backends.base import check_declared
from ..workloads import registry as workload_registry
from .errors import BackendUnavailable, UserError
from .resources import check_fits

if TYPE_CHECKING:
    from ..backends.base import Backend
    from .config import RunConfig


def check_config(config: "RunConfig") -> "Backend":
    """Refuse what the CLI can see is wrong without importing torch or a runtime; return the backend.

    Names, sizes, steps and schedulers, option names and values, the device's
    name, the declared precisions: all known from the registries' declarations. What needs a
    runtime (is it installed, is the device there, does the batch fit, do the
    weights match the model) is `preflight`'s, run where the cell runs.
    """
    workload_registry.check(config.workload, config.size, steps=config.steps, scheduler=config.scheduler,
                            mode=config.mode)
    if config.weights is not None:
        _check_folder(config.weights)
    backend = backend_registry.get(config.backend)
    if config.mode == "train":
        _check_trains(backend, config)
    unknown = sorted(set(config.options) - set(backend.options))
    if unknown:
        known = ", ".join(sorted(backend.options)) or "none"
        raise UserError(f"backend {config.backend} has no option {unknown[0]!r}; known options: {known}")
    backend.check_options(config.options)
    backend.check_device_name(config.device)
    if backend.input_format == "onnx":
        refusal = workload_registry.get(config.workload).graph_refusal
        if refusal is not None:
            raise UserError(f"backend {backend.name} runs the shared ONNX graph, and {config.workload} cannot "
                            f"be exported to it: {refusal}", key="backend")
        onnx_export.check_exporter(config.options)
    check_declared(backend, config.precision)
    return backend


def _check_trains(backend: "Backend", config: "RunConfig") -> None:
    """--mode train needs a backend that runs autograd and an optimizer, and fp32 (no mixed-precision training yet)."""
    if not backend.trains:
        trains = ", ".join(n for n in backend_registry.names() if backend_registry.get(n).trains)
        raise UserError(f"--mode train: backend {backend.name} runs inference only (no autograd or optimizer "
                        f"step); backends that train: {trains}", key="mode")
    if config.precision != "fp32":
        raise UserError(f"--mode train runs fp32 (mixed-precision training is not built yet); got --precision "
                        f"{config.precision}", key="precision")
    if config.scenario == "server":
        raise UserError("--mode train measures optimizer steps over batches; --scenario server serves "
                        "queries: use latency or throughput", key="scenario")


def _check_folder(weights: str) -> None:
    """A `--weights` value names a folder that is there (its contents are `preflight`'s to check)."""
    from ..workloads.weights import require_folder

    if not str(weights):
        raise UserError("--weights must name a folder, got ''")
    require_folder(Path(weights))


def preflight(config: "RunConfig") -> "Backend":
    """`check_config`, then everything that needs the runtimes, before anything is built; return the backend.

    It runs in the cell's worker (or, for a whole sweep, in one process forked
    from the pre-imported zygote before any cell starts): the CLI never imports
    torch. A refusal here still ends the command with exit 2 or 3 and nothing stored.
    """
    backend = check_config(config)
    why = backend.available()
    if why is not None:
        raise BackendUnavailable(f"backend {config.backend} is unavailable: {why}")
    backend.check(config.device, config.precision)
    if config.weights is not None:  # a weights folder's architecture is its own, not the preset's
        workload_registry.check(config.workload, config.size, weights=config.weights)
    else:
        check_fits(config.workload, config.size, config.effective_batch_size, config.precision, config.device)
    return backend


def main(argv: list[str], parent: int | None = None) -> int:
    if len(argv) != 2:
        print("usage: cell_check CONFIGS.json RESULTS.json", file=sys.stderr)
        return 2
    from .config import RunConfig
    from .outputs import write_text_atomic

    configs = [RunConfig.from_dict(item) for item in json.loads(Path(argv[0]).read_text())]
    results = [check_one(config) for config in configs]
    write_text_atomic(Path(argv[1]), json.dumps(results), "results")
    return 0


def check_one(config: Any) -> dict[str, Any]:
    """`preflight` of one config, as data."""
    try:
        preflight(config)
    except (UserError, BackendUnavailable) as err:
        return {"exit_code": err.exit_code, "message": str(err), "key": getattr(err, "key", None)}
    except Exception as err:  # noqa: BLE001 - the cell's worker meets it again and records it
        return {"exit_code": None, "message": f"{type(err).__name__}: {err}"}
    return {"exit_code": 0}
