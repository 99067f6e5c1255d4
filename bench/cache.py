"""Where aigcbench keeps derived artefacts (FLOP counts, exported graphs, engines).

`AIGCBENCH_CACHE` wins; otherwise `$XDG_CACHE_HOME/aigcbench` or
`~/.cache/aigcbench`. Everything in it can be deleted and is rebuilt on demand.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def cache_dir() -> Path:
    explicit = os.environ.get("AIGCBENCH_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "aigcbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def publish_entry(entry: Path, build: Callable[[Path], T], reuse: Callable[[], T | None]) -> T:
    """Build a cache entry (a folder) in a staging folder, then rename it into place.

    `build(staging)` writes the entry's files and returns its description. A
    reader never sees half an entry, a crash leaves only a staging folder
    behind, and when another process publishes the same entry first, its entry
    is used (`reuse()`) and ours is discarded.
    """
    shutil.rmtree(entry, ignore_errors=True)  # stale or corrupt: the caller decided to rebuild
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        result = build(staging)
        try:
            os.replace(staging, entry)
        except OSError:  # the entry exists: another process won the race
            shutil.rmtree(staging, ignore_errors=True)
            theirs = reuse()
            if theirs is None:
                raise
            return theirs
        return result
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
