"""Sweep files: many measurement cells described in one TOML file, checked before anything runs.

`aigcbench sweep FILE.toml` runs every cell of the file in its own worker
process. The file is read and validated in full first: a mistake in cell 40
is reported before cell 1 spends a minute measuring, in one line that names
the file, the line (and column when known) and the key at fault::

    sweeps/x.toml:12: matrix.backend: unknown backend 'tensorrtt'; choose from: ...
    sweeps/x.toml:3:9: invalid TOML: Expected '=' after a key in a key/value pair

The format
----------
::

    [sweep]
    name = "cpu-matrix"        # optional; default: the file's name without .toml
    description = "..."        # optional
    timeout = 600              # per-cell worker timeout (default 1800 s): seconds,
                               # or a duration string such as "90s", "10m", "1h"
    memory_limit = "8GiB"      # per-cell memory limit (default: none): "512MiB", "1.5GB", bytes

    [defaults]                 # applied to every cell
    size = "tiny"
    duration = 2
    labels = { suite = "nightly" }

    [matrix]                   # every value a non-empty list; the cells are the
    workload = ["dcgan", "vae"]      # cross product, in the order the keys are
    backend = ["pytorch", "onnxruntime"]  # written, the last key varying fastest
    batch_size = [1, 4]

    [[exclude]]                # drop the matrix cells that match every key given;
    backend = "onnxruntime"    # a list means "any of"
    batch_size = [4]

    [[override]]               # cells matching every key of `where` get `set` merged in
    where = { workload = "ddpm" }
    set = { steps = 4, timeout = "30s", options = { fault = "hang" } }

    [[cell]]                   # an extra, explicit cell: defaults, then its own keys,
    workload = "ddpm"          # then the overrides that match it
    backend = "pytorch"

Keys. A cell takes the options of `aigcbench run`, spelled with underscores
(`batch_size`, `min_iterations`, `slo_p99`, `find_max_rate`, ...; see
`bench.config.OPTION_KEYS`), plus `timeout`: the seconds its worker may run
before it is stopped and the cell recorded as failed, and `memory_limit`: the
memory its worker may take (`bench/resources.py`), `python`: the interpreter
its worker runs in (a path, relative to the sweep file's folder; that
interpreter must have this aigcbench installed, `bench/interpreters.py`), and
`hardware`: the kind of machine the cell is pinned to (a Ray custom resource
under `--executor ray`; the local executor skips a cell pinned to hardware
other than this machine's `hardware_key`). `[defaults]`,
`[matrix]`, `[[cell]]`, `set` and `where`/`[[exclude]]` all take these keys;
anything else is refused, as is any top-level table other than the six above.

Merging. `options` (backend options, as `--option KEY=VALUE`) and `labels`
(as `--label KEY=VALUE`) are tables whose values are strings, numbers or
booleans; they merge key by key — defaults, then the matrix (or the explicit
cell), then the overrides, later wins. Every other key is replaced whole.

Matching. `[[exclude]]` and `where` compare the values as written in the file
(defaults plus the cell's own keys; overrides do not see each other's `set`):
`precision = "fp32"` does not match a cell that leaves precision to its
default, and a table such as `options = { fault = "hang" }` matches a cell
whose options include those pairs. An exclude or override that matches no
cell is refused, and so is any value of an any-of list that no cell has:
it is almost always a typo. Names in them (backend, workload, size,
precision, scenario, scheduler) are checked against the registries.

Order and identity. Matrix cells come first, in expansion order, then the
explicit cells in file order. A cell's origin names where it came from:
`matrix #3` (its position in the full cross product, so excluding other
cells never renumbers it) or `cell #1 (line 40)`. Two cells with the same
configuration, timeout, memory limit, interpreter and hardware are refused, and so is a sweep with no cell.

Limits. A sweep of more than `max_cells` cells (10 000 by default; `aigcbench
sweep --max-cells N` raises it), counted from the matrix's list lengths before
`[[exclude]]` drops any, is refused with its count before any cell is built. Numbers must be finite: TOML's `inf` and `nan` are refused wherever
they are written.

The loader is three modules: `sweep_text` (reading the file, pointing at a
line), `sweep_tables` (the grammar: each table checked as written) and
`sweep_expand` (the cells: cross product, exclusions, overrides); this one
ties them together and builds each cell's `RunConfig`.
"""

from __future__ import annotations

import contextlib
import gc
import re
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

from ..workloads import registry as workload_registry
from .config import RunConfig
from .errors import UserError
from .interpreters import check_python
from .sweep_expand import Draft, apply_overrides, check_cell_count, exclude, explicit_drafts, matrix_drafts, no_cells
from .sweep_tables import (
    CELL_KEYS,
    DEFAULT_TIMEOUT_S,
    LOADER_KEYS,
    MERGED_KEYS,
    SWEEP_KEYS,
    TABLES,
    Names,
    SweepSettings,
    array,
    cell_values,
    check_matrix_values,
    check_numbers,
    check_tables,
    criteria,
    matrix_shape,
    memory_limit,
    override,
    sweep_settings,
    timeout_s,
)
from .sweep_text import DEFAULT_MAX_CELLS, Locator, Place, SourceFile, parse_toml, read_text

__all__ = [
    "CELL_KEYS", "DEFAULT_MAX_CELLS", "DEFAULT_TIMEOUT_S", "MERGED_KEYS", "SWEEP_KEYS", "TABLES",
    "SweepCell", "SweepPlan", "load_sweep",
]


@dataclass(frozen=True)
class SweepCell:
    """One cell to run: its validated config, its worker's limits, and where the file defined it."""

    config: RunConfig
    timeout_s: float
    origin: str  # "matrix #3", "cell #1 (line 40)"
    memory_limit_bytes: int | None = None  # None: no limit
    python: str | None = None  # the interpreter its worker runs in, absolute and checked; None: the default
    hardware: str | None = None  # the kind of machine it is pinned to; None: any


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep file: every cell is known to build a `RunConfig`."""

    name: str
    description: str | None
    path: Path
    cells: tuple[SweepCell, ...]


def load_sweep(path: Path | str, max_cells: int = DEFAULT_MAX_CELLS) -> SweepPlan:
    """Read, expand and validate a sweep file; a bad file raises a one-line `UserError`.

    More than `max_cells` cells is refused from the matrix's list lengths,
    before any cell is built.
    """
    if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
        raise UserError(f"--max-cells must be an integer ≥ 1, got {max_cells!r}")
    path = Path(path)
    text = read_text(path)
    data = parse_toml(path, text)
    file = SourceFile(path, Locator(text))
    check_tables(file, data)
    check_numbers(file, data)
    names = Names()  # the registries, resolved once for the whole file
    settings = sweep_settings(file, data.get("sweep", {}))
    defaults = cell_values(file, Place("defaults"), data.get("defaults", {}))
    matrix = matrix_shape(file, data.get("matrix"))
    tables = {table: array(file, data, table) for table in ("exclude", "override", "cell")}
    check_cell_count(file, matrix, len(tables["cell"]), max_cells)
    check_matrix_values(file, matrix)
    excludes = [criteria(file, Place("exclude", i), t, names) for i, t in enumerate(tables["exclude"], 1)]
    overrides = [override(file, Place("override", i), t, names) for i, t in enumerate(tables["override"], 1)]
    explicit = [cell_values(file, Place("cell", i), t) for i, t in enumerate(tables["cell"], 1)]

    drafts = exclude(file, matrix_drafts(defaults, matrix), excludes) + explicit_drafts(file, defaults, explicit)
    if not drafts:
        raise no_cells(file, matrix, excludes)
    apply_overrides(file, drafts, overrides)
    checked: set[tuple[Any, ...]] = set()  # the per-workload choices already checked, shared by many cells
    with _without_cyclic_gc():
        cells = tuple(_build(file, draft, settings, checked) for draft in drafts)
        _refuse_duplicates(file, drafts, cells)
    return SweepPlan(name=settings.name or path.stem, description=settings.description, path=path, cells=cells)


# --- Building and checking each cell -------------------------------------------------------------


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    # Building ten thousand configs allocates long-lived objects that hold no
    # cycles; the cyclic collector would scan the growing heap again and again,
    # which made building the cells cost more per cell the more cells there were.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build(file: SourceFile, draft: Draft, settings: SweepSettings, checked: set[tuple[Any, ...]]) -> SweepCell:
    values = {key: value for key, value in draft.values.items() if key not in LOADER_KEYS}
    limits = _limits(file, draft, settings)
    python, hardware = _placement(file, draft)
    try:
        config = RunConfig.from_options(values)
        # Per-workload choices (sizes, schedulers) are cheap to check now and costly to discover mid-sweep.
        choices = (config.workload, config.size, config.steps, config.scheduler, config.mode)
        if choices not in checked:
            workload_registry.check(config.workload, config.size, steps=config.steps, scheduler=config.scheduler,
                                    mode=config.mode)
            checked.add(choices)
    except UserError as exc:
        raise _blame(file, draft, str(exc)) from exc
    return SweepCell(config=config, timeout_s=limits[0], origin=draft.origin, memory_limit_bytes=limits[1],
                     python=python, hardware=hardware)


def _placement(file: SourceFile, draft: Draft) -> tuple[str | None, str | None]:
    """Where the cell's worker runs: its interpreter (checked, once per path) and the hardware it is pinned to."""
    python = draft.values.get("python")
    if python is not None:
        place = draft.sources["python"] / "python"
        try:
            python = check_python(python, "python", base=file.path.parent)
        except UserError as exc:
            raise file.error(place, str(exc).removeprefix("python: ").removeprefix("python ")) from None
    return python, draft.values.get("hardware")


def _limits(file: SourceFile, draft: Draft, settings: SweepSettings) -> tuple[float, int | None]:
    """The cell's timeout and memory limit: its own (from whichever table set it last), else [sweep]'s."""
    timeout, memory = settings.timeout_s, settings.memory_limit_bytes
    if "timeout" in draft.values:
        timeout = timeout_s(file, draft.sources["timeout"] / "timeout", draft.values["timeout"])
    if "memory_limit" in draft.values:
        memory = memory_limit(file, draft.sources["memory_limit"] / "memory_limit", draft.values["memory_limit"])
    return timeout, memory


_WORD = re.compile(r"(?<![\w-])(?P<dashes>--)?(?P<word>[A-Za-z][\w-]*)")
_FLAG_KEYS = {"option": "options", "label": "labels"}  # `--option`, `--label` are the tables' flags


def _culprit(message: str, given: Mapping[str, Any]) -> str | None:
    """The key a RunConfig error is about: the first flag it names that the cell sets, else the first bare key.

    Messages name flags (`--batch-size must be ≥ 1`) or keys (`unknown backend`);
    flags come first because prose may mention a key in passing ("the server
    scenario batches queries dynamically: use --max-batch instead of --batch-size").
    """
    flags: list[str] = []
    words: list[str] = []
    for found in _WORD.finditer(message):
        key = found["word"].replace("-", "_")
        if found["dashes"]:
            flags.append(_FLAG_KEYS.get(key, key))
        else:
            words.append(key)
    return next((key for key in (*flags, *words) if key in given), None)


def _blame(file: SourceFile, draft: Draft, message: str) -> UserError:
    """A RunConfig error re-raised at the line of the key that caused it, naming the cell when that helps."""
    key = _culprit(message, draft.sources)
    place = draft.sources[key] / key if key is not None else draft.home
    # The key's own line names the value when it sits in the cell's own table;
    # a value from [defaults] or an override, or an error about the cell as a whole, needs the cell named.
    in_own_table = (place.table, place.index) == (draft.home.table, draft.home.index)
    obvious = in_own_table and (key is not None or draft.home.table == "cell")
    return file.error(place, message if obvious else f"{message} (in {draft.label})")


def _refuse_duplicates(file: SourceFile, drafts: Sequence[Draft], cells: Sequence[SweepCell]) -> None:
    seen: dict[Any, Draft] = {}
    for draft, cell in zip(drafts, cells):
        worker = (cell.timeout_s, cell.memory_limit_bytes, cell.python, cell.hardware)
        identity: Any = (_config_identity(cell.config), *worker)
        try:
            hash(identity)
        except TypeError:  # a config field that is not hashable: its canonical JSON, as RunConfig.key digests
            identity = (cell.config.key(), *worker)
        if identity in seen:
            raise file.error(
                draft.home,
                f"{draft.label} is identical to {seen[identity].label}: same configuration, timeout, memory limit, "
                "interpreter and hardware",
                named=False,
            )
        seen[identity] = draft


def _config_identity(config: RunConfig) -> tuple[Any, ...]:
    """What `RunConfig.key` digests, as a hashable tuple: the same for the same measurement.

    Built from the fields because `to_dict` and JSON cost more than the rest
    of a cell's checks together, and a sweep may hold ten thousand cells. The
    nested rules are frozen dataclasses (hashable); the two mappings become
    sorted pairs; the batch size is the effective one, as `to_dict` writes it.
    """
    values = [getattr(config, name) for name in _CONFIG_FIELDS]
    values[_BATCH_FIELD] = config.effective_batch_size
    return tuple(tuple(sorted(v.items())) if isinstance(v, MappingProxyType) else v for v in values)


_CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))
_BATCH_FIELD = _CONFIG_FIELDS.index("batch_size")
