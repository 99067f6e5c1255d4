"""Where aigcbench keeps derived artefacts (FLOP counts, exported graphs, engines).

`AIGCBENCH_CACHE` wins; otherwise `$XDG_CACHE_HOME/aigcbench` or
`~/.cache/aigcbench`. Everything in it can be deleted and is rebuilt on demand.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    explicit = os.environ.get("AIGCBENCH_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "aigcbench"
    root.mkdir(parents=True, exist_ok=True)
    return root
