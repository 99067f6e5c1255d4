"""Check every cell of a sweep where the cells run, before any of them is measured.

The CLI checks what it can without torch (`runner.check_config`); what needs
the runtimes — is the backend installed, is the device there, does the batch
fit, do the weights match — runs here, in one process started like a cell's
worker (forked from the pre-imported zygote, or a fresh interpreter), so a
runtime's import never reaches the CLI or the zygote the cells fork from.

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
from typing import Any


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
    """`runner.preflight` of one config, as data."""
    from .errors import BackendUnavailable, UserError
    from .runner import preflight

    try:
        preflight(config)
    except (UserError, BackendUnavailable) as err:
        return {"exit_code": err.exit_code, "message": str(err), "key": getattr(err, "key", None)}
    except Exception as err:  # noqa: BLE001 - the cell's worker meets it again and records it
        return {"exit_code": None, "message": f"{type(err).__name__}: {err}"}
    return {"exit_code": 0}
